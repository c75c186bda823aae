// A vendor builds a plugin out of tree against the installed SDK (find_package(RenkeiPluginApi))
// and the host loads and runs it.
#include "collector.hpp"
#include "test_support.hpp"

#include <renkei/host.hpp>
#include <renkei/plugin_loader.hpp>

#include <gtest/gtest.h>

using namespace renkei;
using namespace renkei::test;

namespace {
int sh(const std::string& cmd) {
    int status = std::system((cmd + " > /dev/null 2>&1").c_str());
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}
} // namespace

TEST(SdkInstall, VendorPluginBuildsOutOfTreeAndLoads) {
    TempDir tmp;
    auto prefix = tmp / "prefix";
    ASSERT_EQ(sh("cmake --install " + std::string(RENKEI_BUILD_DIR) + " --prefix " + prefix.string()), 0);
    EXPECT_TRUE(std::filesystem::exists(prefix / "include/renkei/plugin.h"));
    EXPECT_TRUE(std::filesystem::exists(prefix / "include/renkei/sdk.hpp"));
    EXPECT_TRUE(std::filesystem::exists(prefix / "include/renkei/schema/envelope.capnp.h"));
    EXPECT_TRUE(std::filesystem::exists(prefix / "share/renkei/schema/envelope.capnp"));

    auto build = tmp / "vendor-build";
    ASSERT_EQ(sh("cmake -S " + std::string(RENKEI_SOURCE_DIR) + "/examples/vendor-plugin -B " + build.string() +
                 " -G Ninja -DCMAKE_PREFIX_PATH=" + prefix.string()),
              0)
        << "configure against the installed SDK failed";
    ASSERT_EQ(sh("cmake --build " + build.string()), 0) << "vendor build failed";
    auto so = build / "acme_counter.so";
    ASSERT_TRUE(std::filesystem::exists(so));

    auto lib = load_plugin(so);
    EXPECT_EQ(lib->info().name, "acme-counter");
    EXPECT_EQ(lib->info().version, "2.3.0");

    HostConfig cfg;
    cfg.node_id = "vendor:acme";
    cfg.data_dir = tmp / "data";
    PluginConfig pc;
    pc.name = "acme";
    pc.path = so;
    pc.settings = toml::table{{"greeting", "hi"}};
    cfg.plugins.push_back(pc);
    Host host(cfg);
    host.start();
    Collector client("client", {"acme.Counted", "acme.Count.Fault"});
    host.add_endpoint(client.endpoint());
    send_request(host, client.name(), "acme.Count", "x");
    send_request(host, client.name(), "acme.Count", std::string(2000, 'y'));
    auto got = client.wait_for(2);
    ASSERT_EQ(got.size(), 2u);
    EXPECT_EQ(got[0].type, "acme.Counted");
    EXPECT_EQ(got[0].payload, "hi #1");
    EXPECT_EQ(got[1].type, "acme.Count.Fault");
    EXPECT_NE(got[1].fault_message.find("[field payload]"), std::string::npos) << got[1].fault_message;
    host.stop();
}
