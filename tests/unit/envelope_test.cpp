// Envelope bytes in and out: decoding good, misaligned and hostile input, and stamping what a
// plugin sends.
#include <renkei/envelope.hpp>
#include <renkei/plugin.h>

#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

using namespace renkei;

namespace {

std::vector<uint8_t> to_vector(kj::ArrayPtr<const kj::byte> b) { return {b.begin(), b.end()}; }

struct Spec {
    std::string type = "juki.IdentityUpdate";
    std::string from = "muni:131016";
    std::string to = "pref:13";
    std::string payload = "payload bytes";
    size_t id_size = 16;
    size_t correlation_size = 0;
    uint8_t hops = 0;
    int64_t sent = 1700000000000;
    bool fault = false;
    std::vector<std::string> conditions;
};

std::vector<uint8_t> build(const Spec& s, std::vector<uint8_t>* id_out = nullptr) {
    capnp::MallocMessageBuilder mb(1u << 14); // one segment, so tests can patch words by position
    auto e = mb.initRoot<schema::Envelope>();
    std::vector<uint8_t> id(s.id_size);
    for (size_t i = 0; i < id.size(); ++i) id[i] = static_cast<uint8_t>(i * 7 + 1);
    if (!id.empty()) e.setId(kj::ArrayPtr<const kj::byte>(id.data(), id.size()));
    if (s.correlation_size > 0) {
        std::vector<uint8_t> c(s.correlation_size, 0xcc);
        e.setCorrelationId(kj::ArrayPtr<const kj::byte>(c.data(), c.size()));
    }
    e.setType(s.type);
    e.setFrom(s.from);
    e.setTo(s.to);
    e.setPurpose("juki-30-6");
    e.setOperatorId("operator-7");
    e.setSentAtUnixMs(s.sent);
    e.setHopCount(s.hops);
    e.setPayload(bytes_of(s.payload));
    if (s.fault) {
        auto f = e.initFault();
        f.setCode(RENKEI_ERR_INVALID);
        f.setField("person.name");
        f.setRule("name.empty");
        f.setMessage("refused");
    }
    if (!s.conditions.empty()) {
        auto c = e.initConditions(static_cast<unsigned>(s.conditions.size()));
        for (unsigned i = 0; i < s.conditions.size(); ++i) c.set(i, s.conditions[i]);
    }
    if (id_out != nullptr) *id_out = id;
    return to_vector(capnp::messageToFlatArray(mb).asBytes());
}

// 8-byte aligned storage for `bytes`, at `offset` bytes past an aligned start.
struct Buffer {
    Buffer(const std::vector<uint8_t>& bytes, size_t offset) : words(bytes.size() / 8 + 2), offset(offset) {
        std::memcpy(data(), bytes.data(), bytes.size());
        size = bytes.size();
    }
    uint8_t* data() { return reinterpret_cast<uint8_t*>(words.data()) + offset; }
    std::vector<uint64_t> words;
    size_t offset;
    size_t size;
};

// Decodes and returns the EnvelopeError it must raise.
EnvelopeError refusal(const void* data, size_t size, size_t max_bytes = 16u << 20) {
    try {
        (void)EnvelopeView::decode(data, size, max_bytes);
    } catch (const EnvelopeError& e) {
        return e;
    }
    ADD_FAILURE() << "decode accepted " << size << " bytes";
    return EnvelopeError("", "");
}
EnvelopeError refusal(const std::vector<uint8_t>& bytes, size_t max_bytes = 16u << 20) {
    Buffer b(bytes, 0);
    return refusal(b.data(), b.size, max_bytes);
}

EnvelopeError stamp_refusal(const std::vector<uint8_t>& bytes, size_t max_bytes = 1u << 20) {
    try {
        (void)stamp_outgoing(kj::ArrayPtr<const kj::byte>(bytes.data(), bytes.size()), "muni:131016", 1, max_bytes);
    } catch (const EnvelopeError& e) {
        return e;
    }
    ADD_FAILURE() << "stamp_outgoing accepted " << bytes.size() << " bytes";
    return EnvelopeError("", "");
}

uint64_t word_at(const std::vector<uint8_t>& b, size_t index) {
    uint64_t w;
    std::memcpy(&w, b.data() + index * 8, 8);
    return w;
}
void set_word(std::vector<uint8_t>& b, size_t index, uint64_t w) { std::memcpy(b.data() + index * 8, &w, 8); }

} // namespace

