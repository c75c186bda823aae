// Three hosts (municipality, prefecture, J-LIS) over CURVE links with signed envelopes.
#include "collector.hpp"
#include "network.hpp"

#include <renkei/audit_log.hpp>
#include <renkei/dead_letters.hpp>
#include <renkei/links.hpp>
#include <renkei/local_endpoint.hpp>
#include <renkei/merkle.hpp>
#include <renkei/outbox.hpp>
#include <renkei/transport.hpp>
#include <wire.capnp.h>

#include <gtest/gtest.h>

#include <set>

using namespace renkei;
using namespace renkei::test;
using namespace std::chrono_literals;

namespace {

// J-LIS <- prefecture <- municipality, started in the order the tiers start.
struct ThreeTier {
    TempDir tmp;
    Network net{tmp};
    explicit ThreeTier(bool batch_signing = false, bool memory_delivery = false) {
        net.start({"jlis:juki", true, {echo_plugin()}, {{"pref:13", {"muni:*"}}}, {}, batch_signing, memory_delivery});
        net.start({"pref:13", true, {echo_plugin()}, {{"jlis:juki", {"jlis:*"}}, {"muni:131016", {}}}, {}, batch_signing,
                   memory_delivery});
        net.start({"muni:131016", false, {}, {{"pref:13", {"*"}}}, {}, batch_signing, memory_delivery});
    }
};

std::string ping(Host& from, const std::string& origin, const std::string& to, const std::string& payload) {
    return submit_new(from, origin, "echo.Ping", to, payload);
}

// The envelope id of an outbox entry or dead letter, which keeps the canonical envelope body
// (one segment, no segment table).
std::string id_of_kept_body(const std::vector<uint8_t>& body) {
    auto words = kj::heapArray<capnp::word>(body.size() / 8 + 1);
    uint32_t table[2] = {0, static_cast<uint32_t>(body.size() / 8)};
    memcpy(words.begin(), table, 8);
    memcpy(words.begin() + 1, body.data(), body.size());
    return hex(EnvelopeView::decode(words.begin(), words.asBytes().size()).id());
}

} // namespace

TEST(Network, MunicipalityReachesJlisThroughPrefectureAndBack) {
    ThreeTier t;
    Collector client("client", {"echo.Pong", "echo.Ping.Fault"});
    t.net["muni:131016"].add_endpoint(client.endpoint());
    auto id = ping(t.net["muni:131016"], client.name(), "jlis:juki", "本人確認情報");
    auto got = client.wait_for(1, 20s);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].type, "echo.Pong") << got[0].fault_message;
    EXPECT_EQ(got[0].correlation, id);
    EXPECT_EQ(got[0].payload, "本人確認情報");
    // Custody was acknowledged hop by hop: nothing stays in an outbox.
    for (int i = 0; i < 100 && (t.net["muni:131016"].links_pending() || t.net["pref:13"].links_pending() ||
                                t.net["jlis:juki"].links_pending());
         ++i)
        std::this_thread::sleep_for(50ms);
    EXPECT_EQ(t.net["muni:131016"].links_pending(), 0u);
    EXPECT_EQ(t.net["pref:13"].links_pending(), 0u);
    EXPECT_EQ(t.net["jlis:juki"].links_pending(), 0u);
}

TEST(Network, UnroutableMessageGetsAFaultBack) {
    ThreeTier t;
    Collector client("client", {"echo.Pong", "echo.Ping.Fault"});
    t.net["jlis:juki"].add_endpoint(client.endpoint());
    ping(t.net["jlis:juki"], client.name(), "agency:nta", "x"); // J-LIS has no route to agencies here
    auto got = client.wait_for(1, 10s);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].type, "echo.Ping.Fault");
    EXPECT_NE(got[0].fault_message.find("no route from jlis:juki to node agency:nta"), std::string::npos)
        << got[0].fault_message;
}

TEST(Network, HostWithUnknownKeyCannotConnect) {
    ThreeTier t;
    // A host whose keys the prefecture does not trust: it knows the prefecture's endpoint and key.
    TempDir other;
    Network rogue_net(other);
    auto card = t.net.keys_for("pref:13");
    auto cfg = rogue_net.config({"muni:011002", false, {}, {}});
    PeerConfig p;
    p.node = "pref:13";
    p.endpoints = {t.net.endpoint("pref:13")};
    p.curve_public = card.curve_public;
    p.sign_public = card.sign_public;
    p.reaches = {"*"};
    cfg.peers.push_back(p);
    HostOptions o;
    o.runner_path = RENKEI_BINARY;
    Host rogue(cfg, o);
    rogue.start();
    Collector client("client", {"echo.Pong", "echo.Ping.Fault"});
    rogue.add_endpoint(client.endpoint());
    ping(rogue, client.name(), "pref:13", "let me in");
    EXPECT_TRUE(client.wait_for(1, 2s).empty());
    EXPECT_EQ(rogue.links_pending(), 1u); // never acknowledged: still in its outbox
    auto echo = t.net["pref:13"].router().handler_for("echo.Ping");
    EXPECT_EQ(echo->status().handled, 0u);
    rogue.stop();
}

namespace {

std::vector<uint8_t> signed_frame(const NodeKeys& signer, const std::string& key_id, schema::Envelope::Reader env,
                                  bool tamper_after_signing) {
    auto canonical = capnp::canonicalize(env);
    auto body = canonical.asBytes();
    std::vector<uint8_t> b(body.begin(), body.end());
    auto sig = signer.sign.sign(b);
    if (tamper_after_signing) b[b.size() - 3] ^= 1;
    capnp::MallocMessageBuilder mb;
    auto s = mb.initRoot<wire::Frame>().initEnvelope();
    s.setBody(kj::ArrayPtr<const kj::byte>(b.data(), b.size()));
    s.setAlg(schema::SignatureAlg::ED25519);
    s.setKeyId(key_id);
    s.setSignature(kj::ArrayPtr<const kj::byte>(sig.data(), sig.size()));
    auto flat = capnp::messageToFlatArray(mb);
    auto bytes = flat.asBytes();
    return {bytes.begin(), bytes.end()};
}

// The value of `series` (name and labels) in Prometheus text from /metrics, or -1 when absent.
double series_value(const std::string& text, const std::string& series) {
    auto at = text.find("\n" + series + " ");
    return at == std::string::npos ? -1.0 : std::stod(text.substr(at + series.size() + 2));
}

} // namespace

