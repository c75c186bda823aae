// CURVE links between real sockets on 127.0.0.1.
#include "test_support.hpp"

#include <renkei/frame_bundle.hpp>
#include <renkei/transport.hpp>

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <thread>

using namespace renkei;
using namespace std::chrono_literals;

namespace {

struct Keys {
    std::string pub, sec;
    Keys() {
        char p[41], s[41];
        zmq_curve_keypair(p, s);
        pub = p;
        sec = s;
    }
};

// Collects frames received by a transport.
struct Inbox {
    std::mutex m;
    std::condition_variable cv;
    std::vector<std::pair<std::string, std::string>> got; // (peer, payload)
    void attach(Transport& t) {
        t.on_receive([this](const std::string& peer, const uint8_t* f, size_t size) {
            std::lock_guard lock(m);
            got.emplace_back(peer, std::string(reinterpret_cast<const char*>(f), size));
            cv.notify_all();
        });
    }
    bool wait(size_t n, std::chrono::milliseconds timeout = 10s) {
        std::unique_lock lock(m);
        return cv.wait_for(lock, timeout, [&] { return got.size() >= n; });
    }
};

std::vector<uint8_t> bytes(const std::string& s) { return {s.begin(), s.end()}; }

// A new link accepts frames only once its CURVE handshake is done (ZMQ_IMMEDIATE); until then
// send() reports a failure and the durable outbox above retries. Tests retry the same way.
bool send_until_received(Transport& from, const std::string& to, const std::string& payload, Inbox& inbox) {
    for (int i = 0; i < 200; ++i) {
        size_t before;
        {
            std::lock_guard lock(inbox.m);
            before = inbox.got.size();
            for (auto& g : inbox.got)
                if (g.second == payload) return true;
        }
        from.send(to, bytes(payload));
        inbox.wait(before + 1, 50ms);
    }
    return false;
}

TransportOptions opts(const std::string& node, const Keys& k, bool listen) {
    TransportOptions o;
    o.node_id = node;
    o.curve_public = k.pub;
    o.curve_secret = k.sec;
    if (listen) o.listen = "tcp://127.0.0.1:0";
    o.heartbeat_ms = 200;
    return o;
}

} // namespace

TEST(Transport, TwoNodesExchangeBothWaysWithAuthenticatedIds) {
    Keys pk, mk;
    Transport pref(opts("pref:13", pk, true), {{"muni:131016", mk.pub}});
    Inbox pin;
    pin.attach(pref);
    pref.start();
    Transport muni(opts("muni:131016", mk, false), {});
    Inbox min;
    min.attach(muni);
    muni.add_peer("pref:13", {pref.endpoint()}, pk.pub);
    muni.start();

    ASSERT_TRUE(send_until_received(muni, "pref:13", "update 1", pin));
    EXPECT_EQ(pin.got[0].first, "muni:131016"); // stamped by ZAP, not claimed by the client
    EXPECT_EQ(pin.got[0].second, "update 1");
    pref.send("muni:131016", bytes("ack 1")); // back through the ROUTER
    ASSERT_TRUE(min.wait(1));
    EXPECT_EQ(min.got[0].first, "pref:13");
    EXPECT_EQ(min.got[0].second, "ack 1");
    EXPECT_EQ(pref.stats().auth_failures, 0u);
}

TEST(Transport, AListenerCanSendFirstOverALinkItsPeerDialled) {
    Keys jk, pk;
    Transport jlis(opts("jlis:juki", jk, true), {{"pref:13", pk.pub}});
    Inbox jin;
    jin.attach(jlis);
    jlis.start();
    Transport pref(opts("pref:13", pk, false), {});
    Inbox pin;
    pin.attach(pref);
    pref.add_peer("jlis:juki", {jlis.endpoint()}, jk.pub);
    pref.start();

    // The prefecture never sends anything itself; its link's hello is enough for J-LIS to reach it.
    ASSERT_TRUE(send_until_received(jlis, "pref:13", "report 1", pin));
    EXPECT_EQ(pin.got[0].first, "jlis:juki");
    // Hellos are not frames for the node above the transport.
    std::this_thread::sleep_for(1500ms);
    std::lock_guard lock(jin.m);
    EXPECT_TRUE(jin.got.empty());
}

