// Killing the receiving host with SIGKILL in the middle of 10,000 messages and restarting it ends
// with every message handled exactly once by the plugin (count and ids checked).
#include "network.hpp"

#include <renkei/sqlite.hpp>

#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <thread>

using namespace renkei;
using namespace renkei::test;
using namespace std::chrono_literals;

namespace {

pid_t spawn_host(const std::filesystem::path& config) {
    pid_t pid = fork();
    if (pid == 0) {
        execl(RENKEI_BINARY, RENKEI_BINARY, "--log-level", "error", "host", "--config", config.c_str(), "--plugin-dir",
              RENKEI_BUILD_DIR, nullptr);
        _exit(127);
    }
    return pid;
}

// Reads the counter plugin's store (another connection; WAL lets it read while the host writes).
int64_t stored(const std::filesystem::path& db, const char* sql) {
    if (!std::filesystem::exists(db)) return 0;
    try {
        sqlite::Database d(db);
        auto s = d.prepare(sql, "count");
        return s.step() ? s.column_int64(0) : 0;
    } catch (const sqlite::Error&) {
        return 0; // the table may not exist yet
    }
}

} // namespace

TEST(Crash, SigkillOfTheReceiverLosesAndDuplicatesNothing) {
    TempDir tmp;
    Network net(tmp);
    int port = free_port();
    // The receiving prefecture runs as its own process so that it can be killed.
    auto pref_cfg = net.config({"pref:13", false, {}, {{"muni:131016", {}}}});
    std::string peers;
    for (auto& p : pref_cfg.peers)
        peers += "[[peer]]\nnode = \"" + p.node + "\"\ncurve_public = \"" + p.curve_public + "\"\nsign_public = \"" +
                 p.sign_public + "\"\n";
    auto pref_toml = tmp / "pref.toml";
    write_file(pref_toml, "[node]\nid = \"pref:13\"\ndata_dir = \"" + pref_cfg.data_dir.string() + "\"\nkeys_dir = \"" +
                              pref_cfg.keys_dir.string() + "\"\nlisten = \"tcp://127.0.0.1:" + std::to_string(port) +
                              "\"\npolicy = \"" + pref_cfg.policy_file.string() +
                              "\"\n[[plugin]]\nname = \"counter\"\npath = \"counter\"\n" + peers);
    pid_t pref = spawn_host(pref_toml);

    auto muni_cfg = net.config({"muni:131016", false, {}, {{"pref:13", {"*"}}}});
    muni_cfg.peers[0].endpoints = {"tcp://127.0.0.1:" + std::to_string(port)};
    Host muni(muni_cfg);
    muni.start();

    const int n = 10000;
    capnp::MallocMessageBuilder mb;
    auto e = mb.initRoot<schema::Envelope>();
    e.setType("counter.Count");
    e.setTo("pref:13");
    e.setPurpose("test");
    auto flat = capnp::messageToFlatArray(mb);
    std::thread sender([&] {
        for (int i = 0; i < n; ++i) muni.submit("test", flat.asBytes());
    });

    auto db = pref_cfg.data_dir / "store" / "counter.db";
    auto deadline = std::chrono::steady_clock::now() + 60s;
    while (stored(db, "SELECT count(*) FROM handled") < n / 3 && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(5ms);
    ASSERT_EQ(kill(pref, SIGKILL), 0);
    int status = 0;
    waitpid(pref, &status, 0);
    int64_t at_kill = stored(db, "SELECT count(*) FROM handled");
    EXPECT_GT(at_kill, 0);
    EXPECT_LT(at_kill, n); // really killed in the middle
    pref = spawn_host(pref_toml);
    sender.join();

    deadline = std::chrono::steady_clock::now() + 120s;
    while (muni.links_pending() > 0 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(20ms);
    EXPECT_EQ(muni.links_pending(), 0u);
    kill(pref, SIGTERM);
    waitpid(pref, &status, 0);
    muni.stop();

    EXPECT_EQ(stored(db, "SELECT count(*) FROM handled"), n);
    EXPECT_EQ(stored(db, "SELECT count(*) FROM kv WHERE CAST(key AS TEXT) LIKE 'msg:%'"), n);
    EXPECT_EQ(stored(db, "SELECT CAST(value AS TEXT) FROM kv WHERE CAST(key AS TEXT) = 'count'"), n);
}