// An echo.Ping from muni:131016 to pref:13 as its host would sign it (hop 1), and its id (hex).
std::pair<kj::Array<capnp::word>, std::string> hand_built_ping(const std::string& payload,
                                                               const std::string& type = "echo.Ping",
                                                               const std::string& to = "pref:13") {
    capnp::MallocMessageBuilder mb;
    auto e = mb.initRoot<schema::Envelope>();
    auto id = new_message_id();
    e.setId(kj::ArrayPtr<const kj::byte>(id.data(), id.size()));
    e.setType(type);
    e.setFrom("muni:131016");
    e.setTo(to);
    e.setHopCount(1);
    e.setPayload(bytes_of(payload));
    return {capnp::messageToFlatArray(mb), hex(id)};
}

// Speaks to pref:13 over CURVE with a node's own keys, bypassing its host, so a test can send
// frames built by hand; collects the acknowledgements that come back.
struct RawLink {
    std::mutex m;
    std::condition_variable cv;
    std::vector<std::string> acked;
    std::unique_ptr<Transport> transport;

    // Dials pref:13 as the network started it, or at `endpoint`.
    RawLink(Network& net, const NodeKeys& keys, const std::string& endpoint = "") {
        TransportOptions o;
        o.node_id = keys.node_id;
        o.curve_public = keys.curve_public;
        o.curve_secret.assign(reinterpret_cast<const char*>(keys.curve_secret.view().data()), 40);
        transport = std::make_unique<Transport>(o, std::map<std::string, std::string>{});
        transport->on_receive([this](const std::string&, const uint8_t* f, size_t size) {
            auto words = kj::heapArray<capnp::word>(size / 8);
            memcpy(words.begin(), f, size);
            capnp::FlatArrayMessageReader r(words.asPtr());
            auto frame = r.getRoot<wire::Frame>();
            if (frame.which() != wire::Frame::ACK) return;
            std::lock_guard lock(m);
            for (auto id : frame.getAck()) acked.push_back(hex(id));
            cv.notify_all();
        });
        transport->add_peer("pref:13", {endpoint.empty() ? net.endpoint("pref:13") : endpoint},
                            net.keys_for("pref:13").curve_public);
        transport->start();
    }
    void send(const std::vector<uint8_t>& frame) { transport->send("pref:13", frame); }
    size_t count(const std::string& id) {
        std::lock_guard lock(m);
        return std::count(acked.begin(), acked.end(), id);
    }
    size_t size() {
        std::lock_guard lock(m);
        return acked.size();
    }
    template <typename Pred> bool wait(std::chrono::milliseconds timeout, Pred pred) {
        std::unique_lock lock(m);
        return cv.wait_for(lock, timeout, pred);
    }
};

// The transport's thread checks a frame's signature before it queues the frame for the receiver.
// A trust change in between (here: muni:131016's signing key replaced while the receiver is busy
// with an earlier message) has the receiver check it again under the new trust: nothing checked
// with a key no longer trusted gets through.
TEST(Network, AFrameCheckedBeforeATrustChangeIsCheckedAgainAfterIt) {
    TempDir tmp;
    Network net(tmp);
    auto muni = load_node_keys((net.keys_for("muni:131016"), net.keys_dir("muni:131016")));
    auto cfg = net.config({"pref:13", true, {}, {{"muni:131016", {}}}});
    Metrics metrics;
    Router router("pref:13", metrics);
    std::mutex m;
    std::condition_variable cv;
    int handled = 0, policy_calls = 0;
    bool release = false;
    auto sink = std::make_shared<LocalEndpoint>("sink", std::vector<std::string>{"echo.Ping"},
                                                [&](const EnvelopeView&, std::string&) {
                                                    std::lock_guard lock(m);
                                                    ++handled;
                                                    cv.notify_all();
                                                    return RENKEI_OK;
                                                });
    sink->start();
    router.add_endpoint(sink);
    Links links(cfg, std::make_shared<const NodeKeys>(load_node_keys(cfg.keys_dir)), router, metrics,
                [] { return std::chrono::duration_cast<std::chrono::milliseconds>(
                                std::chrono::system_clock::now().time_since_epoch()).count(); });
    // The policy, on the receiver's thread, holds the first message until the test releases it.
    links.set_policy([&](const schema::Envelope::Reader&) -> std::string {
        std::unique_lock lock(m);
        if (++policy_calls == 1) {
            cv.notify_all();
            cv.wait(lock, [&] { return release; });
        }
        return "";
    });
    links.start();
    struct Release { // however the test ends: the receiver must not stay held, or stopping waits for ever
        std::mutex& m;
        std::condition_variable& cv;
        bool& release;
        ~Release() {
            std::lock_guard lock(m);
            release = true;
            cv.notify_all();
        }
    } release_on_exit{m, cv, release};
    RawLink raw(net, muni, links.endpoint());

    auto frame_of = [&](const std::string& payload) {
        auto ping = hand_built_ping(payload);
        capnp::FlatArrayMessageReader reader(ping.first);
        return signed_frame(muni, "muni:131016", reader.getRoot<schema::Envelope>(), false);
    };
    auto first = frame_of("first"), second = frame_of("second"), third = frame_of("third");
    for (int i = 0; i < 100; ++i) { // sent again until the link is up and the receiver holds it
        raw.send(first);
        std::unique_lock lock(m);
        if (cv.wait_for(lock, 100ms, [&] { return policy_calls > 0; })) break;
    }
    auto frames_in = [&] { return series_value(metrics.render(), "renkei_transport_frames{direction=\"in\"}"); };
    const double before = frames_in();
    raw.send(second);
    raw.send(third);
    for (int i = 0; i < 250 && frames_in() < before + 2; ++i) std::this_thread::sleep_for(20ms);
    std::this_thread::sleep_for(100ms); // checked on the transport's thread right after counting
    ASSERT_GE(frames_in(), before + 2);

    // muni:131016 signs with another key from now on (same CURVE key: the link stays up).
    auto replacement = crypto::SigningKey::generate();
    links.set_trust({{"muni:131016", PeerKeys{{muni.curve_public}, {crypto::to_hex(replacement.public_raw())}}}},
                    std::numeric_limits<int64_t>::max());
    auto& refused = metrics.counters("(unreadable)", "links").failed;
    {
        std::unique_lock lock(m);
        release = true;
        cv.notify_all();
        EXPECT_TRUE(cv.wait_for(lock, 10s, [&] { return handled >= 1; })) << "the first, checked before the change";
    }
    for (int i = 0; i < 250 && refused.load() < 2; ++i) std::this_thread::sleep_for(20ms);
    EXPECT_EQ(refused.load(), 2u) << "the two checked under the old key, checked again";
    std::this_thread::sleep_for(100ms);
    {
        std::lock_guard lock(m);
        EXPECT_EQ(handled, 1);
        EXPECT_EQ(policy_calls, 1);
    }
    links.stop();
    sink->stop();
}