TEST(Envelope, DecodesGoodBytesInPlace) {
    Spec s;
    s.correlation_size = 16;
    s.hops = 3;
    s.fault = true;
    s.conditions = {"myNumber", "name"};
    std::vector<uint8_t> id;
    Buffer b(build(s, &id), 0);
    auto v = EnvelopeView::decode(b.data(), b.size);
    auto e = v.get();
    EXPECT_EQ(std::string(e.getType()), s.type);
    EXPECT_EQ(std::string(e.getFrom()), s.from);
    EXPECT_EQ(std::string(e.getTo()), s.to);
    EXPECT_EQ(std::string(e.getPurpose()), "juki-30-6");
    EXPECT_EQ(std::string(e.getOperatorId()), "operator-7");
    EXPECT_EQ(e.getSentAtUnixMs(), s.sent);
    EXPECT_EQ(e.getHopCount(), 3);
    EXPECT_EQ(e.getCorrelationId().size(), 16u);
    auto p = e.getPayload();
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(p.begin()), p.size()), s.payload);
    ASSERT_TRUE(e.hasFault());
    EXPECT_EQ(std::string(e.getFault().getRule()), "name.empty");
    ASSERT_EQ(e.getConditions().size(), 2u);
    EXPECT_EQ(std::string(e.getConditions()[1]), "name");

    MessageId want{};
    std::memcpy(want.data(), id.data(), 16);
    EXPECT_EQ(v.id(), want);
    EXPECT_EQ(hex(v.id()), hex(kj::ArrayPtr<const kj::byte>(id.data(), id.size())));
    // Aligned input is borrowed, not copied.
    EXPECT_EQ(v.bytes().begin(), b.data());
    EXPECT_EQ(v.bytes().size(), b.size);
}

TEST(Envelope, DecodesAMultiSegmentMessage) {
    // Small fixed-size segments force the builder to spread the envelope over several segments.
    capnp::MallocMessageBuilder mb(8, capnp::AllocationStrategy::FIXED_SIZE);
    auto e = mb.initRoot<schema::Envelope>();
    auto id = new_message_id();
    e.setId(kj::ArrayPtr<const kj::byte>(id.data(), id.size()));
    e.setType("card.Issue");
    e.setTo("vendor:print");
    e.setPayload(bytes_of(std::string(1000, 'x')));
    ASSERT_GT(mb.getSegmentsForOutput().size(), 1u);
    auto flat = capnp::messageToFlatArray(mb);
    auto v = EnvelopeView::decode(flat.begin(), flat.asBytes().size());
    EXPECT_EQ(std::string(v.get().getType()), "card.Issue");
    EXPECT_EQ(v.get().getPayload().size(), 1000u);
    EXPECT_EQ(v.id(), id);
}

TEST(Envelope, MisalignedInputIsCopiedToAlignedWords) {
    auto bytes = build(Spec{});
    for (size_t offset : {1u, 3u, 4u, 7u}) {
        Buffer b(bytes, offset);
        ASSERT_NE(reinterpret_cast<uintptr_t>(b.data()) % 8, 0u);
        auto v = EnvelopeView::decode(b.data(), b.size);
        EXPECT_NE(v.bytes().begin(), b.data()) << offset;
        EXPECT_EQ(reinterpret_cast<uintptr_t>(v.bytes().begin()) % alignof(capnp::word), 0u);
        EXPECT_EQ(to_vector(v.bytes()), bytes);
        // The view owns its copy: the source buffer may go away.
        std::memset(b.data(), 0xff, b.size);
        EXPECT_EQ(std::string(v.get().getType()), "juki.IdentityUpdate");
        EXPECT_EQ(std::string(v.get().getTo()), "pref:13");
    }
}