TEST(Transport, UnknownKeyCannotDeliver) {
    Keys pk, mk, stranger;
    Transport pref(opts("pref:13", pk, true), {{"muni:131016", mk.pub}});
    Inbox pin;
    pin.attach(pref);
    pref.start();
    Transport intruder(opts("muni:131016", stranger, false), {}); // claims the name, lacks the key
    intruder.add_peer("pref:13", {pref.endpoint()}, pk.pub);
    intruder.start();
    for (int i = 0; i < 20 && pref.stats().auth_failures == 0; ++i) {
        intruder.send("pref:13", bytes("forged"));
        std::this_thread::sleep_for(50ms);
    }
    EXPECT_FALSE(pin.wait(1, 300ms));
    EXPECT_GE(pref.stats().auth_failures, 1u);
}

TEST(Transport, StartRefusesWithoutZapHandler) {
    Keys pk;
    auto o = opts("pref:13", pk, true);
    o.skip_zap_for_test = true;
    Transport t(o, {});
    try {
        t.start();
        FAIL() << "start must refuse";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("self-test failed"), std::string::npos) << e.what();
    }
}

TEST(Transport, OversizeFrameDropsThatPeerOthersKeepWorking) {
    Keys pk, ak, bk;
    auto o = opts("pref:13", pk, true);
    o.max_message_bytes = 1024;
    Transport pref(o, {{"muni:131016", ak.pub}, {"muni:011002", bk.pub}});
    Inbox pin;
    pin.attach(pref);
    pref.start();
    Transport a(opts("muni:131016", ak, false), {});
    a.add_peer("pref:13", {pref.endpoint()}, pk.pub);
    a.start();
    Transport b(opts("muni:011002", bk, false), {});
    b.add_peer("pref:13", {pref.endpoint()}, pk.pub);
    b.start();
    for (int i = 0; i < 20; ++i) {
        a.send("pref:13", std::vector<uint8_t>(4096, 'x'));
        std::this_thread::sleep_for(10ms);
    }
    ASSERT_TRUE(send_until_received(b, "pref:13", "small", pin));
    std::this_thread::sleep_for(200ms);
    for (auto& [peer, payload] : pin.got) EXPECT_LE(payload.size(), 1024u);
    EXPECT_EQ(pin.got[0].first, "muni:011002");
}

TEST(Transport, FailsOverFromDeadPrimaryToSpare) {
    Keys pk, mk;
    int dead_port = test::free_port();
    Transport spare(opts("pref:13", pk, true), {{"muni:131016", mk.pub}});
    Inbox sin;
    sin.attach(spare);
    spare.start();
    Transport muni(opts("muni:131016", mk, false), {});
    std::atomic<int> failures{0};
    muni.on_send_failure([&](const std::string&, const std::string&, std::vector<uint8_t>&) { ++failures; });
    muni.add_peer("pref:13", {"tcp://127.0.0.1:" + std::to_string(dead_port), spare.endpoint()}, pk.pub);
    muni.start();
    // Until the spare's handshake completes a send may be refused (reported, never silently lost).
    for (int i = 0; i < 100 && sin.got.empty(); ++i) {
        muni.send("pref:13", bytes("via spare"));
        sin.wait(1, 50ms);
    }
    ASSERT_FALSE(sin.got.empty());
    EXPECT_EQ(sin.got[0].second, "via spare");
}

TEST(Transport, RotationRefusesRemovedKeyOnNewConnections) {
    Keys pk, mk;
    Transport pref(opts("pref:13", pk, true), {{"muni:131016", mk.pub}});
    Inbox pin;
    pin.attach(pref);
    pref.start();
    pref.set_trust({}); // revoked before it connects
    Transport muni(opts("muni:131016", mk, false), {});
    muni.add_peer("pref:13", {pref.endpoint()}, pk.pub);
    muni.start();
    for (int i = 0; i < 20 && pref.stats().auth_failures == 0; ++i) {
        muni.send("pref:13", bytes("x"));
        std::this_thread::sleep_for(50ms);
    }
    EXPECT_FALSE(pin.wait(1, 300ms));
    EXPECT_GE(pref.stats().auth_failures, 1u);
}