TEST(Network, TamperedForgedAndReplayedEnvelopesAreRefused) {
    ThreeTier t;
    t.net.stop("muni:131016"); // we speak with its keys instead
    auto keys = load_node_keys(t.net.keys_dir("muni:131016"));
    RawLink raw(t.net, keys);

    auto echo = t.net["pref:13"].router().handler_for("echo.Ping");
    auto make = [](const std::string& payload) { return hand_built_ping(payload); };
    auto send_until_acked = [&](const std::vector<uint8_t>& frame, const std::string& id) {
        for (int i = 0; i < 100; ++i) {
            raw.send(frame);
            if (raw.wait(100ms, [&] { return std::count(raw.acked.begin(), raw.acked.end(), id) > 0; })) return true;
        }
        return false;
    };

    // 1. A genuine frame is accepted and delivered once.
    auto [good_words, good_id] = make("genuine");
    capnp::FlatArrayMessageReader good_reader(good_words);
    auto good = signed_frame(keys, "muni:131016", good_reader.getRoot<schema::Envelope>(), false);
    ASSERT_TRUE(send_until_acked(good, good_id));
    for (int i = 0; i < 500 && echo->status().handled < 1; ++i) std::this_thread::sleep_for(20ms); // slow machines
    EXPECT_EQ(echo->status().handled, 1u);

    // 2. Replay of the same id: acknowledged again, never delivered again.
    size_t acks_before = raw.size();
    raw.send(good);
    raw.wait(5s, [&] { return raw.acked.size() > acks_before; });
    std::this_thread::sleep_for(200ms);
    EXPECT_EQ(echo->status().handled, 1u);

    // 3. Tampered after signing, and 4. signed as J-LIS over the municipality's link: refused.
    auto [w2, id2] = make("tampered");
    capnp::FlatArrayMessageReader r2(w2);
    raw.send(signed_frame(keys, "muni:131016", r2.getRoot<schema::Envelope>(), true));
    auto [w3, id3] = make("forged");
    capnp::FlatArrayMessageReader r3(w3);
    raw.send(signed_frame(keys, "jlis:juki", r3.getRoot<schema::Envelope>(), false));
    auto& refused = t.net["pref:13"].metrics().counters("(unreadable)", "links").failed;
    for (int i = 0; i < 200 && refused.load() < 2; ++i) std::this_thread::sleep_for(50ms); // judged (slow machines)
    EXPECT_EQ(echo->status().handled, 1u);
    EXPECT_EQ(raw.count(id2), 0u);
    EXPECT_EQ(raw.count(id3), 0u);
    EXPECT_GE(refused.load(), 2u);
    raw.transport->stop();

    // Every refusal and the duplicate are in the prefecture's audit trail, which verifies.
    auto* audit = t.net["pref:13"].audit();
    std::string trail = audit_trail(t.net["pref:13"]);
    EXPECT_NE(trail.find("refused\t\t\tmuni:131016\tpref:13\t\t\trefused\tsignature does not verify"), std::string::npos);
    EXPECT_NE(trail.find("(forged sender)"), std::string::npos);
    EXPECT_NE(trail.find("duplicate\t" + good_id), std::string::npos);
    EXPECT_NE(trail.find("delivered\t" + good_id), std::string::npos);
    auto verified = verify_audit(audit->dir());
    EXPECT_TRUE(verified.ok) << verified.error;
}

TEST(Network, APrefectureRefusesToRelayACsToCsNoticeEvenIfItsSenderTriedTo) {
    // A host that skipped its own check (here: frames built by hand with muni:131016's keys) still
    // cannot get a 転入通知 through pref:13, whose policy would carry anything (第3 3(3)).
    ThreeTier t;
    t.net.stop("muni:131016");
    auto keys = load_node_keys(t.net.keys_dir("muni:131016"));
    RawLink raw(t.net, keys);
    auto [words, id] = hand_built_ping("転入通知の内容", "juki.MoveInNotice", "muni:132012");
    capnp::FlatArrayMessageReader reader(words);
    auto frame = signed_frame(keys, "muni:131016", reader.getRoot<schema::Envelope>(), false);
    for (int i = 0; i < 100 && raw.count(id) == 0; ++i) {
        raw.send(frame);
        raw.wait(100ms, [&, id = id] { return std::count(raw.acked.begin(), raw.acked.end(), id) > 0; });
    }
    EXPECT_EQ(raw.count(id), 1u) << "custody taken, and refused";
    raw.transport->stop();
    std::string trail = audit_trail(t.net["pref:13"]);
    EXPECT_NE(trail.find("juki.MoveInNotice may not pass through pref:13"), std::string::npos) << trail;
    // Only the Fault waits for the (stopped) sender; the notice itself is nowhere on the prefecture's disk.
    for (auto& f : std::filesystem::recursive_directory_iterator(t.tmp.path())) {
        if (f.is_regular_file() && f.path().string().find("pref_13") != std::string::npos) {
            EXPECT_EQ(read_file(f.path()).find("転入通知の内容"), std::string::npos) << f.path();
        }
    }
}

TEST(Network, PolicyDeniedMessageNeverReachesThePlugin) {
    TempDir tmp;
    Network net(tmp);
    NodeSpec jlis{"jlis:juki", true, {echo_plugin()}, {{"pref:13", {"muni:*"}}}};
    jlis.policy = "[[rule]]\nsender = \"kind:muni\"\ntype = \"echo.Ping\"\npurpose = \"juki-30-6\"\n";
    net.start(jlis);
    net.start({"pref:13", true, {}, {{"jlis:juki", {"jlis:*"}}, {"muni:131016", {}}}});
    net.start({"muni:131016", false, {}, {{"pref:13", {"*"}}}});
    Collector client("client", {"echo.Pong", "echo.Ping.Fault"});
    net["muni:131016"].add_endpoint(client.endpoint());

    capnp::MallocMessageBuilder mb;
    auto e = mb.initRoot<schema::Envelope>();
    e.setType("echo.Ping");
    e.setTo("jlis:juki");
    e.setPurpose("no-legal-basis");
    e.setPayload(bytes_of("x"));
    net["muni:131016"].submit(client.name(), capnp::messageToFlatArray(mb).asBytes());
    e.setPurpose("juki-30-6");
    net["muni:131016"].submit(client.name(), capnp::messageToFlatArray(mb).asBytes());

    auto got = client.wait_for(2, 20s);
    ASSERT_EQ(got.size(), 2u);
    std::map<std::string, Received> by_type;
    for (auto& r : got) by_type[r.type] = r;
    ASSERT_TRUE(by_type.count("echo.Ping.Fault"));
    EXPECT_EQ(by_type["echo.Ping.Fault"].fault_code, static_cast<uint32_t>(RENKEI_ERR_DENIED));
    EXPECT_NE(by_type["echo.Ping.Fault"].fault_message.find("denied by default"), std::string::npos);
    ASSERT_TRUE(by_type.count("echo.Pong"));
    EXPECT_EQ(net["jlis:juki"].router().handler_for("echo.Ping")->status().handled, 1u);
    auto* audit = net["jlis:juki"].audit();
    audit->flush();
    std::string trail;
    for (auto& f : std::filesystem::directory_iterator(audit->dir()))
        if (f.path().extension() == ".log") trail += read_file(f.path());
    EXPECT_NE(trail.find("policy_deny"), std::string::npos);
    EXPECT_NE(trail.find("policy_allow"), std::string::npos);
}

