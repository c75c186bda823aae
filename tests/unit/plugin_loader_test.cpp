// The plugin loader: what a good plugin declares, how bad ones are refused, and that the library
// stays loaded as long as anything created from it lives.
#include "test_support.hpp"

#include <renkei/envelope.hpp>
#include <renkei/host_services.hpp>
#include <renkei/in_process_plugin.hpp>
#include <renkei/plugin_context.hpp>
#include <renkei/plugin_loader.hpp>

#include <gtest/gtest.h>

#include <dlfcn.h>

#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>

using namespace renkei;
using namespace renkei::test;
namespace fs = std::filesystem;

namespace {

const std::string kHostAbi = std::to_string(RENKEI_ABI_MAJOR) + "." + std::to_string(RENKEI_ABI_MINOR);

std::string echo_path() { return plugin_path("adapters/mock-echo", "mock_echo"); }
std::string bad_path(const std::string& name) { return plugin_path("tests/plugins", name); }

// The PluginLoadError that loading `path` must raise.
std::string refusal(const fs::path& path) {
    try {
        load_plugin(path);
    } catch (const PluginLoadError& e) {
        return e.what();
    }
    ADD_FAILURE() << "loaded " << path;
    return {};
}

// Whether the dynamic loader still has `path` mapped (without loading it).
bool is_mapped(const std::string& path) {
    void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_NOLOAD);
    if (h == nullptr) return false;
    dlclose(h);
    return true;
}

// Host services that record what the plugin sends.
class RecordingServices : public HostServices {
public:
    void submit_from_plugin(const std::string& plugin, kj::ArrayPtr<const kj::byte> envelope) override {
        auto stamped = stamp_outgoing(envelope, "muni:131016", 42, 1u << 20);
        auto v = EnvelopeView::decode(stamped.begin(), stamped.asBytes().size());
        auto e = v.get();
        auto p = e.getPayload();
        std::lock_guard lock(mutex_);
        sent_.push_back(plugin + "|" + std::string(e.getType()) + "|" + std::string(e.getTo()) + "|" +
                        hex(e.getCorrelationId()) + "|" +
                        std::string(reinterpret_cast<const char*>(p.begin()), p.size()));
        cv_.notify_all();
    }
    std::vector<uint8_t> sign(const std::string&, kj::ArrayPtr<const kj::byte>) override {
        throw HostCallError(RENKEI_ERR_UNSUPPORTED, "no keys in this test");
    }
    bool verify(const std::string&, kj::ArrayPtr<const kj::byte>, kj::ArrayPtr<const kj::byte>) override {
        return false;
    }
    std::vector<uint8_t> seal(const std::string&, kj::ArrayPtr<const kj::byte>) override {
        throw HostCallError(RENKEI_ERR_UNSUPPORTED, "no keys in this test");
    }
    std::vector<uint8_t> open(kj::ArrayPtr<const kj::byte>) override {
        throw HostCallError(RENKEI_ERR_UNSUPPORTED, "no keys in this test");
    }
    int64_t now_unix_ms() override { return 42; }

    std::vector<std::string> wait_for(size_t n) {
        std::unique_lock lock(mutex_);
        cv_.wait_for(lock, std::chrono::seconds(10), [&] { return sent_.size() >= n; });
        return sent_;
    }

private:
    std::mutex mutex_;
    std::condition_variable cv_;
    std::vector<std::string> sent_;
};

Delivery ping(const std::string& payload, std::string* id_hex, std::promise<std::pair<int32_t, std::string>>& outcome) {
    capnp::MallocMessageBuilder mb;
    auto e = mb.initRoot<schema::Envelope>();
    auto id = new_message_id();
    e.setId(kj::ArrayPtr<const kj::byte>(id.data(), id.size()));
    e.setType("echo.Ping");
    e.setFrom("agency:nta");
    e.setTo("muni:131016");
    e.setPurpose("test");
    e.setPayload(bytes_of(payload));
    Delivery d;
    d.envelope = capnp::messageToFlatArray(mb);
    d.type = "echo.Ping";
    d.id = id;
    d.done = [&outcome](int32_t status, const std::string& message) { outcome.set_value({status, message}); };
    *id_hex = hex(id);
    return d;
}

} // namespace