namespace {

// A prefecture listening and a municipality dialling it, both sending bundles of up to
// `bundle_bytes`; `pin` collects what the prefecture receives.
struct DialledLink {
    Keys pk, mk;
    Inbox pin;
    std::unique_ptr<Transport> pref, muni;
    explicit DialledLink(size_t bundle_bytes) {
        auto po = opts("pref:13", pk, true), mo = opts("muni:131016", mk, false);
        po.bundle_bytes = mo.bundle_bytes = bundle_bytes;
        pref = std::make_unique<Transport>(po, std::map<std::string, std::string>{{"muni:131016", mk.pub}});
        pin.attach(*pref);
        pref->start();
        muni = std::make_unique<Transport>(mo, std::map<std::string, std::string>{});
        muni->add_peer("pref:13", {pref->endpoint()}, pk.pub);
        muni->start();
    }
};

} // namespace

TEST(Transport, FramesQueuedTogetherGoAsBundlesAndArriveInOrder) {
    for (size_t bundle_bytes : {size_t{128 << 10}, size_t{0}}) {
        SCOPED_TRACE("bundle_bytes " + std::to_string(bundle_bytes));
        DialledLink link(bundle_bytes);
        auto &pref = *link.pref, &muni = *link.muni;
        auto& pin = link.pin;
        ASSERT_TRUE(send_until_received(muni, "pref:13", "first", pin));
        const size_t before = pin.got.size();
        // Sizes 1 to 700 bytes, so every padding occurs; more than one bundle's worth.
        std::vector<std::string> sent;
        for (size_t i = 0; i < 2000; ++i) {
            sent.push_back(std::string(1 + (i * 37) % 700, static_cast<char>('a' + i % 26)) + std::to_string(i));
            muni.send("pref:13", bytes(sent.back()));
        }
        ASSERT_TRUE(pin.wait(before + sent.size()));
        std::lock_guard lock(pin.m);
        ASSERT_EQ(pin.got.size(), before + sent.size());
        for (size_t i = 0; i < sent.size(); ++i) {
            EXPECT_EQ(pin.got[before + i].first, "muni:131016");
            ASSERT_EQ(pin.got[before + i].second, sent[i]) << "frame " << i;
        }
        if (bundle_bytes) EXPECT_GT(muni.stats().bundles_out, 0u);
        else EXPECT_EQ(muni.stats().bundles_out, 0u);
        EXPECT_EQ(pref.stats().frames_in, before + sent.size());
        EXPECT_EQ(pref.stats().bad_bundles, 0u);
    }
}

TEST(Transport, AMalformedBundleIsDroppedWholeAndTheLinkGoesOn) {
    DialledLink link(0); // each frame alone, so the bytes below reach the receiver as they are
    auto &pref = *link.pref, &muni = *link.muni;
    auto& pin = link.pin;
    ASSERT_TRUE(send_until_received(muni, "pref:13", "first", pin));
    // A well-formed bundle of two frames, then its count raised to three.
    std::vector<uint8_t> a = bytes("alpha"), b = bytes("beta"), bundle;
    frame_bundle::encode({&a, &b}, bundle);
    bundle[8] = 3;
    muni.send("pref:13", bundle);
    ASSERT_TRUE(send_until_received(muni, "pref:13", "after", pin));
    std::lock_guard lock(pin.m);
    for (auto& [peer, frame] : pin.got) {
        EXPECT_NE(frame, "alpha");
        EXPECT_NE(frame, "beta");
    }
    EXPECT_EQ(pref.stats().bad_bundles, 1u);
}

TEST(FrameBundle, RoundTripsFramesOfEveryPaddingAt8ByteOffsets) {
    std::vector<std::vector<uint8_t>> frames;
    for (size_t n = 1; n <= 17; ++n) frames.push_back(std::vector<uint8_t>(n, static_cast<uint8_t>(n)));
    std::vector<const std::vector<uint8_t>*> refs;
    for (auto& f : frames) refs.push_back(&f);
    std::vector<uint8_t> bundle{9, 9, 9}; // encode appends
    frame_bundle::encode(refs, bundle);
    bundle.erase(bundle.begin(), bundle.begin() + 3);
    ASSERT_TRUE(frame_bundle::is_bundle(bundle.data(), bundle.size()));
    std::vector<std::vector<uint8_t>> got;
    auto why = frame_bundle::decode(bundle.data(), bundle.size(), [&](const uint8_t* f, size_t n) {
        EXPECT_EQ((f - bundle.data()) % 8, 0);
        got.emplace_back(f, f + n);
    });
    EXPECT_EQ(why, "");
    EXPECT_EQ(got, frames);
}