namespace {

void wait_until_nothing_pending(Network& net, const std::vector<std::string>& nodes) {
    auto pending = [&] {
        size_t n = 0;
        for (auto& node : nodes) n += net[node].links_pending();
        return n;
    };
    for (int i = 0; i < 200 && pending() > 0; ++i) std::this_thread::sleep_for(50ms);
}

} // namespace

// Batch-signed links carry many messages both ways, acknowledged hop by hop. With delivery =
// "memory" the ids each host took from its peers are kept in memory, not in inbox.db (and what it
// sent waited for its acknowledgement in memory, not in the outbox: see the dead-letter test
// below).
class DeliveryModes : public ::testing::TestWithParam<bool> {};

TEST_P(DeliveryModes, BatchSignedLinksCarryManyMessagesBothWaysAndKeepTheIdsTakenOnDiskOnlyWhenDurable) {
    const bool memory = GetParam();
    ThreeTier t(true, memory);
    Collector client("client", {"echo.Pong", "echo.Ping.Fault"});
    t.net["muni:131016"].add_endpoint(client.endpoint());
    std::set<std::string> ids;
    for (int i = 0; i < 300; ++i) ids.insert(ping(t.net["muni:131016"], client.name(), "jlis:juki", "n" + std::to_string(i)));
    auto got = client.wait_for(300, 30s);
    ASSERT_EQ(got.size(), 300u);
    std::set<std::string> answered;
    for (auto& g : got) {
        EXPECT_EQ(g.type, "echo.Pong") << g.fault_message;
        answered.insert(g.correlation);
    }
    EXPECT_EQ(answered, ids);
    const std::vector<std::string> nodes{"muni:131016", "pref:13", "jlis:juki"};
    wait_until_nothing_pending(t.net, nodes);
    for (auto& node : nodes) EXPECT_EQ(t.net[node].links_pending(), 0u) << node;
    for (auto& node : nodes) t.net.stop(node); // the inbox files are theirs while they run
    // Ids taken from peers: the prefecture took 300 pings and 300 pongs, the others 300 each.
    const std::map<std::string, int64_t> taken{{"muni:131016", 300}, {"pref:13", 600}, {"jlis:juki", 300}};
    for (auto& [node, n] : taken)
        EXPECT_EQ(sqlite_scalar(t.tmp / ("data-" + Network::safe(node)) / "inbox.db", "SELECT count(*) FROM inbox_seen"),
                  memory ? 0 : n)
            << node;
}

INSTANTIATE_TEST_SUITE_P(Network, DeliveryModes, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "Memory" : "Durable"; });

// A memory link's sender keeps what it sent in memory until the peer acknowledges it, sends it
// again on the outbox's back-off, and after the last attempt keeps it as a dead letter (which
// `renkei deadletter replay` puts in the outbox).
TEST(Network, MemoryDeliveryResendsFromMemoryAndDeadLettersAfterTheLastAttempt) {
    TempDir tmp;
    Network net(tmp);
    std::atomic<int64_t> now{1'790'000'000'000};
    net.clock = [&now] { return now.load(); };
    net.start({"pref:13", true, {}, {{"muni:131016", {}}}, {}, false, true});
    net.stop("pref:13"); // its endpoint stays in the municipality's config; nobody answers there
    auto& muni = net.start({"muni:131016", false, {}, {{"pref:13", {"*"}}}, {}, false, true});
    Collector client("client", {"echo.Pong", "echo.Ping.Fault"});
    muni.add_endpoint(client.endpoint());
    std::set<std::string> ids;
    for (int i = 0; i < 3; ++i) ids.insert(ping(muni, client.name(), "pref:13", "n" + std::to_string(i)));
    for (int i = 0; i < 200 && muni.links_pending() < 3; ++i) std::this_thread::sleep_for(20ms);
    EXPECT_EQ(muni.links_pending(), 3u);
    const auto outbox = tmp / "data-muni_131016" / "outbox.db";
    EXPECT_EQ(sqlite_scalar(outbox, "SELECT count(*) FROM outbox"), 0) << "waiting in memory, not in the outbox";
    auto metrics = muni.metrics().render();
    EXPECT_NE(metrics.find("renkei_links_unacknowledged{where=\"memory\"} 3\n"), std::string::npos) << metrics;
    EXPECT_NE(metrics.find("renkei_links_unacknowledged{where=\"outbox\"} 0\n"), std::string::npos) << metrics;

    // Each of the 20 sends is followed by a wait of 5-10 s on the host's clock.
    for (int i = 0; i < 200 && muni.links_pending() > 0; ++i) {
        now += 11000;
        std::this_thread::sleep_for(150ms);
    }
    EXPECT_EQ(muni.links_pending(), 0u);
    DeadLetters letters(outbox);
    auto list = letters.list(10);
    ASSERT_EQ(list.size(), 3u);
    std::set<std::string> dead;
    for (auto& d : list) {
        dead.insert(hex(d.id));
        EXPECT_EQ(d.peer, "pref:13");
        EXPECT_EQ(d.type, "echo.Ping");
        EXPECT_EQ(d.attempts, 20);
        EXPECT_NE(d.reason.find("no acknowledgement after 20 sends (delivery = \"memory\")"), std::string::npos)
            << d.reason;
        // The body, as the outbox keeps it (replay puts it there), not the frame that was sent.
        EXPECT_EQ(id_of_kept_body(d.bytes), hex(d.id));
    }
    EXPECT_EQ(dead, ids);
    EXPECT_EQ(sqlite_scalar(outbox, "SELECT count(*) FROM outbox"), 0);
}

