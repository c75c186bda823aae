// Killing the receiving host with SIGKILL in the middle of 10,000 messages and restarting it ends
// with every message handled exactly once by the plugin (count and ids checked). Messages that
// arrive while a host starts its plugins, or stops them, wait with their sender instead of being
// refused as "no plugin handles this type".
#include "network.hpp"

#include <renkei/sqlite.hpp>

#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <thread>

using namespace renkei;
using namespace renkei::test;
using namespace std::chrono_literals;

namespace {

// Starts a host process whose output goes to `log` (appended), for the failure message.
pid_t spawn_host(const std::filesystem::path& config, const std::filesystem::path& log) {
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
        }
        execl(RENKEI_BINARY, RENKEI_BINARY, "--log-level", "info", "host", "--config", config.c_str(), "--plugin-dir",
              RENKEI_BUILD_DIR, nullptr);
        _exit(127);
    }
    return pid;
}

// "" while `pid` runs, else how it ended (reaped).
std::string ended(pid_t pid) {
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) != pid) return {};
    if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
    if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
    return "ended";
}

// Reads the counter plugin's store (another connection; WAL lets it read while the host writes).
int64_t stored(const std::filesystem::path& db, const char* sql) {
    if (!std::filesystem::exists(db)) return 0;
    try {
        return sqlite_scalar(db, sql);
    } catch (const sqlite::Error&) {
        return 0; // the table may not exist yet
    }
}

// A municipality's host (in this process) that sends to pref:13 at `endpoint`.
std::unique_ptr<Host> sender_to(Network& net, const std::string& endpoint) {
    auto cfg = net.config({"muni:131016", false, {}, {{"pref:13", {"*"}}}});
    cfg.peers[0].endpoints = {endpoint};
    auto host = std::make_unique<Host>(cfg);
    host->start();
    return host;
}

// A counter.Count envelope for pref:13 (the host gives each submission its own id).
kj::Array<capnp::word> count_message() {
    capnp::MallocMessageBuilder mb;
    auto e = mb.initRoot<schema::Envelope>();
    e.setType("counter.Count");
    e.setTo("pref:13");
    e.setPurpose("test");
    return capnp::messageToFlatArray(mb);
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
    auto pref_log = tmp / "pref.log";
    pid_t pref = spawn_host(pref_toml, pref_log);

    auto muni = sender_to(net, "tcp://127.0.0.1:" + std::to_string(port));
    const int n = 10000;
    auto flat = count_message();
    std::thread sender([&] {
        for (int i = 0; i < n; ++i) muni->submit("test", flat.asBytes());
    });

    auto db = pref_cfg.data_dir / "store" / "counter.db";
    std::string pref_end;
    auto deadline = std::chrono::steady_clock::now() + 120s;
    while (stored(db, "SELECT count(*) FROM handled") < n / 3 && std::chrono::steady_clock::now() < deadline &&
           (pref_end = ended(pref)).empty())
        std::this_thread::sleep_for(5ms);
    ASSERT_EQ(pref_end, "") << "the prefecture host ended before it was killed; its log:\n" << read_file(pref_log);
    ASSERT_EQ(kill(pref, SIGKILL), 0);
    int status = 0;
    waitpid(pref, &status, 0);
    int64_t at_kill = stored(db, "SELECT count(*) FROM handled");
    EXPECT_GT(at_kill, 0);
    EXPECT_LT(at_kill, n); // really killed in the middle
    {
        std::ofstream mark(pref_log, std::ios::app);
        mark << "---- SIGKILL after " << at_kill << " handled; restarted ----\n";
    }
    pref = spawn_host(pref_toml, pref_log);
    sender.join();

    // A generous deadline: a loaded CI machine with slow fsync is slow, not wrong.
    deadline = std::chrono::steady_clock::now() + 300s;
    while (muni->links_pending() > 0 && std::chrono::steady_clock::now() < deadline && (pref_end = ended(pref)).empty())
        std::this_thread::sleep_for(20ms);
    size_t pending = muni->links_pending();
    EXPECT_EQ(pref_end, "") << "the restarted prefecture host ended";
    EXPECT_EQ(pending, 0u);
    if (pref_end.empty()) {
        kill(pref, SIGTERM);
        waitpid(pref, &status, 0);
        EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "the restarted host did not stop cleanly";
    }
    muni->stop();

    int64_t handled = stored(db, "SELECT count(*) FROM handled");
    EXPECT_EQ(handled, n);
    EXPECT_EQ(stored(db, "SELECT count(*) FROM kv WHERE CAST(key AS TEXT) LIKE 'msg:%'"), n);
    EXPECT_EQ(stored(db, "SELECT CAST(value AS TEXT) FROM kv WHERE CAST(key AS TEXT) = 'count'"), n);
    if (HasFailure()) {
        std::string log = read_file(pref_log);
        if (log.size() > 20000) log = "...\n" + log.substr(log.size() - 20000);
        ADD_FAILURE() << "killed after " << at_kill << " handled; " << pending << " still pending at the sender; "
                      << handled << " handled in the end; the prefecture host's log:\n"
                      << log;
    }
}

// The sender's outbox holds messages for a host that is down; they arrive as soon as it listens,
// while its plugin is still starting (slowly), and again while it stops. None is refused or lost.
TEST(Crash, MessagesArrivingWhileAHostStartsOrStopsItsPluginsWaitForThem) {
    TempDir tmp;
    Network net(tmp);
    PluginConfig counter;
    counter.name = "counter";
    counter.path = plugin_path("tests/plugins", "counter");
    counter.settings = toml::table{{"start_delay_ms", "1500"}};
    auto pref_spec = NodeSpec{"pref:13", true, {counter}, {{"muni:131016", {}}}};
    auto& pref = net.start(pref_spec); // once, for its endpoint; then down while the sender queues
    std::string endpoint = pref.link_endpoint();
    net.remove("pref:13");

    auto muni = sender_to(net, endpoint);
    const int n = 300;
    auto flat = count_message();
    for (int i = 0; i < n / 2; ++i) muni->submit("test", flat.asBytes());

    // Up again on the same endpoint: the queued messages arrive during the plugin's slow start.
    auto db = net.start(pref_spec, [&](HostConfig& c) { c.listen = endpoint; }).config().data_dir / "store" / "counter.db";
    std::thread sender([&] {
        for (int i = n / 2; i < n; ++i) {
            muni->submit("test", flat.asBytes());
            std::this_thread::sleep_for(2ms);
        }
    });
    // Stopped in the middle of the second half, and started again.
    auto deadline = std::chrono::steady_clock::now() + 120s;
    while (stored(db, "SELECT count(*) FROM handled") < n / 2 + 20 && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(5ms);
    net.remove("pref:13");
    net.start(pref_spec, [&](HostConfig& c) { c.listen = endpoint; });
    sender.join();
    deadline = std::chrono::steady_clock::now() + 300s;
    while (muni->links_pending() > 0 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(20ms);
    EXPECT_EQ(muni->links_pending(), 0u);
    muni->stop();
    // Nothing was refused for want of a plugin, in any of the three runs (one audit trail).
    auto trail = audit_trail(net["pref:13"]);
    EXPECT_EQ(trail.find("no plugin at pref:13 handles"), std::string::npos);
    EXPECT_NE(trail.find("delivered"), std::string::npos); // the trail is the right one
    net.remove("pref:13");

    EXPECT_EQ(stored(db, "SELECT count(*) FROM handled"), n);
    EXPECT_EQ(stored(db, "SELECT CAST(value AS TEXT) FROM kv WHERE CAST(key AS TEXT) = 'count'"), n);
}
