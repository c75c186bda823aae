// Hosts that take their peers' keys from the signed trust store: a key rotation and a revocation
// take effect on reload (what SIGHUP does) without restarting the prefecture, and a store that is
// expired, altered or older is refused.
#include "collector.hpp"
#include "network.hpp"

#include <renkei/audit_log.hpp>
#include <renkei/transport.hpp>
#include <renkei/trust_store.hpp>

#include <gtest/gtest.h>

#include <csignal>
#include <fcntl.h>
#include <unistd.h>
#include <sys/wait.h>

using namespace renkei;
using namespace renkei::test;
using namespace std::chrono_literals;

namespace {

struct TrustNet {
    TempDir tmp;
    Network net{tmp};
    std::string root_pub = generate_root_key(tmp / "root");
    crypto::SigningKey root = load_signing_key(tmp / "root" / "root.key");
    std::filesystem::path file = tmp / "trust.toml";

    // Writes and signs edition `serial` listing `nodes` (TOML [[node]] tables) and `revoked` keys.
    void publish(int serial, const std::string& nodes, const std::vector<std::string>& revoked = {},
                 const std::string& expires = "2099-01-01T00:00:00Z") {
        std::string text = "[trust]\nnetwork = \"test\"\nserial = " + std::to_string(serial) +
                           "\nissued_at = 2019-01-01T00:00:00Z\nexpires_at = " + expires + "\n\n" + nodes;
        for (auto& k : revoked) text += "[[revoked]]\nkey = \"" + k + "\"\nreason = \"test\"\n\n";
        write_file(file, text);
        sign_trust_store(file, root);
    }
    std::function<void(HostConfig&)> with_store(std::filesystem::path keys_dir = {}) {
        return [this, keys_dir](HostConfig& c) {
            c.trust_store = file;
            c.trust_root = root_pub;
            for (auto& p : c.peers) p.curve_public = p.sign_public = p.seal_public = ""; // from the store only
            if (!keys_dir.empty()) c.keys_dir = keys_dir;
        };
    }
};

std::string ping(Host& from, const std::string& origin, const std::string& payload) {
    return submit_new(from, origin, "echo.Ping", "pref:13", payload);
}

std::string node_toml(const std::string& id, const std::vector<NodeCard>& cards) {
    std::string curve, sign;
    for (auto& c : cards) {
        curve += (curve.empty() ? "\"" : ", \"") + c.curve_public + "\"";
        sign += (sign.empty() ? "\"" : ", \"") + c.sign_public + "\"";
    }
    return "[[node]]\nid = \"" + id + "\"\ncurve_public = [" + curve + "]\nsign_public = [" + sign +
           "]\nseal_public = \"" + cards.back().seal_public + "\"\n\n";
}

} // namespace

