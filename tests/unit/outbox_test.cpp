#include "renkei/dead_letters.hpp"
#include "renkei/outbox.hpp"

#include "test_support.hpp"

#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace renkei {
namespace {

std::vector<uint8_t> bytes_of_text(const std::string& s) { return {s.begin(), s.end()}; }

MessageId id_from(uint64_t n) {
    MessageId id{};
    for (int i = 0; i < 8; ++i) id[15 - i] = static_cast<uint8_t>(n >> (8 * i));
    id[0] = 0xA5;  // never all zero
    return id;
}

OutboxOptions no_jitter() {
    OutboxOptions o;
    o.retry.jitter = 0.0;
    return o;
}

TEST(Outbox, DueReturnsEntriesInSeqOrderUntilAcked) {
    test::TempDir dir;
    Outbox outbox(dir / "outbox.db");
    auto a = new_message_id(), b = new_message_id(), c = new_message_id();
    auto payload = bytes_of_text("envelope-a");
    uint64_t sa = outbox.put("pref:13", a, "juki.IdentityUpdate", payload, 1000);
    uint64_t sb = outbox.put("jlis:juki", b, "juki.Query", bytes_of_text("envelope-b"), 1000);
    uint64_t sc = outbox.put("pref:13", c, "juki.IdentityUpdate", bytes_of_text("c"), 1000);
    EXPECT_LT(sa, sb);
    EXPECT_LT(sb, sc);
    EXPECT_EQ(outbox.size(), 3u);

    auto due = outbox.due(1000, 10);
    ASSERT_EQ(due.size(), 3u);
    EXPECT_EQ(due[0].seq, sa);
    EXPECT_EQ(due[0].id, a);
    EXPECT_EQ(due[0].peer, "pref:13");
    EXPECT_EQ(due[0].type, "juki.IdentityUpdate");
    EXPECT_EQ(due[0].bytes, payload);
    EXPECT_EQ(due[0].attempts, 0);
    EXPECT_EQ(due[0].queued_ms, 1000);
    EXPECT_EQ(due[1].id, b);
    EXPECT_EQ(due[2].id, c);
    EXPECT_EQ(outbox.due(1000, 2).size(), 2u);
    EXPECT_TRUE(outbox.due(999, 10).empty()) << "not due before it was queued";

    // Only the peer it was queued for can acknowledge it.
    EXPECT_FALSE(outbox.ack("jlis:juki", a));
    EXPECT_TRUE(outbox.ack("pref:13", a));
    EXPECT_FALSE(outbox.ack("pref:13", a)) << "second ack finds nothing";
    due = outbox.due(1000, 10);
    ASSERT_EQ(due.size(), 2u);
    EXPECT_EQ(due[0].id, b);
    EXPECT_EQ(due[1].id, c);
    std::vector<MessageId> ids{b, c};
    EXPECT_EQ(outbox.ack_batch("pref:13", ids), 1u);
    EXPECT_EQ(outbox.ack_batch("jlis:juki", ids), 1u);
    EXPECT_EQ(outbox.size(), 0u);
}

TEST(Outbox, HeldAndSendingPutsAreScheduledAsTheySay) {
    test::TempDir dir;
    Outbox outbox(dir / "outbox.db", no_jitter()); // base delay 1,000 ms
    auto held = new_message_id(), sending = new_message_id(), plain = new_message_id();
    auto bytes = bytes_of_text("x");
    std::vector<OutboxPut> puts{{"pref:13", held, "juki.IdentityUpdate", bytes, 50'000, false},
                                {"pref:13", sending, "juki.IdentityUpdate", bytes, 0, true},
                                {"pref:13", plain, "juki.IdentityUpdate", bytes}};
    outbox.put_batch(puts, 10'000);
    EXPECT_EQ(outbox.held(10'000), 1u); // the held one only: the sending one counts as sent
    auto due = outbox.due(10'000, 10);
    ASSERT_EQ(due.size(), 1u);
    EXPECT_EQ(due[0].id, plain);
    due = outbox.due(11'000, 10); // the sending one's ack wait is over: due for its 2nd attempt
    ASSERT_EQ(due.size(), 2u); // in seq order
    EXPECT_EQ(due[0].id, sending);
    EXPECT_EQ(due[0].attempts, 1);
    EXPECT_EQ(due[1].id, plain);
    due = outbox.due(50'000, 10); // the window opened: the held one is due, never sent before
    ASSERT_EQ(due.size(), 3u);
    EXPECT_EQ(due[0].id, held);
    EXPECT_EQ(due[0].attempts, 0);
    EXPECT_EQ(due[0].queued_ms, 10'000);
    EXPECT_EQ(outbox.held(50'000), 0u);
}

TEST(Outbox, DueLimitTakesTheEarliestScheduledAndReturnsThemInSeqOrder) {
    test::TempDir dir;
    OutboxOptions options = no_jitter();
    options.retry.base_delay_ms = 1000;
    Outbox outbox(dir / "outbox.db", options);
    auto a = new_message_id(), b = new_message_id(), c = new_message_id();
    uint64_t sa = outbox.put("p", a, "t", bytes_of_text("a"), 0);
    std::vector<uint64_t> sent{sa};
    outbox.mark_sent(sent, 0);  // retry at 1000
    outbox.put("p", b, "t", bytes_of_text("b"), 500);
    outbox.put("p", c, "t", bytes_of_text("c"), 1500);
    auto due = outbox.due(2000, 2);
    ASSERT_EQ(due.size(), 2u);
    EXPECT_EQ(due[0].id, a) << "the retry due at 1000 is taken before the put at 1500";
    EXPECT_EQ(due[1].id, b);
    EXPECT_EQ(due[0].attempts, 1);
    EXPECT_EQ(outbox.due(2000, 10).size(), 3u);
}

TEST(Outbox, PutOfAQueuedIdIsIdempotent) {
    test::TempDir dir;
    Outbox outbox(dir / "outbox.db");
    auto id = new_message_id();
    uint64_t first = outbox.put("pref:13", id, "t", bytes_of_text("first"), 1);
    uint64_t again = outbox.put("pref:13", id, "t", bytes_of_text("second"), 2);
    EXPECT_EQ(first, again);
    EXPECT_EQ(outbox.size(), 1u);
    EXPECT_EQ(outbox.due(10, 10).at(0).bytes, bytes_of_text("first"));
}

// The caller's format number is kept in the file, and a conversion rewrites the entries and the
// dead letters together, or nothing when one of them cannot be converted.
TEST(Outbox, ConvertingBytesRewritesEntriesAndDeadLettersAllOrNothing) {
    test::TempDir dir;
    const auto entry = id_from(1), other = id_from(2), dead = id_from(3);
    {
        Outbox outbox(dir / "outbox.db");
        EXPECT_EQ(outbox.bytes_format(), 0) << "a new file records no format";
        outbox.put("pref:13", entry, "t", bytes_of_text("entry"), 1);
        outbox.put("pref:13", other, "t", bytes_of_text("other"), 1);
        outbox.add_dead_letters(std::vector<DeadLetter>{{dead, "pref:13", "t", bytes_of_text("dead"), 20, "gone", 1, 2}});
        outbox.convert_bytes(1, [](std::span<const uint8_t> b) {
            std::vector<uint8_t> out(b.begin(), b.end());
            std::reverse(out.begin(), out.end());
            return out;
        });
        EXPECT_EQ(outbox.bytes_format(), 1);
    }
    Outbox outbox(dir / "outbox.db");
    EXPECT_EQ(outbox.bytes_format(), 1) << "kept in the file";
    auto due = outbox.due(10, 10);
    ASSERT_EQ(due.size(), 2u);
    EXPECT_EQ(due[0].bytes, bytes_of_text("yrtne"));
    EXPECT_EQ(due[1].bytes, bytes_of_text("rehto"));
    EXPECT_EQ(DeadLetters(dir / "outbox.db").get(dead)->bytes, bytes_of_text("daed"));

    // The second entry cannot be converted: the error names it, and nothing changed.
    try {
        outbox.convert_bytes(2, [](std::span<const uint8_t> b) {
            if (b[0] == 'r') throw std::runtime_error("not a frame");
            return std::vector<uint8_t>{'x'};
        });
        ADD_FAILURE() << "a failed conversion must throw";
    } catch (const std::runtime_error& e) {
        std::string what = e.what();
        EXPECT_NE(what.find("outbox entry " + hex(other) + " could not be converted to format 2: not a frame"),
                  std::string::npos) << what;
    }
    EXPECT_EQ(outbox.bytes_format(), 1);
    EXPECT_EQ(outbox.due(10, 10).at(0).bytes, bytes_of_text("yrtne"));
    EXPECT_EQ(DeadLetters(dir / "outbox.db").get(dead)->bytes, bytes_of_text("daed"));
}

TEST(Outbox, RejectsBadInputNamingTheFieldAndStoresNothingOfTheBatch) {
    test::TempDir dir;
    OutboxOptions options;
    options.max_message_bytes = 8;
    Outbox outbox(dir / "outbox.db", options);
    auto payload = bytes_of_text("ok");
    auto field_of = [&](std::string_view peer, MessageId id, std::string_view type,
                        std::span<const uint8_t> bytes) -> std::string {
        try {
            outbox.put(peer, id, type, bytes, 0);
        } catch (const OutboxInputError& e) {
            EXPECT_NE(std::string(e.what()).find(e.field()), std::string::npos);
            return e.field() + ": " + e.rule();
        }
        return "accepted";
    };
    EXPECT_EQ(field_of("", new_message_id(), "t", payload), "peer: must not be empty");
    EXPECT_EQ(field_of("p", new_message_id(), "", payload), "type: must not be empty");
    EXPECT_EQ(field_of("p\n", new_message_id(), "t", payload),
              "peer: must not contain control characters");
    EXPECT_EQ(field_of(std::string(300, 'p'), new_message_id(), "t", payload),
              "peer: must be at most 256 bytes");
    EXPECT_EQ(field_of("p", MessageId{}, "t", payload), "id: must not be all zero");
    EXPECT_EQ(field_of("p", new_message_id(), "t", {}), "bytes: must not be empty");
    EXPECT_EQ(field_of("p", new_message_id(), "t", bytes_of_text("123456789")),
              "bytes: must be at most 8 bytes (got 9)");

    std::vector<OutboxPut> batch{{"p", new_message_id(), "t", payload},
                                 {"p", new_message_id(), "", payload}};
    EXPECT_THROW(outbox.put_batch(batch, 0), OutboxInputError);
    EXPECT_EQ(outbox.size(), 0u);
}

TEST(Outbox, RejectsBadOptionsNamingTheOption) {
    test::TempDir dir;
    OutboxOptions options;
    options.retry.jitter = 1.5;
    try {
        Outbox outbox(dir / "outbox.db", options);
        FAIL() << "accepted jitter 1.5";
    } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("retry.jitter"), std::string::npos) << e.what();
    }
}

TEST(Outbox, StorageErrorsNameTheDatabaseFile) {
    test::TempDir dir;
    auto path = dir / "missing-dir" / "outbox.db";
    try {
        Outbox outbox(path);
        FAIL() << "opened a file in a missing directory";
    } catch (const sqlite::Error& e) {
        EXPECT_NE(std::string(e.what()).find(path.string()), std::string::npos) << e.what();
    }
}

TEST(Outbox, DatabaseFilesArePrivateToTheOwner) {
    test::TempDir dir;
    auto path = dir / "outbox.db";
    Outbox outbox(path);
    outbox.put("p", new_message_id(), "t", bytes_of_text("personal data"), 0);
    for (const auto& file : {path, std::filesystem::path(path.string() + "-wal")}) {
        ASSERT_TRUE(std::filesystem::exists(file)) << file;
        using std::filesystem::perms;
        auto mode = std::filesystem::status(file).permissions();
        EXPECT_EQ(mode & (perms::group_all | perms::others_all), perms::none) << file;
    }
}

TEST(RetryDelay, DoublesFromBaseAndCaps) {
    RetryPolicy p;
    p.base_delay_ms = 100;
    p.max_delay_ms = 1000;
    p.jitter = 0.0;
    std::vector<int64_t> got;
    for (int n = 1; n <= 7; ++n) got.push_back(retry_delay_ms(p, n, 0.5));
    EXPECT_EQ(got, (std::vector<int64_t>{100, 200, 400, 800, 1000, 1000, 1000}));
    EXPECT_EQ(retry_delay_ms(p, 1000000, 0.5), 1000) << "no overflow for huge attempt counts";
}

TEST(RetryDelay, JitterStaysWithinRangeAndScheduleStillGrows) {
    RetryPolicy p;
    p.base_delay_ms = 1000;
    p.max_delay_ms = 60000;
    p.jitter = 0.25;
    for (int n = 1; n <= 12; ++n) {
        int64_t nominal = std::min<int64_t>(1000LL << (n - 1), 60000);
        int64_t low = retry_delay_ms(p, n, 0.999999);
        int64_t high = retry_delay_ms(p, n, 0.0);
        EXPECT_EQ(high, nominal);
        EXPECT_GE(low, nominal - nominal / 4);
        EXPECT_LT(low, high);
        if (nominal < 60000) {
            // The shortest next wait is longer than the longest current one.
            EXPECT_GT(retry_delay_ms(p, n + 1, 0.999999), high);
        }
    }
}

TEST(Outbox, MarkSentSchedulesRetriesWithGrowingCappedBackoff) {
    test::TempDir dir;
    OutboxOptions options = no_jitter();
    options.retry.base_delay_ms = 1000;
    options.retry.max_delay_ms = 5000;
    options.retry.max_attempts = 100;
    Outbox outbox(dir / "outbox.db", options);
    auto id = new_message_id();
    uint64_t seq = outbox.put("pref:13", id, "t", bytes_of_text("x"), 0);

    int64_t now = 0;
    std::vector<int64_t> waits;
    for (int i = 0; i < 6; ++i) {
        auto due = outbox.due(now, 10);
        ASSERT_EQ(due.size(), 1u);
        EXPECT_EQ(due[0].attempts, i);
        std::vector<uint64_t> seqs{seq};
        outbox.mark_sent(seqs, now);
        auto next = outbox.due(now + 100000, 10).at(0).next_attempt_ms;
        waits.push_back(next - now);
        EXPECT_TRUE(outbox.due(next - 1, 10).empty()) << "due before its retry time";
        now = next;
    }
    EXPECT_EQ(waits, (std::vector<int64_t>{1000, 2000, 4000, 5000, 5000, 5000}));

    std::vector<uint64_t> unknown{seq + 1000};
    outbox.mark_sent(unknown, now);  // acked meanwhile: skipped, no error
    EXPECT_EQ(outbox.size(), 1u);
}

TEST(Outbox, JitteredRetriesOfOneBatchSpreadOut) {
    test::TempDir dir;
    OutboxOptions options;
    options.retry.base_delay_ms = 10000;
    options.retry.jitter = 0.2;
    options.jitter_seed = 42;
    Outbox outbox(dir / "outbox.db", options);
    std::vector<uint64_t> seqs;
    for (int i = 0; i < 50; ++i)
        seqs.push_back(outbox.put("p", new_message_id(), "t", bytes_of_text("x"), 0));
    outbox.mark_sent(seqs, 0);
    std::set<int64_t> times;
    for (auto& e : outbox.due(20000, 100)) {
        EXPECT_GE(e.next_attempt_ms, 8000);
        EXPECT_LE(e.next_attempt_ms, 10000);
        times.insert(e.next_attempt_ms);
    }
    EXPECT_GT(times.size(), 10u) << "retries should not all fire at the same instant";
}

TEST(Outbox, ReopenKeepsUnackedEntriesAndNeverReusesSeqs) {
    test::TempDir dir;
    auto path = dir / "outbox.db";
    auto kept = new_message_id(), acked = new_message_id();
    uint64_t last_seq = 0;
    {
        Outbox outbox(path, no_jitter());
        outbox.put("pref:13", kept, "t", bytes_of_text("keep me"), 5);
        last_seq = outbox.put("pref:13", acked, "t", bytes_of_text("ack me"), 5);
        std::vector<uint64_t> sent{last_seq - 1};
        outbox.mark_sent(sent, 10);
        ASSERT_TRUE(outbox.ack("pref:13", acked));
    }
    Outbox outbox(path, no_jitter());
    EXPECT_EQ(outbox.size(), 1u);
    auto due = outbox.due(1'000'000, 10);
    ASSERT_EQ(due.size(), 1u);
    EXPECT_EQ(due[0].id, kept);
    EXPECT_EQ(due[0].bytes, bytes_of_text("keep me"));
    EXPECT_EQ(due[0].attempts, 1);
    EXPECT_EQ(due[0].next_attempt_ms, 1010);
    uint64_t next = outbox.put("pref:13", new_message_id(), "t", bytes_of_text("n"), 20);
    EXPECT_GT(next, last_seq) << "the acked entry's seq must not be handed out again";
}

TEST(Outbox, ExhaustedEntriesBecomeDeadLettersAfterTheirLastWait) {
    test::TempDir dir;
    OutboxOptions options = no_jitter();
    options.retry.base_delay_ms = 100;
    options.retry.max_attempts = 2;
    Outbox outbox(dir / "outbox.db", options);
    auto id = new_message_id();
    uint64_t seq = outbox.put("pref:13", id, "juki.Query", bytes_of_text("q"), 0);
    std::vector<uint64_t> seqs{seq};
    outbox.mark_sent(seqs, 0);    // attempt 1, wait 100
    outbox.mark_sent(seqs, 100);  // attempt 2, wait 200 -> 300
    EXPECT_TRUE(outbox.due(1'000, 10).empty()) << "no attempts left";
    EXPECT_TRUE(outbox.dead_letter_exhausted(299).empty()) << "its ack may still come";
    EXPECT_EQ(outbox.size(), 1u) << "still there, its ack can still arrive";
    auto moved = outbox.dead_letter_exhausted(300);
    ASSERT_EQ(moved.size(), 1u);
    EXPECT_EQ(moved[0], id);
    EXPECT_EQ(outbox.size(), 0u);

    DeadLetters letters(dir / "outbox.db");
    auto letter = letters.get(id);
    ASSERT_TRUE(letter);
    EXPECT_EQ(letter->attempts, 2);
    EXPECT_EQ(letter->reason, "no acknowledgement after 2 sends");
    EXPECT_EQ(letter->dead_ms, 300);
}

TEST(Outbox, BatchOfTenThousandPutsAndAcks) {
    test::TempDir dir;
    Outbox outbox(dir / "outbox.db");
    const size_t n = 10'000;
    std::vector<MessageId> ids(n);
    std::vector<std::vector<uint8_t>> payloads(n);
    std::vector<OutboxPut> batch(n);
    for (size_t i = 0; i < n; ++i) {
        ids[i] = id_from(i + 1);
        payloads[i] = bytes_of_text("message-" + std::to_string(i));
        batch[i] = OutboxPut{i % 2 ? "pref:13" : "pref:27", ids[i], "juki.IdentityUpdate",
                             payloads[i]};
    }
    auto seqs = outbox.put_batch(batch, 7);
    ASSERT_EQ(seqs.size(), n);
    EXPECT_TRUE(std::is_sorted(seqs.begin(), seqs.end()));
    EXPECT_EQ(outbox.size(), n);

    auto due = outbox.due(7, 2 * n);
    ASSERT_EQ(due.size(), n);
    for (size_t i = 0; i < n; ++i) {
        ASSERT_EQ(due[i].seq, seqs[i]);
        ASSERT_EQ(due[i].id, ids[i]);
        ASSERT_EQ(due[i].bytes, payloads[i]);
    }
    std::vector<MessageId> odd, even;
    for (size_t i = 0; i < n; ++i) (i % 2 ? odd : even).push_back(ids[i]);
    EXPECT_EQ(outbox.ack_batch("pref:13", odd), n / 2);
    EXPECT_EQ(outbox.ack_batch("pref:27", even), n / 2);
    EXPECT_EQ(outbox.size(), 0u);
}

// The links' committer: acknowledgements and new messages in one transaction, all or nothing; an
// ack only deletes what was queued for the peer that sends it.
TEST(Outbox, CommitAppliesAcksAndPutsTogetherOrNeither) {
    test::TempDir dir;
    Outbox outbox(dir / "outbox.db", no_jitter());
    auto a = bytes_of_text("first"), b = bytes_of_text("second");
    std::vector<OutboxPut> first{{"pref:13", id_from(1), "t", a}, {"pref:27", id_from(2), "t", a}};
    outbox.put_batch(first, 0);

    std::vector<MessageId> acked13{id_from(1), id_from(2)}; // id 2 was queued for pref:27, not pref:13
    std::vector<Outbox::Acks> acks{{"pref:13", acked13}};
    std::vector<OutboxPut> bad{{"pref:13", id_from(3), "t", b}, {"pref:13", id_from(4), "", b}};
    EXPECT_THROW(outbox.commit(bad, acks, 5), OutboxInputError);
    EXPECT_EQ(outbox.size(), 2u) << "a refused put keeps the acks from being applied";

    std::vector<OutboxPut> next{{"pref:13", id_from(3), "t", b}, {"pref:13", id_from(4), "t", b}};
    auto c = outbox.commit(next, acks, 5);
    EXPECT_EQ(c.acked, 1u);
    ASSERT_EQ(c.seqs.size(), 2u);
    EXPECT_LT(c.seqs[0], c.seqs[1]);
    auto due = outbox.due(5, 10);
    ASSERT_EQ(due.size(), 3u);
    EXPECT_EQ(due[0].id, id_from(2));
    EXPECT_EQ(due[1].id, id_from(3));
    EXPECT_EQ(due[1].bytes, b);
    EXPECT_EQ(due[2].seq, c.seqs[1]);

    auto only_acks = outbox.commit({}, std::vector<Outbox::Acks>{{"pref:27", acked13}}, 6);
    EXPECT_EQ(only_acks.acked, 1u);
    EXPECT_TRUE(only_acks.seqs.empty());
    EXPECT_EQ(outbox.size(), 2u);
}

TEST(Outbox, ConcurrentPutsAreAllCommittedWithDistinctSeqs) {
    test::TempDir dir;
    Outbox outbox(dir / "outbox.db");
    const int threads = 4, per_thread = 300;
    std::vector<std::vector<uint64_t>> seqs(threads);
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t) {
        workers.emplace_back([&, t] {
            auto payload = bytes_of_text("from thread " + std::to_string(t));
            for (int i = 0; i < per_thread; ++i)
                seqs[t].push_back(
                    outbox.put("p", id_from(uint64_t(t) << 32 | uint64_t(i)), "t", payload, 0));
        });
    }
    for (auto& w : workers) w.join();
    std::set<uint64_t> all;
    for (auto& s : seqs) {
        EXPECT_TRUE(std::is_sorted(s.begin(), s.end())) << "a caller's puts keep their order";
        all.insert(s.begin(), s.end());
    }
    EXPECT_EQ(all.size(), size_t(threads * per_thread));
    EXPECT_EQ(outbox.size(), size_t(threads * per_thread));
}

// Records the child writes to the pipe: what it is about to do or has done, and for which id.
enum Tag : uint8_t { kPutDone = 'P', kAckBegin = 'a', kAckDone = 'A', kFailed = 'E' };
struct Report {
    uint8_t tag;
    MessageId id;
};

[[noreturn]] void crash_test_writer(const std::filesystem::path& path, int fd) {
    auto report = [fd](Tag tag, const MessageId& id) {
        uint8_t buf[17];
        buf[0] = tag;
        std::memcpy(buf + 1, id.data(), 16);
        if (write(fd, buf, sizeof buf) != sizeof buf) _exit(3);
    };
    try {
        Outbox outbox(path);
        std::vector<uint8_t> payload(200, 0x5A);
        std::vector<MessageId> unacked;
        for (uint64_t n = 1;; ++n) {
            if (n % 3 == 0) {
                std::vector<MessageId> ids{id_from(n), id_from(n + 1'000'000'000)};
                std::vector<OutboxPut> batch{{"pref:13", ids[0], "t", payload},
                                             {"pref:13", ids[1], "t", payload}};
                outbox.put_batch(batch, int64_t(n));
                for (auto& id : ids) {
                    report(kPutDone, id);
                    unacked.push_back(id);
                }
            } else {
                MessageId id = id_from(n);
                outbox.put("pref:13", id, "t", payload, int64_t(n));
                report(kPutDone, id);
                unacked.push_back(id);
            }
            if (unacked.size() >= 8) {  // acknowledge the older half
                std::vector<MessageId> acks(unacked.begin(), unacked.begin() + 4);
                unacked.erase(unacked.begin(), unacked.begin() + 4);
                for (auto& id : acks) report(kAckBegin, id);
                outbox.ack_batch("pref:13", acks);
                for (auto& id : acks) report(kAckDone, id);
            }
        }
    } catch (...) {
        report(kFailed, MessageId{});
        _exit(2);
    }
}

TEST(Outbox, SigkillLosesNoCommittedPutAndResurrectsNoAck) {
    test::TempDir dir;
    auto path = dir / "outbox.db";
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        close(fds[0]);
        crash_test_writer(path, fds[1]);
    }
    close(fds[1]);

    std::set<MessageId> put, ack_begun, acked;
    auto read_report = [&](Report& r) {
        uint8_t buf[17];
        size_t got = 0;
        while (got < sizeof buf) {
            ssize_t n = read(fds[0], buf + got, sizeof buf - got);
            if (n <= 0) return false;
            got += size_t(n);
        }
        r.tag = buf[0];
        std::memcpy(r.id.data(), buf + 1, 16);
        return true;
    };
    auto apply = [&](const Report& r) {
        if (r.tag == kPutDone) put.insert(r.id);
        if (r.tag == kAckBegin) ack_begun.insert(r.id);
        if (r.tag == kAckDone) acked.insert(r.id);
        ASSERT_NE(r.tag, kFailed) << "the writer failed";
    };
    Report r{};
    // Let it run well past start-up, then kill it wherever it is.
    while (put.size() < 3000 && read_report(r)) apply(r);
    ASSERT_EQ(kill(child, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "writer exited early";
    while (read_report(r)) apply(r);  // reports already in the pipe when it died
    close(fds[0]);
    ASSERT_GE(put.size(), 3000u);

    Outbox outbox(path);
    std::set<MessageId> present;
    for (auto& e : outbox.due(std::numeric_limits<int64_t>::max(), 1'000'000))
        present.insert(e.id);
    EXPECT_EQ(present.size(), outbox.size());
    size_t lost = 0, resurrected = 0;
    for (auto& id : put)
        if (!ack_begun.count(id) && !present.count(id)) ++lost;
    for (auto& id : acked)
        if (present.count(id)) ++resurrected;
    EXPECT_EQ(lost, 0u) << "puts that returned must survive SIGKILL";
    EXPECT_EQ(resurrected, 0u) << "acked entries must stay gone";
    // Anything present but unreported was committed by the put call in flight at the kill.
    size_t unreported = 0;
    for (auto& id : present) unreported += put.count(id) ? 0 : 1;
    EXPECT_LE(unreported, 2u);
}

} // namespace
} // namespace renkei