// The durable dedup store forgets the ids it took longer ago than [links] dedup_retention_days
// and keeps the newer ones, so inbox.db does not grow without end.
TEST(Network, TheDedupStoreForgetsIdsOlderThanItsRetention) {
    TempDir tmp;
    Network net(tmp);
    std::atomic<int64_t> now{1'790'000'000'000};
    net.clock = [&now] { return now.load(); };
    const int64_t day = 86'400'000;
    auto& pref = net.start({"pref:13", true, {echo_plugin()}, {{"muni:131016", {}}}},
                           [&](HostConfig& c) { c.links.dedup_retention_ms = 2 * day; });
    auto& muni = net.start({"muni:131016", false, {}, {{"pref:13", {"*"}}}});
    Collector client("client", {"echo.Pong", "echo.Ping.Fault"});
    muni.add_endpoint(client.endpoint());
    // Acknowledged means recorded: the receiver acknowledges after its dedup commit.
    auto taken = [&] {
        for (int i = 0; i < 500 && muni.links_pending() > 0; ++i) std::this_thread::sleep_for(20ms);
        return muni.links_pending() == 0;
    };
    ping(muni, client.name(), "pref:13", "old");
    ASSERT_EQ(client.wait_for(1, 20s).size(), 1u);
    ASSERT_TRUE(taken());
    now += day;
    auto recent = ping(muni, client.name(), "pref:13", "recent");
    ASSERT_EQ(client.wait_for(2, 20s).size(), 2u);
    ASSERT_TRUE(taken());
    // A day and a half on, the first is 2.5 days old, past the retention; the second 1.5.
    now += day + day / 2;
    auto pruned = [&] { return pref.metrics().render().find("renkei_links_dedup_pruned 1\n") != std::string::npos; };
    for (int i = 0; i < 500 && !pruned(); ++i) std::this_thread::sleep_for(20ms);
    EXPECT_TRUE(pruned()) << pref.metrics().render();
    net.stop("muni:131016");
    net.stop("pref:13"); // inbox.db is the links' alone while the host runs
    const auto inbox = tmp / "data-pref_13" / "inbox.db";
    EXPECT_EQ(sqlite_scalar(inbox, "SELECT count(*) FROM inbox_seen"), 1);
    EXPECT_EQ(sqlite_scalar(inbox, "SELECT count(*) FROM inbox_seen WHERE lower(hex(id)) = '" + recent + "'"), 1);
}

// A memory link's receiver takes an id once while it runs, and forgets the ids when it stops:
// the trade for not writing them.
TEST(Network, MemoryDeliveryTakesARepeatedIdOnceAndForgetsItOnRestart) {
    TempDir tmp;
    Network net(tmp);
    net.start({"pref:13", true, {echo_plugin()}, {{"muni:131016", {}}}, {}, false, true});
    auto keys = load_node_keys(net.keys_dir("muni:131016"));
    auto ping = hand_built_ping("twice");
    auto& words = ping.first; // named, not bound: the lambdas below capture them (clang before 16 cannot)
    auto& id = ping.second;
    capnp::FlatArrayMessageReader reader(words);
    auto frame = signed_frame(keys, "muni:131016", reader.getRoot<schema::Envelope>(), false);

    auto deliver = [&](size_t handled_before) {
        RawLink raw(net, keys);
        auto echo = net["pref:13"].router().handler_for("echo.Ping");
        bool acked = false;
        for (int i = 0; i < 100 && !acked; ++i) {
            raw.send(frame);
            acked = raw.wait(100ms, [&] { return std::count(raw.acked.begin(), raw.acked.end(), id) > 0; });
        }
        EXPECT_TRUE(acked);
        for (int i = 0; i < 250 && echo->status().handled == handled_before; ++i) std::this_thread::sleep_for(20ms);
        EXPECT_EQ(echo->status().handled, handled_before + 1);
        // Sent again after its acknowledgement: acknowledged again, not delivered again.
        size_t acks = raw.size();
        raw.send(frame);
        EXPECT_TRUE(raw.wait(5s, [&] { return raw.acked.size() > acks; }));
        std::this_thread::sleep_for(200ms);
        EXPECT_EQ(echo->status().handled, handled_before + 1);
        raw.transport->stop();
    };
    deliver(0);
    std::string trail = audit_trail(net["pref:13"]);
    EXPECT_NE(trail.find("duplicate\t" + id), std::string::npos);

    // A new process has no memory of it: taken again.
    net.remove("pref:13");
    net.start({"pref:13", true, {echo_plugin()}, {{"muni:131016", {}}}, {}, false, true});
    deliver(0);
}

// [links] bundle_kib = 0, for peers still on a build that reads no bundles, sends every frame
// alone; /metrics shows what each transport moved, bundled, and dropped as malformed.
TEST(Network, BundleKibZeroSendsEveryFrameAloneAndTheMetricsShowWhatTheTransportMoved) {
    TempDir tmp;
    Network net(tmp);
    net.start({"pref:13", true, {echo_plugin()}, {{"muni:131016", {}}}});
    auto& muni = net.start({"muni:131016", false, {}, {{"pref:13", {"*"}}}},
                           [](HostConfig& c) { c.links.bundle_bytes = 0; });
    Collector client("client", {"echo.Pong", "echo.Ping.Fault"});
    muni.add_endpoint(client.endpoint());
    for (int i = 0; i < 400; ++i) ping(muni, client.name(), "pref:13", "n" + std::to_string(i));
    ASSERT_EQ(client.wait_for(400, 30s).size(), 400u);
    // The value of `series` (name{labels}) in a host's /metrics text; -1 when it is not there.
    auto value = [](Host& h, const std::string& series) { return series_value(h.metrics().render(), series); };
    EXPECT_EQ(value(muni, "renkei_transport_bundles{direction=\"out\"}"), 0);
    EXPECT_GE(value(muni, "renkei_transport_frames{direction=\"out\"}"), 400);
    EXPECT_GE(value(muni, "renkei_transport_frames{direction=\"in\"}"), 400) << "the pongs (and acknowledgements)";
    EXPECT_GE(value(net["pref:13"], "renkei_transport_frames{direction=\"in\"}"), 400);
    EXPECT_EQ(value(net["pref:13"], "renkei_transport_bad_bundles{direction=\"in\"}"), 0);
}