TEST(Trust, RotationAndRevocationTakeEffectOnReloadWithoutRestartingThePeer) {
    TrustNet t;
    auto pref = t.net.keys_for("pref:13");
    auto muni_old = t.net.keys_for("muni:131016");
    t.publish(1, node_toml("pref:13", {pref}) + node_toml("muni:131016", {muni_old}));
    t.net.start({"pref:13", true, {echo_plugin()}, {{"muni:131016", {}}}}, t.with_store());
    t.net.start({"muni:131016", false, {}, {{"pref:13", {"*"}}}}, t.with_store());
    EXPECT_EQ(t.net["pref:13"].trust_serial(), 1);

    Collector client("client", {"echo.Pong", "echo.Ping.Fault"});
    t.net["muni:131016"].add_endpoint(client.endpoint());
    ping(t.net["muni:131016"], client.name(), "with the first key");
    auto got = client.wait_for(1, 20s);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].type, "echo.Pong") << got[0].fault_message;

    // Rotation: edition 2 lists the municipality's old and new keys; the prefecture reloads
    // (SIGHUP) and the municipality restarts with its new keys only.
    auto muni_new = generate_node_keys(t.tmp / "muni-new-keys", "muni:131016");
    t.publish(2, node_toml("pref:13", {pref}) + node_toml("muni:131016", {muni_old, muni_new}));
    EXPECT_NE(t.net["pref:13"].reload_trust().find("serial 2 loaded"), std::string::npos);
    t.net.remove("muni:131016");
    t.net.start({"muni:131016", false, {}, {{"pref:13", {"*"}}}}, t.with_store(t.tmp / "muni-new-keys"));
    Collector client2("client2", {"echo.Pong", "echo.Ping.Fault"});
    t.net["muni:131016"].add_endpoint(client2.endpoint());
    ping(t.net["muni:131016"], client2.name(), "with the new key");
    got = client2.wait_for(1, 20s);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].type, "echo.Pong") << got[0].fault_message;

    // Revocation: edition 3 revokes the old keys. Someone holding them cannot connect any more.
    t.publish(3, node_toml("pref:13", {pref}) + node_toml("muni:131016", {muni_old, muni_new}),
              {muni_old.curve_public, muni_old.sign_public});
    EXPECT_NE(t.net["pref:13"].reload_trust().find("serial 3 loaded"), std::string::npos);
    auto old_keys = load_node_keys(t.net.keys_dir("muni:131016"));
    TransportOptions o;
    o.node_id = "muni:131016";
    o.curve_public = old_keys.curve_public;
    o.curve_secret.assign(reinterpret_cast<const char*>(old_keys.curve_secret.view().data()), 40);
    Transport stolen(o, {});
    stolen.add_peer("pref:13", {t.net.endpoint("pref:13")}, pref.curve_public);
    stolen.start();
    for (int i = 0; i < 20; ++i) {
        stolen.send("pref:13", std::vector<uint8_t>(64, 0));
        std::this_thread::sleep_for(50ms);
    }
    stolen.stop();
    auto echo = t.net["pref:13"].router().handler_for("echo.Ping");
    EXPECT_EQ(echo->status().handled, 2u);
    EXPECT_EQ(t.net["pref:13"].metrics().counters("(unreadable)", "links").failed.load(), 0u)
        << "frames on a revoked key must not even reach signature checking";

    // The municipality on its new key still gets through after the revocation.
    ping(t.net["muni:131016"], client2.name(), "after the revocation");
    got = client2.wait_for(2, 20s);
    ASSERT_EQ(got.size(), 2u);
    EXPECT_EQ(got[1].type, "echo.Pong") << got[1].fault_message;

    // An older edition, or an altered one, is refused and edition 3 stays.
    t.publish(2, node_toml("pref:13", {pref}) + node_toml("muni:131016", {muni_old, muni_new}));
    EXPECT_NE(t.net["pref:13"].reload_trust().find("older than the one in use"), std::string::npos);
    t.publish(4, node_toml("pref:13", {pref}) + node_toml("muni:131016", {muni_new}));
    write_file(t.file, read_file(t.file) + "# edited after signing\n");
    EXPECT_NE(t.net["pref:13"].reload_trust().find("does not verify"), std::string::npos);
    EXPECT_EQ(t.net["pref:13"].trust_serial(), 3);

    // Each reload is in the audit trail.
    std::string trail = audit_trail(t.net["pref:13"]);
    EXPECT_NE(trail.find("trust.reload"), std::string::npos);
    EXPECT_NE(trail.find("serial 3 loaded"), std::string::npos);
    EXPECT_NE(trail.find("older than the one in use"), std::string::npos);
}

// A node rotates its own keys without a restart (what SIGHUP does after the trust store): first
// the listening prefecture (its link is bound again with the new CURVE key, answers are signed with
// the new key), then the dialling municipality (redialled with its new client key). Keys the trust
// store does not list are refused and the node keeps working on the current ones.
TEST(Trust, OwnKeysRotateOnReloadWithoutRestartingEitherNode) {
    TrustNet t;
    auto pref_old = t.net.keys_for("pref:13");
    auto muni_old = t.net.keys_for("muni:131016");
    t.publish(1, node_toml("pref:13", {pref_old}) + node_toml("muni:131016", {muni_old}));
    t.net.start({"pref:13", true, {echo_plugin()}, {{"muni:131016", {}}}}, t.with_store());
    t.net.start({"muni:131016", false, {}, {{"pref:13", {"*"}}}}, t.with_store());
    auto& pref = t.net["pref:13"];
    auto& muni = t.net["muni:131016"];
    Collector client("client", {"echo.Pong", "echo.Ping.Fault"});
    muni.add_endpoint(client.endpoint());
    size_t asked = 0;
    auto round_trip = [&](const std::string& what) {
        ping(muni, client.name(), what);
        auto got = client.wait_for(++asked, 30s);
        ASSERT_EQ(got.size(), asked) << what;
        EXPECT_EQ(got.back().type, "echo.Pong") << what << ": " << got.back().fault_message;
    };
    round_trip("first keys");

    // New keys in the prefecture's keys_dir that no trust store lists yet: refused, the old stay.
    auto pref_new = generate_node_keys(t.net.keys_dir("pref:13"), "pref:13", true);
    EXPECT_NE(pref.reload_keys().find("are not trusted there"), std::string::npos);
    round_trip("after a refused reload");

    // Edition 2 lists both; the prefecture switches; edition 3 drops the old key, the municipality
    // reloads it and redials the prefecture's new server key.
    t.publish(2, node_toml("pref:13", {pref_old, pref_new}) + node_toml("muni:131016", {muni_old}));
    EXPECT_NE(pref.reload_trust().find("serial 2 loaded"), std::string::npos);
    EXPECT_NE(muni.reload_trust().find("serial 2 loaded"), std::string::npos);
    EXPECT_NE(pref.reload_keys().find("own keys rotated"), std::string::npos);
    EXPECT_EQ(pref.reload_keys(), "own keys unchanged");
    t.publish(3, node_toml("pref:13", {pref_new}) + node_toml("muni:131016", {muni_old}));
    EXPECT_NE(muni.reload_trust().find("serial 3 loaded"), std::string::npos);
    EXPECT_NE(pref.reload_trust().find("serial 3 loaded"), std::string::npos);
    round_trip("prefecture on its new keys"); // the Pong verifies only with the prefecture's new key

    // The municipality's turn: it dials, so it redials with its new client key at once.
    auto muni_new = generate_node_keys(t.net.keys_dir("muni:131016"), "muni:131016", true);
    t.publish(4, node_toml("pref:13", {pref_new}) + node_toml("muni:131016", {muni_old, muni_new}));
    EXPECT_NE(pref.reload_trust().find("serial 4 loaded"), std::string::npos);
    EXPECT_NE(muni.reload_trust().find("serial 4 loaded"), std::string::npos);
    EXPECT_NE(muni.reload_keys().find("own keys rotated"), std::string::npos);
    t.publish(5, node_toml("pref:13", {pref_new}) + node_toml("muni:131016", {muni_new}),
              {muni_old.curve_public, muni_old.sign_public, pref_old.curve_public, pref_old.sign_public});
    EXPECT_NE(pref.reload_trust().find("serial 5 loaded"), std::string::npos);
    EXPECT_NE(muni.reload_trust().find("serial 5 loaded"), std::string::npos);
    round_trip("both on new keys, the old ones revoked");
    auto echo = pref.router().handler_for("echo.Ping"); // counts a Ping once its handler returned
    for (int i = 0; i < 500 && echo->status().handled < asked; ++i) std::this_thread::sleep_for(10ms);
    EXPECT_EQ(echo->status().handled, asked);

    for (auto* h : {&pref, &muni}) {
        auto trail = audit_trail(*h);
        EXPECT_NE(trail.find("keys.reload"), std::string::npos);
        EXPECT_NE(trail.find("own keys rotated"), std::string::npos);
    }
    EXPECT_NE(audit_trail(pref).find("own keys not reloaded, the current ones stay"), std::string::npos);
}