TEST(Envelope, MovedViewStaysValid) {
    auto bytes = build(Spec{});
    Buffer b(bytes, 5); // owned copy
    std::vector<EnvelopeView> views;
    views.push_back(EnvelopeView::decode(b.data(), b.size));
    for (int i = 0; i < 20; ++i) views.push_back(EnvelopeView::decode(bytes.data(), bytes.size())); // reallocates
    EXPECT_EQ(std::string(views[0].get().getType()), "juki.IdentityUpdate");
    EXPECT_EQ(std::string(views[0].get().getFrom()), "muni:131016");
}

TEST(Envelope, FrameSizeRules) {
    auto bytes = build(Spec{});
    Buffer b(bytes, 0);

    auto empty = refusal(b.data(), 0);
    EXPECT_EQ(empty.field(), "frame");
    EXPECT_EQ(empty.rule(), "empty");
    EXPECT_STREQ(empty.what(), "envelope field 'frame': empty");

    auto big = refusal(b.data(), b.size, b.size - 8);
    EXPECT_EQ(big.field(), "frame");
    EXPECT_EQ(big.rule(), "size " + std::to_string(b.size) + " exceeds the limit of " +
                              std::to_string(b.size - 8) + " bytes");
    EXPECT_NO_THROW(EnvelopeView::decode(b.data(), b.size, b.size)); // the limit itself is fine

    auto odd = refusal(b.data(), b.size - 3);
    EXPECT_EQ(odd.field(), "frame");
    EXPECT_NE(odd.rule().find("is not a multiple of 8"), std::string::npos) << odd.rule();
}

TEST(Envelope, TruncatedInputIsRefusedAtEveryLength) {
    auto bytes = build(Spec{});
    for (size_t n = 8; n < bytes.size(); n += 8) {
        std::vector<uint8_t> cut(bytes.begin(), bytes.begin() + static_cast<ptrdiff_t>(n));
        auto e = refusal(cut);
        EXPECT_EQ(e.field(), "frame") << n;
        EXPECT_EQ(e.rule().rfind("malformed Cap'n Proto message: ", 0), 0u) << n << ": " << e.rule();
    }
    auto last = refusal(std::vector<uint8_t>(bytes.begin(), bytes.end() - 8));
    EXPECT_NE(last.rule().find("ends prematurely"), std::string::npos) << last.rule();
}

TEST(Envelope, GarbageIsRefusedWithEnvelopeError) {
    auto ff = refusal(std::vector<uint8_t>(64, 0xff));
    EXPECT_EQ(ff.field(), "frame");
    EXPECT_NE(std::string(ff.what()).find("envelope field 'frame': malformed Cap'n Proto message"), std::string::npos)
        << ff.what();

    // Deterministic noise of many sizes: every buffer is refused, only ever with EnvelopeError.
    std::mt19937 rng(20240601);
    for (int i = 0; i < 3000; ++i) {
        std::vector<uint8_t> noise(8 * (1 + rng() % 64));
        for (auto& byte : noise) byte = static_cast<uint8_t>(rng());
        if (i % 2 == 0) set_word(noise, 0, uint64_t(noise.size() / 8 - 1) << 32); // a plausible table: reach the pointers
        Buffer b(noise, i % 8);
        try {
            (void)EnvelopeView::decode(b.data(), b.size);
            ADD_FAILURE() << "noise #" << i << " decoded";
        } catch (const EnvelopeError& e) {
            EXPECT_EQ(std::string(e.what()).rfind("envelope field '", 0), 0u) << e.what();
        }
    }
}

TEST(Envelope, NullRootIsAnEmptyEnvelopeAndRefused) {
    // One segment of one word holding a null root pointer: all fields default.
    std::vector<uint8_t> bytes(16, 0);
    bytes[4] = 1;
    auto e = refusal(bytes);
    EXPECT_EQ(e.field(), "id");
    EXPECT_EQ(e.rule(), "must be 16 bytes");
}