// What a memory link keeps in memory is bounded: past the limits a message waits in the outbox,
// so a relay whose memory peer is down does not fill its memory.
TEST(Network, MemoryDeliveryPastItsLimitsWaitsInTheOutbox) {
    TempDir tmp;
    Network net(tmp);
    net.keys_for("pref:13");
    auto cfg = net.config({"muni:131016", false, {}, {{"pref:13", {"*"}}}, {}, false, true}); // pref:13 never runs
    cfg.links.in_flight_messages = 2; // [links] in_flight_messages
    Metrics metrics;
    Router router("muni:131016", metrics);
    Links links(cfg, std::make_shared<const NodeKeys>(load_node_keys(cfg.keys_dir)), router, metrics,
                [] { return std::chrono::duration_cast<std::chrono::milliseconds>(
                                std::chrono::system_clock::now().time_since_epoch()).count(); });
    links.start();
    auto forward = [&](int n) {
        for (int i = 0; i < n; ++i) {
            auto [words, id] = hand_built_ping("n" + std::to_string(i));
            auto bytes = words.asBytes();
            auto view = EnvelopeView::decode(bytes.begin(), bytes.size());
            auto r = links.forward(view);
            ASSERT_TRUE(r.why.empty()) << r.why;
        }
    };
    const auto outbox = cfg.data_dir / "outbox.db";
    auto wait_pending = [&](size_t n) {
        for (int i = 0; i < 250 && links.pending() < n; ++i) std::this_thread::sleep_for(20ms);
        EXPECT_EQ(links.pending(), n);
    };
    forward(5);
    wait_pending(5);
    EXPECT_EQ(sqlite_scalar(outbox, "SELECT count(*) FROM outbox"), 3) << "two in memory, three past the limit of two messages";
    auto shown = metrics.render();
    EXPECT_NE(shown.find("renkei_links_unacknowledged{where=\"memory\"} 2\n"), std::string::npos) << shown;
    EXPECT_NE(shown.find("renkei_links_unacknowledged{where=\"outbox\"} 3\n"), std::string::npos) << shown;
    links.set_in_flight_limits(100, 0); // no bytes left
    forward(1);
    wait_pending(6);
    EXPECT_EQ(sqlite_scalar(outbox, "SELECT count(*) FROM outbox"), 4) << "past the limit of bytes";
    links.stop();
    EXPECT_EQ(metrics.render().find("renkei_links_unacknowledged"), std::string::npos) << "gauges outlived the links";
}


// A host that starts (or stops) holds what its peers send until its plugins run. What it holds
// is bounded in bytes as well as frames, so peers with backlogs of large batches cannot fill its
// memory: past the bound an envelope is dropped unacknowledged, and when the sender sends it
// again (as its outbox does) it is taken. The held ones are taken in order once the gate opens.
TEST(Network, AClosedInboundGateHoldsABoundedNumberOfBytesAndTheRestComesAgain) {
    TempDir tmp;
    Network net(tmp);
    auto cfg = net.config({"pref:13", true, {}, {{"muni:131016", {}}}});
    Metrics metrics;
    Router router("pref:13", metrics);
    std::mutex m;
    std::vector<std::string> taken; // ids, in the order the plugin got them
    auto sink = std::make_shared<LocalEndpoint>("sink", std::vector<std::string>{"echo.Ping"},
                                                [&](const EnvelopeView& v, std::string&) {
                                                    std::lock_guard lock(m);
                                                    taken.push_back(hex(v.get().getId()));
                                                    return RENKEI_OK;
                                                });
    router.add_endpoint(sink);
    sink->start();
    Links links(cfg, std::make_shared<const NodeKeys>(load_node_keys(cfg.keys_dir)), router, metrics,
                [] { return std::chrono::duration_cast<std::chrono::milliseconds>(
                                std::chrono::system_clock::now().time_since_epoch()).count(); });
    links.set_policy([](const schema::Envelope::Reader&) { return std::string(); });

    auto muni = load_node_keys(net.keys_dir("muni:131016"));
    std::vector<std::vector<uint8_t>> frames;
    std::vector<std::string> ids;
    for (int i = 0; i < 13; ++i) {
        auto [words, id] = hand_built_ping(std::string(4000, 'a' + i));
        capnp::FlatArrayMessageReader reader(words);
        frames.push_back(signed_frame(muni, "muni:131016", reader.getRoot<schema::Envelope>(), false));
        ids.push_back(id);
    }
    const size_t frame = frames[0].size();
    links.set_hold_limits(1000, 5 * frame + frame / 2); // room for five frames of this size
    links.set_inbound_open(false);
    links.start();
    RawLink raw(net, muni, links.endpoint());

    // Frame 0 until it is held: a send before the link is up fails at once (the transport sends
    // only to live connections), so each try either fails or arrives, and one copy arrives. Then
    // the twelve others, in order on the one connection.
    for (int i = 0; i < 100 && links.held().frames == 0; ++i) {
        auto failures = raw.transport->stats().send_failures;
        raw.send(frames[0]);
        for (int k = 0; k < 500 && raw.transport->stats().send_failures == failures && links.held().frames == 0; ++k)
            std::this_thread::sleep_for(10ms);
    }
    ASSERT_EQ(links.held().frames, 1u);
    for (size_t i = 1; i < frames.size(); ++i) raw.send(frames[i]);
    auto arrived = [&] {
        auto h = links.held();
        return h.frames + h.dropped;
    };
    for (int i = 0; i < 1000 && arrived() < frames.size(); ++i) std::this_thread::sleep_for(10ms);
    auto h = links.held();
    EXPECT_EQ(h.frames, 5u) << "five frames fit";
    EXPECT_EQ(h.bytes, 5 * frame);
    EXPECT_EQ(h.dropped, frames.size() - 5);
    {
        std::lock_guard lock(m);
        EXPECT_TRUE(taken.empty()) << "nothing reaches the plugin while the gate is closed";
    }

    // Opened: the held ones are taken in the order they came.
    links.set_inbound_open(true);
    const size_t first_taken = 5;
    for (int i = 0; i < 500; ++i) {
        {
            std::lock_guard lock(m);
            if (taken.size() >= first_taken) break;
        }
        std::this_thread::sleep_for(10ms);
    }
    {
        std::lock_guard lock(m);
        EXPECT_EQ(taken, std::vector<std::string>(ids.begin(), ids.begin() + first_taken));
    }
    EXPECT_EQ(links.held().frames, 0u);

    // The dropped ones come again, as their sender's outbox would send them: now each is taken,
    // and every envelope reached the plugin exactly once.
    for (int round = 0; round < 50; ++round) {
        for (size_t i = first_taken; i < frames.size(); ++i) raw.send(frames[i]);
        if (raw.wait(200ms, [&] { return std::set<std::string>(raw.acked.begin(), raw.acked.end()).size() == ids.size(); }))
            break;
    }
    std::lock_guard lock(m);
    EXPECT_EQ(std::set<std::string>(taken.begin(), taken.end()), std::set<std::string>(ids.begin(), ids.end()));
    EXPECT_EQ(taken.size(), ids.size()) << "none twice";
    raw.transport->stop();
}