TEST(PluginLoader, LoadsMockEchoAndReportsItsDescriptor) {
    ASSERT_TRUE(fs::is_regular_file(echo_path())) << echo_path();
    auto lib = load_plugin(echo_path());
    ASSERT_NE(lib, nullptr);
    const PluginInfo& info = lib->info();
    EXPECT_EQ(info.name, "mock-echo");
    EXPECT_EQ(info.version, "1.0.0");
    EXPECT_EQ(info.kind, uint32_t(RENKEI_KIND_ADAPTER));
    EXPECT_EQ(info.kind_name(), "adapter");
    EXPECT_EQ(info.abi_major, RENKEI_ABI_MAJOR);
    EXPECT_EQ(info.abi_minor, RENKEI_ABI_MINOR);
    EXPECT_EQ(info.message_types, std::vector<std::string>{"echo.Ping"});
    EXPECT_EQ(info.path, fs::path(echo_path()));
    EXPECT_TRUE(info.path.is_absolute());

    const auto& d = lib->descriptor();
    EXPECT_EQ(d.abi_major, RENKEI_ABI_MAJOR);
    EXPECT_GE(d.struct_size, offsetof(renkei_plugin_descriptor, destroy) + sizeof(d.destroy));
    EXPECT_STREQ(d.name, "mock-echo");
    EXPECT_NE(d.create, nullptr);
    EXPECT_NE(d.handle, nullptr);
    EXPECT_NE(d.destroy, nullptr);
}

TEST(PluginLoader, KindNames) {
    PluginInfo i;
    i.kind = RENKEI_KIND_BUSINESS;
    EXPECT_EQ(i.kind_name(), "business");
    i.kind = RENKEI_KIND_ADAPTER;
    EXPECT_EQ(i.kind_name(), "adapter");
    i.kind = 9;
    EXPECT_EQ(i.kind_name(), "unknown(9)");
}

TEST(PluginLoader, RefusesAnotherAbiMajorNamingPluginAndBothVersions) {
    auto path = bad_path("bad_abi_major");
    auto why = refusal(path);
    const std::string plugin_abi = std::to_string(RENKEI_ABI_MAJOR + 1) + ".0";
    EXPECT_EQ(why, "plugin 'bad-major' (" + path + ") was built for ABI " + plugin_abi +
                       " but this host speaks ABI " + kHostAbi + ": the major versions differ");
}

TEST(PluginLoader, RefusesANewerAbiMinorNamingPluginAndBothVersions) {
    auto path = bad_path("bad_abi_minor");
    auto why = refusal(path);
    const std::string plugin_abi = std::to_string(RENKEI_ABI_MAJOR) + "." + std::to_string(RENKEI_ABI_MINOR + 1);
    EXPECT_NE(why.find("plugin 'bad-minor' (" + path + ")"), std::string::npos) << why;
    EXPECT_NE(why.find("was built for ABI " + plugin_abi + ", newer than this host's ABI " + kHostAbi), std::string::npos)
        << why;
    EXPECT_NE(why.find("upgrade the host or rebuild the plugin"), std::string::npos) << why;
}

TEST(PluginLoader, RefusesALibraryWithoutTheEntrySymbol) {
    auto path = bad_path("missing_symbol");
    auto why = refusal(path);
    EXPECT_EQ(why.rfind(path + ": ", 0), 0u) << why;
    EXPECT_NE(why.find("missing entry symbol 'renkei_plugin_entry'"), std::string::npos) << why;
    EXPECT_NE(why.find("not a renkei plugin"), std::string::npos) << why;
}

TEST(PluginLoader, MissingFileOrDirectory) {
    TempDir tmp;
    auto absent = tmp / "absent.so";
    EXPECT_EQ(refusal(absent), absent.string() + ": no such plugin file");
    EXPECT_EQ(refusal(tmp.path()), tmp.path().string() + ": no such plugin file");
}