TEST(Envelope, RequiredFields) {
    Spec short_id;
    short_id.id_size = 8;
    EXPECT_EQ(refusal(build(short_id)).field(), "id");
    Spec no_id;
    no_id.id_size = 0;
    EXPECT_EQ(refusal(build(no_id)).field(), "id");
    Spec no_type;
    no_type.type = "";
    auto t = refusal(build(no_type));
    EXPECT_EQ(t.field(), "type");
    EXPECT_STREQ(t.what(), "envelope field 'type': must not be empty");
    Spec no_to;
    no_to.to = "";
    auto to = refusal(build(no_to));
    EXPECT_EQ(to.field(), "to");
    EXPECT_EQ(to.rule(), "must name a node");
    Spec bad_corr;
    bad_corr.correlation_size = 5;
    auto c = refusal(build(bad_corr));
    EXPECT_EQ(c.field(), "correlationId");
    EXPECT_EQ(c.rule(), "must be empty or 16 bytes");
    Spec no_from; // a sender is not required here (faults go nowhere then)
    no_from.from = "";
    auto anonymous = build(no_from);
    EXPECT_NO_THROW(EnvelopeView::decode(anonymous.data(), anonymous.size()));
}

TEST(Envelope, HugeSegmentCountsAndSizesAreRefused) {
    auto good = build(Spec{});
    ASSERT_EQ(word_at(good, 0) & 0xffffffffu, 0u); // one segment

    for (uint32_t count_minus_one : {1u, 511u, 100000u, 0x7fffffffu, 0xfffffffeu}) {
        auto bytes = good;
        set_word(bytes, 0, (word_at(bytes, 0) & 0xffffffff00000000ull) | count_minus_one);
        auto e = refusal(bytes);
        EXPECT_EQ(e.field(), "frame") << count_minus_one;
        EXPECT_EQ(e.rule().rfind("malformed Cap'n Proto message: ", 0), 0u) << e.rule();
    }
    for (uint32_t seg_words : {0xffffffffu, 0x20000000u, uint32_t(good.size() / 8)}) {
        auto bytes = good;
        set_word(bytes, 0, (uint64_t(seg_words) << 32));
        auto e = refusal(bytes);
        EXPECT_EQ(e.field(), "frame") << seg_words;
        EXPECT_NE(e.rule().find("ends prematurely"), std::string::npos) << e.rule();
    }
}

TEST(Envelope, HugeListPointerIsRefused) {
    // Point `payload` at a byte list of 2^29-1 elements: far beyond the frame.
    auto bytes = build(Spec{});
    ASSERT_EQ(word_at(bytes, 0) & 0xffffffffu, 0u); // one segment
    // Word 1 is the root struct pointer; payload is pointer 7 of the struct.
    uint64_t root = word_at(bytes, 1);
    ASSERT_EQ(root & 3, 0u);
    size_t start = 2 + static_cast<size_t>(static_cast<int32_t>(root & 0xffffffffu) >> 2);
    size_t data_words = (root >> 32) & 0xffff;
    size_t payload_ptr = start + data_words + 7;
    uint64_t p = word_at(bytes, payload_ptr);
    ASSERT_EQ(p & 3, 1u); // a list pointer
    set_word(bytes, payload_ptr, (p & 0xffffffffull) | (uint64_t(0x1fffffff) << 35) | (uint64_t(2) << 32));
    auto e = refusal(bytes);
    EXPECT_EQ(e.field(), "frame");
    EXPECT_EQ(e.rule().rfind("malformed Cap'n Proto message: ", 0), 0u) << e.rule();
}

TEST(Envelope, ReaderLimitsFollowTheFrameSize) {
    auto o = reader_options_for(8000);
    EXPECT_EQ(o.traversalLimitInWords, 1000u * 4 + 1024);
    EXPECT_EQ(o.nestingLimit, 32);
    EXPECT_EQ(reader_options_for(0).traversalLimitInWords, 1024u);
}