// The transport writes bundles into ZeroMQ's uninitialised message memory: the reserved bytes and
// the padding must be written as zeros, not left as they were.
TEST(FrameBundle, EncodingIntoUsedMemoryWritesTheSameBytesAsAppending) {
    std::vector<std::vector<uint8_t>> frames;
    for (size_t n = 1; n <= 17; ++n) frames.push_back(std::vector<uint8_t>(n, static_cast<uint8_t>(n)));
    std::vector<const std::vector<uint8_t>*> refs;
    for (auto& f : frames) refs.push_back(&f);
    std::vector<uint8_t> appended;
    frame_bundle::encode(refs, appended);
    ASSERT_EQ(frame_bundle::encoded_size(refs), appended.size());
    std::vector<uint8_t> used(appended.size() + 8, 0xAA);
    frame_bundle::encode_into(refs, used.data());
    EXPECT_EQ(std::vector<uint8_t>(used.begin(), used.begin() + appended.size()), appended);
    EXPECT_EQ(used.back(), 0xAA); // nothing written past the bundle
    EXPECT_EQ(frame_bundle::decode(used.data(), appended.size(), [](const uint8_t*, size_t) {}), "");
}

TEST(FrameBundle, MalformedBundlesAreRefusedNamingTheFrameAndTheRule) {
    std::vector<uint8_t> a = bytes("alpha"), b = bytes("beta"), good;
    frame_bundle::encode({&a, &b}, good); // 16 + (8 + 8) + (8 + 8) bytes
    ASSERT_EQ(good.size(), 48u);
    auto refused = [&](std::vector<uint8_t> bundle) {
        size_t calls = 0;
        auto why = frame_bundle::decode(bundle.data(), bundle.size(), [&](const uint8_t*, size_t) { ++calls; });
        EXPECT_EQ(calls, 0u) << why; // nothing of a malformed bundle is handed on
        return why;
    };
    auto edit = [&](size_t at, uint8_t value) {
        auto c = good;
        c[at] = value;
        return c;
    };
    EXPECT_EQ(refused(std::vector<uint8_t>(good.begin(), good.begin() + 12)), "header: 12 bytes, shorter than the 16 of a header");
    EXPECT_EQ(refused(edit(8, 1)), "count: 1, a bundle carries at least 2 frames");
    EXPECT_EQ(refused(edit(8, 0)), "count: 0, a bundle carries at least 2 frames");
    EXPECT_EQ(refused(edit(11, 0x7f)), "count: 2130706434 frames cannot fit in 48 bytes");
    EXPECT_EQ(refused(edit(13, 1)), "header: the reserved bytes are not zero");
    EXPECT_EQ(refused(edit(16, 0)), "frame 1 of 2: length 0, a frame is never empty");
    // "alpha" read as 9 bytes takes frame 2's length as its padding; frame 2 then starts at "beta".
    EXPECT_EQ(refused(edit(16, 9)), "frame 2 of 2: length 1635018082 runs past the end");
    EXPECT_EQ(refused(edit(16, 200)), "frame 1 of 2: length 200 runs past the end");
    EXPECT_EQ(refused(edit(21, 1)), "frame 1 of 2: the reserved bytes are not zero");
    EXPECT_EQ(refused(edit(30, 1)), "frame 1 of 2: the padding is not zero");
    EXPECT_EQ(refused(edit(32, 9)), "frame 2 of 2: length 9 runs past the end");
    EXPECT_EQ(refused(std::vector<uint8_t>(good.begin(), good.end() - 8)), "count: 2 frames cannot fit in 40 bytes");
    auto longer = good;
    longer.resize(56);
    EXPECT_EQ(refused(longer), "8 bytes after the last frame");
    EXPECT_EQ(refused(bytes("not a bundle at all")), "header: not a bundle");
}