TEST(Network, BatchFramesWithABadLeafProofOrSignerAreRefused) {
    ThreeTier t;
    t.net.stop("muni:131016");
    auto keys = load_node_keys(t.net.keys_dir("muni:131016"));
    auto jlis_keys = load_node_keys(t.net.keys_dir("jlis:juki"));
    RawLink raw(t.net, keys);
    auto echo = t.net["pref:13"].router().handler_for("echo.Ping");

    std::vector<std::vector<uint8_t>> bodies;
    std::vector<std::string> ids;
    for (int i = 0; i < 5; ++i) {
        auto [words, id] = hand_built_ping("batch " + std::to_string(i));
        capnp::FlatArrayMessageReader reader(words);
        auto canonical = capnp::canonicalize(reader.getRoot<schema::Envelope>());
        bodies.emplace_back(canonical.asBytes().begin(), canonical.asBytes().end());
        ids.push_back(id);
    }
    auto good = batch_frames(keys, "muni:131016", bodies);
    // Leaf 1: its body altered after signing. Leaf 2: a proof sibling altered. Leaf 3: claims
    // another position. Leaf 4: a whole batch signed with J-LIS's key over the municipality's link.
    auto tampered_body = bodies;
    tampered_body[1][tampered_body[1].size() - 2] ^= 1;
    auto frames_tampered = batch_frames(keys, "muni:131016", bodies);
    // Rewrites one frame's signed envelope after signing.
    auto edit = [](std::vector<uint8_t>& frame, auto change) {
        auto words = kj::heapArray<capnp::word>(frame.size() / 8);
        memcpy(words.begin(), frame.data(), frame.size());
        capnp::FlatArrayMessageReader reader(words.asPtr());
        capnp::MallocMessageBuilder mb;
        mb.setRoot(reader.getRoot<wire::Frame>());
        change(mb.getRoot<wire::Frame>().getEnvelope());
        auto flat = capnp::messageToFlatArray(mb);
        frame.assign(flat.asBytes().begin(), flat.asBytes().end());
    };
    edit(frames_tampered[1], [&](auto env) {
        env.setBody(kj::ArrayPtr<const kj::byte>(tampered_body[1].data(), tampered_body[1].size()));
    });
    edit(frames_tampered[2], [](auto env) { env.getMerkleProof()[0][0] ^= 1; });
    edit(frames_tampered[3], [](auto env) { env.setLeafIndex(0); });
    auto forged = batch_frames(jlis_keys, "muni:131016", bodies);

    // Resent until the link is up and all four have been judged (a send before the CURVE
    // handshake completes is dropped by the raw transport).
    auto& refused = t.net["pref:13"].metrics().counters("(unreadable)", "links").failed;
    for (int i = 0; i < 100 && refused.load() < 4; ++i) {
        raw.send(frames_tampered[1]);
        raw.send(frames_tampered[2]);
        raw.send(frames_tampered[3]);
        raw.send(forged[4]);
        std::this_thread::sleep_for(100ms);
    }
    EXPECT_EQ(echo->status().handled, 0u);
    EXPECT_EQ(raw.size(), 0u);
    EXPECT_GE(refused.load(), 4u);

    // The genuine batch: every leaf is accepted, with one signature check for the batch.
    for (int round = 0; round < 50; ++round) {
        for (auto& f : good) raw.send(f);
        if (raw.wait(200ms, [&] { return std::set<std::string>(raw.acked.begin(), raw.acked.end()).size() == ids.size(); }))
            break;
    }
    {
        std::lock_guard lock(raw.m);
        EXPECT_EQ(std::set<std::string>(raw.acked.begin(), raw.acked.end()), std::set<std::string>(ids.begin(), ids.end()));
    }
    for (int i = 0; i < 100 && echo->status().handled < 5; ++i) std::this_thread::sleep_for(20ms);
    EXPECT_EQ(echo->status().handled, 5u);

    // The tampered frames carry the genuine batch's signature: now that its nodes are remembered,
    // each is still refused, once (the link is up, so each is sent once), and none is acknowledged
    // (a frame taken for a duplicate of its genuine leaf would be).
    const auto before = refused.load();
    const size_t acks_before = raw.size();
    raw.send(frames_tampered[1]);
    raw.send(frames_tampered[2]);
    raw.send(frames_tampered[3]);
    for (int i = 0; i < 250 && refused.load() < before + 3; ++i) std::this_thread::sleep_for(20ms);
    std::this_thread::sleep_for(100ms);
    EXPECT_EQ(refused.load(), before + 3);
    EXPECT_EQ(raw.size(), acks_before);
    EXPECT_EQ(echo->status().handled, 5u);
    raw.transport->stop();

    std::string trail = audit_trail(t.net["pref:13"]);
    EXPECT_NE(trail.find("batch signature does not verify"), std::string::npos);
}

// Before format 1 an outbox kept whole signed frames. A host started on such a file converts it
// once, its dead letters too, keeping the envelope bodies; it signs them again as it sends them
// (here in a Merkle batch) and they are delivered.
TEST(Network, AnOutboxOfSignedFramesFromAnEarlierVersionIsConvertedAndDelivered) {
    ThreeTier t(true);
    t.net.remove("muni:131016");
    auto keys = load_node_keys(t.net.keys_dir("muni:131016"));
    std::vector<std::vector<uint8_t>> bodies;
    std::vector<MessageId> ids;
    for (int i = 0; i < 3; ++i) {
        auto [words, id] = hand_built_ping("kept " + std::to_string(i));
        capnp::FlatArrayMessageReader reader(words);
        auto canonical = capnp::canonicalize(reader.getRoot<schema::Envelope>());
        bodies.emplace_back(canonical.asBytes().begin(), canonical.asBytes().end());
        ids.push_back(EnvelopeView::decode(words.begin(), words.asBytes().size()).id());
    }
    auto frames = batch_frames(keys, "muni:131016", bodies);
    const auto path = t.tmp / "data-muni_131016" / "outbox.db";
    {
        Outbox old(path);
        ASSERT_EQ(old.bytes_format(), 1) << "the municipality's host ran on this file already";
        // As the earlier version left it: two frames queued, one a dead letter.
        old.convert_bytes(0, [](std::span<const uint8_t> b) { return std::vector<uint8_t>(b.begin(), b.end()); });
        old.put("pref:13", ids[0], "echo.Ping", frames[0], 1);
        old.put("pref:13", ids[1], "echo.Ping", frames[1], 1);
        old.add_dead_letters(std::vector<DeadLetter>{{ids[2], "pref:13", "echo.Ping", frames[2], 20, "no acknowledgement", 1, 2}});
    }
    auto echo = t.net["pref:13"].router().handler_for("echo.Ping");
    const auto handled_before = echo->status().handled;
    t.net.start({"muni:131016", false, {}, {{"pref:13", {"*"}}}, {}, true, false});
    for (int i = 0; i < 500 && echo->status().handled < handled_before + 2; ++i) std::this_thread::sleep_for(20ms);
    EXPECT_EQ(echo->status().handled, handled_before + 2);

    DeadLetters letters(path);
    auto dead = letters.get(ids[2]);
    ASSERT_TRUE(dead);
    EXPECT_EQ(dead->bytes, bodies[2]) << "the dead letter keeps the body now";
    EXPECT_EQ(id_of_kept_body(dead->bytes), hex(ids[2]));
    EXPECT_EQ(Outbox(path).bytes_format(), 1);
    std::string trail = audit_trail(t.net["pref:13"]);
    EXPECT_NE(trail.find(hex(ids[0])), std::string::npos);
    EXPECT_NE(trail.find(hex(ids[1])), std::string::npos);
}