TEST(Envelope, AmplificationBeyondTheTraversalLimitIsRefused) {
    // 200 condition strings that all point at the same 8000-byte text: a small frame that would
    // make a reader walk 200 times its size.
    Spec s;
    s.conditions.assign(200, "c");
    s.conditions[0] = std::string(8000, 'a');
    auto bytes = build(s);
    ASSERT_NO_THROW(EnvelopeView::decode(bytes.data(), bytes.size())) << "the honest version decodes";

    ASSERT_EQ(word_at(bytes, 0) & 0xffffffffu, 0u); // one segment
    uint64_t root = word_at(bytes, 1);
    size_t start = 2 + static_cast<size_t>(static_cast<int32_t>(root & 0xffffffffu) >> 2);
    size_t data_words = (root >> 32) & 0xffff;
    size_t cond_ptr = start + data_words + 10 - 1; // conditions is pointer 9
    uint64_t lp = word_at(bytes, cond_ptr);
    ASSERT_EQ(lp & 3, 1u);
    size_t list = cond_ptr + 1 + static_cast<size_t>(static_cast<int32_t>(lp & 0xffffffffu) >> 2);
    uint64_t first = word_at(bytes, list);
    size_t big = list + 1 + static_cast<size_t>(static_cast<int32_t>(first & 0xffffffffu) >> 2);
    for (size_t i = 1; i < 200; ++i) {
        size_t at = list + i;
        int64_t off = static_cast<int64_t>(big) - static_cast<int64_t>(at + 1);
        uint64_t w = (first & 0xffffffff00000000ull) | ((static_cast<uint64_t>(off) << 2) & 0xffffffffull) | 1;
        set_word(bytes, at, w);
    }
    auto e = refusal(bytes);
    EXPECT_EQ(e.field(), "frame");
    EXPECT_NE(e.rule().find("traversal limit"), std::string::npos) << e.rule();
}

TEST(Envelope, StampFillsIdFromSentAtAndHops) {
    Spec s;
    s.id_size = 0;     // the host assigns one
    s.from = "jlis:juki"; // a plugin cannot speak for another node
    s.hops = 5;
    s.correlation_size = 16;
    s.fault = true;
    s.conditions = {"name"};
    auto in = build(s);
    auto a = stamp_outgoing(kj::ArrayPtr<const kj::byte>(in.data(), in.size()), "muni:131016", 1234, 1u << 20);
    auto b = stamp_outgoing(kj::ArrayPtr<const kj::byte>(in.data(), in.size()), "muni:131016", 1234, 1u << 20);
    auto va = EnvelopeView::decode(a.begin(), a.asBytes().size());
    auto vb = EnvelopeView::decode(b.begin(), b.asBytes().size());
    auto e = va.get();
    EXPECT_EQ(e.getId().size(), 16u);
    EXPECT_NE(va.id(), vb.id()); // fresh random ids
    EXPECT_NE(va.id(), MessageId{});
    EXPECT_EQ(std::string(e.getFrom()), "muni:131016");
    EXPECT_EQ(e.getSentAtUnixMs(), 1234);
    EXPECT_EQ(e.getHopCount(), 0);
    // Everything else is carried over unchanged.
    EXPECT_EQ(std::string(e.getType()), s.type);
    EXPECT_EQ(std::string(e.getTo()), s.to);
    EXPECT_EQ(std::string(e.getPurpose()), "juki-30-6");
    EXPECT_EQ(std::string(e.getOperatorId()), "operator-7");
    EXPECT_EQ(e.getCorrelationId().size(), 16u);
    auto p = e.getPayload();
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(p.begin()), p.size()), s.payload);
    EXPECT_EQ(std::string(e.getFault().getMessage()), "refused");
    ASSERT_EQ(e.getConditions().size(), 1u);
}

