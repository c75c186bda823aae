// The renkei command line, run as a real process.
#include "test_support.hpp"

#include <gtest/gtest.h>
#include <httplib.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <thread>

using namespace renkei::test;

namespace {


const std::string build = RENKEI_BUILD_DIR;

} // namespace

TEST(Cli, Version) {
    auto r = run_renkei("version");
    EXPECT_EQ(r.code, 0);
    EXPECT_NE(r.output.find("plugin ABI 1.0"), std::string::npos) << r.output;
}

TEST(Cli, PluginCheckAcceptsEcho) {
    auto r = run_renkei("plugin check " + plugin_path("adapters/mock-echo", "mock_echo"));
    EXPECT_EQ(r.code, 0) << r.output;
    EXPECT_NE(r.output.find("mock-echo 1.0.0"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("handle echo.Ping: ok"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("(1 message(s) sent by the plugin)"), std::string::npos) << r.output;
}

TEST(Cli, PluginCheckRefusesBadPlugins) {
    auto major = run_renkei("plugin check " + plugin_path("tests/plugins", "bad_abi_major"));
    EXPECT_EQ(major.code, 1);
    EXPECT_NE(major.output.find("built for ABI 2.0 but this host speaks ABI 1.0"), std::string::npos) << major.output;
    auto minor = run_renkei("plugin check " + plugin_path("tests/plugins", "bad_abi_minor"));
    EXPECT_EQ(minor.code, 1);
    EXPECT_NE(minor.output.find("newer than this host's ABI 1.0"), std::string::npos) << minor.output;
    auto missing = run_renkei("plugin check " + plugin_path("tests/plugins", "missing_symbol"));
    EXPECT_EQ(missing.code, 1);
    EXPECT_NE(missing.output.find("missing entry symbol 'renkei_plugin_entry'"), std::string::npos) << missing.output;
}

TEST(Cli, ConfigCheckReportsFileLineAndKey) {
    auto ok = run_renkei("config check " + std::string(RENKEI_SOURCE_DIR) + "/examples/echo/node.toml --plugin-dir " + build);
    EXPECT_EQ(ok.code, 0) << ok.output;
    TempDir tmp;
    write_file(tmp / "bad.toml", "[node]\n"
                                 "id = \"muni:131017\"\n"
                                 "\n"
                                 "[[plugin]]\n"
                                 "name = \"echo\"\n"
                                 "path = \"no_such_plugin\"\n"
                                 "isolaton = \"process\"\n");
    auto bad = run_renkei("config check " + (tmp / "bad.toml").string());
    EXPECT_EQ(bad.code, 1);
    auto file = (tmp / "bad.toml").string();
    EXPECT_NE(bad.output.find(file + ":2: node.id: muni:<code> needs a 6-digit"), std::string::npos) << bad.output;
    EXPECT_NE(bad.output.find(file + ":6: plugin[0].path: plugin 'no_such_plugin.so' not found"), std::string::npos) << bad.output;
    EXPECT_NE(bad.output.find(file + ":7: plugin[0].isolaton: unknown key"), std::string::npos) << bad.output;
    EXPECT_NE(bad.output.find("3 problem(s)"), std::string::npos) << bad.output;
}

TEST(Cli, HostServesAdminAndStopsOnSigterm) {
    TempDir tmp;
    int port = free_port();
    write_file(tmp / "node.toml", "[node]\nid = \"pref:13\"\ndata_dir = \"" + (tmp / "data").string() +
                                      "\"\n[admin]\nlisten = \"127.0.0.1:" + std::to_string(port) +
                                      "\"\n[[plugin]]\nname = \"echo\"\npath = \"mock_echo\"\nisolation = \"process\"\n");
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        execl(RENKEI_BINARY, RENKEI_BINARY, "--log-level", "warn", "host", "--config", (tmp / "node.toml").c_str(),
              "--plugin-dir", build.c_str(), nullptr);
        _exit(127);
    }
    httplib::Client admin("127.0.0.1", port);
    auto health = admin.Get("/healthz");
    for (int i = 0; i < 200 && !health; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        health = admin.Get("/healthz");
    }
    ASSERT_TRUE(health) << "admin HTTP never came up";
    EXPECT_EQ(health->status, 200);
    EXPECT_NE(health->body.find("\"plugin\":\"mock-echo\""), std::string::npos) << health->body;
    auto metrics = admin.Get("/metrics");
    ASSERT_TRUE(metrics);
    EXPECT_NE(metrics->body.find("renkei_plugin_queue_depth{plugin=\"echo\"} 0"), std::string::npos) << metrics->body;
    kill(pid, SIGTERM);
    int status = 0;
    waitpid(pid, &status, 0);
    EXPECT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0);
}