// A frame that is not one cannot be converted: the host does not start, names the entry, and
// the file is left as it was. Nor does it start on a file of a newer format.
TEST(Network, AnOutboxEntryThatIsNoFrameOrANewerFormatStopsTheStart) {
    ThreeTier t;
    t.net.remove("muni:131016");
    const auto path = t.tmp / "data-muni_131016" / "outbox.db";
    auto id = new_message_id();
    {
        Outbox old(path);
        old.convert_bytes(0, [](std::span<const uint8_t> b) { return std::vector<uint8_t>(b.begin(), b.end()); });
        old.put("pref:13", id, "echo.Ping", std::vector<uint8_t>{1, 2, 3}, 1);
    }
    try {
        t.net.start({"muni:131016", false, {}, {{"pref:13", {"*"}}}});
        ADD_FAILURE() << "started on an outbox it could not convert";
    } catch (const std::exception& e) {
        std::string what = e.what();
        EXPECT_NE(what.find("outbox entry " + hex(id) + " could not be converted to format 1: frame of 3 bytes is not "
                            "a Cap'n Proto message"),
                  std::string::npos)
            << what;
    }
    {
        Outbox after(path);
        EXPECT_EQ(after.bytes_format(), 0);
        EXPECT_EQ(after.due(10, 10).at(0).bytes, (std::vector<uint8_t>{1, 2, 3}));
        // A file a newer build wrote is not read as this one's.
        after.convert_bytes(2, [](std::span<const uint8_t> b) { return std::vector<uint8_t>(b.begin(), b.end()); });
    }
    try {
        t.net.start({"muni:131016", false, {}, {{"pref:13", {"*"}}}});
        ADD_FAILURE() << "started on an outbox of a newer format";
    } catch (const std::exception& e) {
        EXPECT_NE(std::string(e.what()).find("its entries are in format 2, newer than this build reads (1)"),
                  std::string::npos)
            << e.what();
    }
    EXPECT_EQ(Outbox(path).bytes_format(), 2);
}

TEST(Network, RelaysApplyTheirOwnPolicyAndRefuseWhatTheyMustNotCarry) {
    TempDir tmp;
    Network net(tmp);
    // The prefecture carries municipal traffic to J-LIS and J-LIS's answers back, nothing else:
    // a notice between two municipalities must not transit it (第3 3(3)).
    std::string pref_policy =
        "[[rule]]\nsender = \"kind:muni\"\ntype = \"echo.*\"\npurpose = \"*\"\n"
        "[[rule]]\nsender = \"kind:jlis\"\ntype = \"*\"\npurpose = \"*\"\n";
    net.start({"jlis:juki", true, {echo_plugin()}, {{"pref:13", {"muni:*"}}}});
    net.start({"pref:13", true, {}, {{"jlis:juki", {"jlis:*"}}, {"muni:131016", {"muni:131016"}}, {"muni:132012", {}}},
               pref_policy});
    net.start({"muni:131016", false, {}, {{"pref:13", {"*"}}}});
    net.start({"muni:132012", false, {}, {{"pref:13", {"*"}}}});
    auto far = std::make_shared<Collector>("far", std::vector<std::string>{"juki.MoveInNotice", "juki.IdentityQuery"});
    net["muni:132012"].add_endpoint(far->endpoint());
    Collector client("client", {"echo.Pong", "juki.MoveInNotice.Fault", "juki.IdentityQuery.Fault"});
    net["muni:131016"].add_endpoint(client.endpoint());

    for (auto type : {"juki.MoveInNotice", "juki.IdentityQuery"}) {
        capnp::MallocMessageBuilder mb;
        auto e = mb.initRoot<schema::Envelope>();
        e.setType(type);
        e.setTo("muni:132012");
        e.setPurpose("juki-9");
        net["muni:131016"].submit(client.name(), capnp::messageToFlatArray(mb).asBytes());
    }
    ping(net["muni:131016"], client.name(), "jlis:juki", "allowed through");

    auto got = client.wait_for(3, 20s);
    ASSERT_EQ(got.size(), 3u);
    std::map<std::string, Received> by_type;
    for (auto& g : got) by_type[g.type] = g;
    // A CS-to-CS notice is refused before it leaves: its only route transits a prefecture (第3 3(3)).
    ASSERT_TRUE(by_type.count("juki.MoveInNotice.Fault"));
    EXPECT_EQ(by_type["juki.MoveInNotice.Fault"].fault_code, RENKEI_ERR_DENIED);
    EXPECT_NE(by_type["juki.MoveInNotice.Fault"].fault_message.find("may not pass through pref:13"), std::string::npos)
        << by_type["juki.MoveInNotice.Fault"].fault_message;
    // Anything else the prefecture's policy does not carry is refused by the prefecture.
    ASSERT_TRUE(by_type.count("juki.IdentityQuery.Fault"));
    EXPECT_EQ(by_type["juki.IdentityQuery.Fault"].fault_code, RENKEI_ERR_DENIED);
    EXPECT_NE(by_type["juki.IdentityQuery.Fault"].fault_message.find("pref:13 does not carry this message"),
              std::string::npos) << by_type["juki.IdentityQuery.Fault"].fault_message;
    EXPECT_TRUE(by_type.count("echo.Pong"));
    EXPECT_TRUE(far->all().empty());
    // The prefecture keeps nothing of it: custody was taken and refused; once the answers it
    // carried back are acknowledged its outbox is empty.
    for (int i = 0; i < 100 && net["pref:13"].links_pending(); ++i) std::this_thread::sleep_for(50ms);
    EXPECT_EQ(net["pref:13"].links_pending(), 0u);
    std::string trail = audit_trail(net["pref:13"]);
    EXPECT_NE(trail.find("policy_deny"), std::string::npos);
}