TEST(Envelope, StampKeepsAnIdThePluginChoseAndAcceptsMisalignedBytes) {
    std::vector<uint8_t> id;
    auto in = build(Spec{}, &id);
    Buffer b(in, 3);
    auto out = stamp_outgoing(kj::ArrayPtr<const kj::byte>(b.data(), b.size), "pref:13", 99, 1u << 20);
    auto v = EnvelopeView::decode(out.begin(), out.asBytes().size());
    EXPECT_EQ(to_vector(v.get().getId()), id);
    EXPECT_EQ(std::string(v.get().getFrom()), "pref:13");
    EXPECT_EQ(v.get().getSentAtUnixMs(), 99);
}

TEST(Envelope, StampRefusesBadInput) {
    auto good = build(Spec{});
    auto big = stamp_refusal(good, good.size() - 8);
    EXPECT_EQ(big.field(), "frame");
    EXPECT_NE(big.rule().find("exceeds the limit"), std::string::npos);
    EXPECT_EQ(stamp_refusal({}).field(), "frame");
    EXPECT_EQ(stamp_refusal(std::vector<uint8_t>(good.begin(), good.begin() + 12)).field(), "frame");
    auto trunc = stamp_refusal(std::vector<uint8_t>(good.begin(), good.end() - 8));
    EXPECT_EQ(trunc.field(), "frame");
    EXPECT_NE(trunc.rule().find("malformed Cap'n Proto message"), std::string::npos) << trunc.rule();
    EXPECT_EQ(stamp_refusal(std::vector<uint8_t>(64, 0xff)).field(), "frame");

    Spec bad_id;
    bad_id.id_size = 5;
    auto id = stamp_refusal(build(bad_id));
    EXPECT_EQ(id.field(), "id");
    EXPECT_EQ(id.rule(), "must be empty (the host assigns one) or 16 bytes");
    Spec no_type;
    no_type.type = "";
    EXPECT_EQ(stamp_refusal(build(no_type)).field(), "type");
    Spec no_to;
    no_to.to = "";
    EXPECT_EQ(stamp_refusal(build(no_to)).field(), "to");
}

TEST(Envelope, IdHelpers) {
    std::vector<uint8_t> raw{0x00, 0x01, 0xab, 0xff};
    EXPECT_EQ(hex(kj::ArrayPtr<const kj::byte>(raw.data(), raw.size())), "0001abff");
    EXPECT_EQ(hex(kj::ArrayPtr<const kj::byte>()), "");
    std::vector<uint8_t> sixteen(16);
    for (size_t i = 0; i < 16; ++i) sixteen[i] = static_cast<uint8_t>(i);
    auto id = to_message_id(kj::ArrayPtr<const kj::byte>(sixteen.data(), 16));
    EXPECT_EQ(hex(id), "000102030405060708090a0b0c0d0e0f");
    // A wrong-sized id maps to all zeros rather than reading past it.
    EXPECT_EQ(to_message_id(kj::ArrayPtr<const kj::byte>(raw.data(), raw.size())), MessageId{});
    EXPECT_NE(new_message_id(), new_message_id());
}

TEST(Envelope, IdsAreUniqueAcrossThreadsAndAForkedChildNeverRepeatsItsParent) {
    // Ids draw their random bits from a per-thread buffer: threads must not share bytes, and a
    // child forked with its parent's buffer must not hand out what the parent hands out next.
    std::set<MessageId> seen;
    std::mutex m;
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([&] {
            std::vector<MessageId> mine;
            for (int i = 0; i < 2000; ++i) mine.push_back(new_message_id());
            std::lock_guard lock(m);
            seen.insert(mine.begin(), mine.end());
        });
    for (auto& t : threads) t.join();
    EXPECT_EQ(seen.size(), 8000u);

    (void)new_message_id(); // this thread's buffer holds bytes now
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        std::array<MessageId, 50> ids;
        for (auto& id : ids) id = new_message_id();
        ssize_t n = write(fds[1], ids.data(), sizeof ids);
        _exit(n == static_cast<ssize_t>(sizeof ids) ? 0 : 1);
    }
    close(fds[1]);
    std::array<MessageId, 50> parent, from_child;
    for (auto& id : parent) id = new_message_id();
    size_t got = 0;
    while (got < sizeof from_child) {
        ssize_t n = read(fds[0], reinterpret_cast<char*>(from_child.data()) + got, sizeof from_child - got);
        if (n <= 0) break;
        got += static_cast<size_t>(n);
    }
    close(fds[0]);
    int status = 0;
    waitpid(child, &status, 0);
    ASSERT_EQ(got, sizeof from_child);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    // Compare the random bits only: the two processes may well share a millisecond.
    auto random_part = [](const MessageId& id) { return std::vector<uint8_t>(id.begin() + 6, id.end()); };
    std::set<std::vector<uint8_t>> in_parent;
    for (auto& id : parent) in_parent.insert(random_part(id));
    for (auto& id : from_child) EXPECT_EQ(in_parent.count(random_part(id)), 0u) << "the child repeated its parent's id";
}