TEST(PluginLoader, NonLibraryFilesGiveTheLoadersReason) {
    TempDir tmp;
    auto garbage = tmp / "garbage.so";
    std::string bytes;
    for (int i = 0; i < 4096; ++i) bytes.push_back(static_cast<char>((i * 131 + 7) & 0xff));
    write_file(garbage, bytes);
    auto why = refusal(garbage);
    EXPECT_EQ(why.rfind(garbage.string() + ": cannot load library: ", 0), 0u) << why;
    EXPECT_NE(why.find("invalid ELF header"), std::string::npos) << why;

    auto empty = tmp / "empty.so";
    write_file(empty, "");
    auto why_empty = refusal(empty);
    EXPECT_EQ(why_empty.rfind(empty.string() + ": cannot load library: ", 0), 0u) << why_empty;
    EXPECT_NE(why_empty.find("file too short"), std::string::npos) << why_empty;

    // A script named like a library.
    auto text = tmp / "notes.so";
    write_file(text, "#!/bin/sh\necho not a library\n");
    EXPECT_NE(refusal(text).find("cannot load library"), std::string::npos);
}

TEST(PluginLoader, LibraryOutlivesTheInstanceCreatedFromIt) {
    const std::string path = echo_path();
    ASSERT_FALSE(is_mapped(path)) << "another test left the plugin loaded";
    RecordingServices services;
    std::weak_ptr<LoadedPlugin> weak;
    {
        auto endpoint = [&] {
            auto lib = load_plugin(path);
            weak = lib;
            auto ctx = std::make_unique<PluginContext>("echo", toml::table{{"reply_prefix", "re: "}}, services);
            return std::make_unique<InProcessPlugin>("echo", std::move(lib), std::move(ctx));
        }();
        // The loader's handle is gone; the instance keeps the library.
        EXPECT_FALSE(weak.expired());
        EXPECT_EQ(weak.use_count(), 1);
        EXPECT_TRUE(is_mapped(path));
        EXPECT_EQ(endpoint->info().name, "mock-echo");

        endpoint->start();
        std::promise<std::pair<int32_t, std::string>> outcome;
        std::string id;
        endpoint->deliver(ping("hello", &id, outcome));
        auto fut = outcome.get_future();
        ASSERT_EQ(fut.wait_for(std::chrono::seconds(10)), std::future_status::ready);
        EXPECT_EQ(fut.get(), std::make_pair(int32_t(RENKEI_OK), std::string()));
        auto sent = services.wait_for(1);
        ASSERT_EQ(sent.size(), 1u);
        EXPECT_EQ(sent[0], "echo|echo.Pong|agency:nta|" + id + "|re: hello");

        endpoint->stop();
        EXPECT_FALSE(weak.expired()); // stopped, but not yet destroyed: the library stays
        EXPECT_TRUE(is_mapped(path));
    }
    // Destroying the last holder unloads the library.
    EXPECT_TRUE(weak.expired());
    EXPECT_FALSE(is_mapped(path));
}

TEST(PluginLoader, EachLoadHoldsItsOwnReference) {
    const std::string path = echo_path();
    auto a = load_plugin(path);
    auto b = load_plugin(path);
    EXPECT_NE(a.get(), b.get());
    EXPECT_EQ(a->descriptor().create, b->descriptor().create); // one mapping, shared
    a.reset();
    EXPECT_TRUE(is_mapped(path));
    EXPECT_STREQ(b->descriptor().name, "mock-echo"); // still readable
    b.reset();
    EXPECT_FALSE(is_mapped(path));
}

TEST(PluginLoader, TypeMatches) {
    EXPECT_TRUE(type_matches("echo.Ping", "echo.Ping"));
    EXPECT_FALSE(type_matches("echo.Ping", "echo.Pong"));
    EXPECT_FALSE(type_matches("echo.Ping", "echo.Ping.Fault"));
    EXPECT_TRUE(type_matches("juki.*", "juki.IdentityUpdate"));
    EXPECT_TRUE(type_matches("juki.*", "juki.query.ByName"));
    EXPECT_FALSE(type_matches("juki.*", "jukiX.Update"));
    EXPECT_FALSE(type_matches("juki.*", "fuhyo.Update"));
    EXPECT_FALSE(type_matches("juki.*", "juki"));
}