TEST(Trust, HostRefusesToStartOnAnExpiredOrForeignStore) {
    TrustNet t;
    auto pref = t.net.keys_for("pref:13");
    auto muni = t.net.keys_for("muni:131016");
    t.publish(1, node_toml("pref:13", {pref}) + node_toml("muni:131016", {muni}), {}, "2020-01-01T00:00:00Z");
    try {
        t.net.start({"pref:13", true, {echo_plugin()}, {{"muni:131016", {}}}}, t.with_store());
        FAIL() << "started on an expired trust store";
    } catch (const TrustError& e) {
        EXPECT_NE(std::string(e.what()).find("expired at 2020-01-01T00:00:00Z"), std::string::npos) << e.what();
    }
    // A store that does not list this node's keys (e.g. they were rotated away) is refused too.
    auto other = generate_node_keys(t.tmp / "other", "pref:13");
    t.publish(2, node_toml("pref:13", {other}) + node_toml("muni:131016", {muni}));
    try {
        t.net.start({"pref:13", true, {echo_plugin()}, {{"muni:131016", {}}}}, t.with_store());
        FAIL() << "started with keys the trust store does not list";
    } catch (const TrustError& e) {
        EXPECT_NE(std::string(e.what()).find("are not trusted there"), std::string::npos) << e.what();
    }
}

TEST(Trust, SighupReloadsTheTrustStoreOfARunningHost) {
    TrustNet t;
    auto pref = t.net.keys_for("pref:13");
    auto muni = t.net.keys_for("muni:131016");
    t.publish(1, node_toml("pref:13", {pref}) + node_toml("muni:131016", {muni}));
    auto cfg = t.net.config({"pref:13", true, {}, {{"muni:131016", {}}}});
    auto conf = t.tmp / "pref.toml";
    write_file(conf, "[node]\nid = \"pref:13\"\ndata_dir = \"" + cfg.data_dir.string() + "\"\nkeys_dir = \"" +
                         cfg.keys_dir.string() + "\"\nlisten = \"tcp://127.0.0.1:0\"\ntrust_store = \"" +
                         t.file.string() + "\"\ntrust_root = \"" + t.root_pub + "\"\n\n[[peer]]\nnode = \"muni:131016\"\n");
    auto log = t.tmp / "host.log";
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(fd, 1);
        dup2(fd, 2);
        execl(RENKEI_BINARY, RENKEI_BINARY, "host", "--config", conf.c_str(), (char*)nullptr);
        _exit(127);
    }
    auto wait_log = [&](const std::string& what) {
        for (int i = 0; i < 200; ++i) {
            if (read_file(log).find(what) != std::string::npos) return true;
            std::this_thread::sleep_for(50ms);
        }
        return false;
    };
    EXPECT_TRUE(wait_log("running with")) << read_file(log);
    t.publish(2, node_toml("pref:13", {pref}) + node_toml("muni:131016", {muni}));
    kill(pid, SIGHUP);
    EXPECT_TRUE(wait_log("trust store serial 2 loaded")) << read_file(log);
    kill(pid, SIGTERM);
    int status = 0;
    waitpid(pid, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << read_file(log);
}