TEST(Envelope, CopyWithEditsACopy) {
    auto bytes = build(Spec{});
    auto v = EnvelopeView::decode(bytes.data(), bytes.size());
    auto out = copy_with(v.get(), [](schema::Envelope::Builder b) { b.setTo("jlis:juki"); });
    auto w = EnvelopeView::decode(out.begin(), out.asBytes().size());
    EXPECT_EQ(std::string(w.get().getTo()), "jlis:juki");
    EXPECT_EQ(std::string(w.get().getType()), "juki.IdentityUpdate");
    EXPECT_EQ(std::string(v.get().getTo()), "pref:13"); // the original is untouched
}

// What a host signs as an envelope leaves it: the canonical bytes with the hop count one higher,
// the same bytes as editing a copy and canonicalising that, whether the hop count's data word was
// cut off (hop 0, or sent-at 0 too) or is there, with and without the optional parts.
TEST(Envelope, CanonicalWithHopsIsTheCanonicalFormOfTheEditedEnvelope) {
    auto reference = [](schema::Envelope::Reader e, uint8_t hops) {
        capnp::MallocMessageBuilder copy;
        copy.setRoot(e);
        copy.getRoot<schema::Envelope>().setHopCount(hops);
        return to_vector(capnp::canonicalize(copy.getRoot<schema::Envelope>().asReader()).asBytes());
    };
    std::vector<Spec> specs;
    for (uint8_t hops : {0, 1, 7, 254, 255})
        for (int64_t sent : {int64_t{0}, int64_t{1700000000000}})
            for (bool extras : {false, true}) {
                Spec s;
                s.hops = hops;
                s.sent = sent;
                s.fault = extras;
                s.correlation_size = extras ? 16 : 0;
                if (extras) s.conditions = {"myNumber", "name"};
                specs.push_back(s);
            }
    int inserted = 0, patched = 0;
    for (auto& s : specs) {
        auto bytes = build(s);
        auto v = EnvelopeView::decode(bytes.data(), bytes.size());
        for (uint8_t next : {uint8_t(s.hops + 1), uint8_t{0}, uint8_t{3}, s.hops}) {
            SCOPED_TRACE("hops " + std::to_string(s.hops) + " -> " + std::to_string(next) + ", sent " +
                         std::to_string(s.sent) + (s.fault ? ", with fault, correlation id, conditions" : ""));
            auto want = reference(v.get(), next);
            auto got = canonical_with_hops(v.get(), next);
            ASSERT_EQ(to_vector(got.asBytes()), want);
            // It reads back as the envelope with that hop count, and it is canonical (one
            // segment, no segment table).
            kj::ArrayPtr<const capnp::word> segments[1] = {got.asPtr()};
            capnp::SegmentArrayMessageReader r(kj::arrayPtr(segments, 1));
            EXPECT_TRUE(r.isCanonical());
            EXPECT_EQ(r.getRoot<schema::Envelope>().getHopCount(), next);
            EXPECT_EQ(std::string(r.getRoot<schema::Envelope>().getTo()), s.to);
            if (s.hops == 0 && next != 0 && s.sent != 0) ++inserted;
            if (s.hops != 0 && next != 0) ++patched;
        }
    }
    EXPECT_GT(inserted, 0);
    EXPECT_GT(patched, 0);
}
