#include "renkei/dead_letters.hpp"
#include "renkei/outbox.hpp"

#include "test_support.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace renkei {
namespace {

std::vector<uint8_t> bytes_of_text(const std::string& s) { return {s.begin(), s.end()}; }

TEST(DeadLetters, RefusedMessageIsKeptWithReasonAndTime) {
    test::TempDir dir;
    auto path = dir / "outbox.db";
    Outbox outbox(path);
    auto id = new_message_id();
    auto payload = bytes_of_text("an envelope");
    uint64_t seq = outbox.put("jlis:juki", id, "juki.IdentityUpdate", payload, 100);
    std::vector<uint64_t> seqs{seq};
    outbox.mark_sent(seqs, 150);
    EXPECT_TRUE(outbox.move_to_dead_letter(seq, "refused: unknown municipality code", 200));
    EXPECT_FALSE(outbox.move_to_dead_letter(seq, "again", 201)) << "no longer queued";
    EXPECT_EQ(outbox.size(), 0u);

    DeadLetters letters(path);
    EXPECT_EQ(letters.count(), 1u);
    auto letter = letters.get(id);
    ASSERT_TRUE(letter);
    EXPECT_EQ(letter->id, id);
    EXPECT_EQ(letter->peer, "jlis:juki");
    EXPECT_EQ(letter->type, "juki.IdentityUpdate");
    EXPECT_EQ(letter->bytes, payload);
    EXPECT_EQ(letter->attempts, 1);
    EXPECT_EQ(letter->reason, "refused: unknown municipality code");
    EXPECT_EQ(letter->queued_ms, 100);
    EXPECT_EQ(letter->dead_ms, 200);
    EXPECT_FALSE(letters.get(new_message_id()));
}

TEST(DeadLetters, ListPagesOldestFirstAndSurvivesReopen) {
    test::TempDir dir;
    auto path = dir / "outbox.db";
    std::vector<MessageId> ids;
    {
        Outbox outbox(path);
        for (int i = 0; i < 5; ++i) {
            ids.push_back(new_message_id());
            uint64_t seq = outbox.put("pref:13", ids.back(), "t", bytes_of_text("m"), 0);
            // Die in reverse order of queueing: the list follows the time they died.
            ASSERT_TRUE(outbox.move_to_dead_letter(seq, "refused", 1000 - i));
        }
    }
    DeadLetters letters(path);
    EXPECT_EQ(letters.count(), 5u);
    auto page1 = letters.list(2, 0);
    auto page2 = letters.list(2, 2);
    auto page3 = letters.list(2, 4);
    ASSERT_EQ(page1.size(), 2u);
    ASSERT_EQ(page2.size(), 2u);
    ASSERT_EQ(page3.size(), 1u);
    EXPECT_EQ(page1[0].id, ids[4]);
    EXPECT_EQ(page1[1].id, ids[3]);
    EXPECT_EQ(page2[0].id, ids[2]);
    EXPECT_EQ(page2[1].id, ids[1]);
    EXPECT_EQ(page3[0].id, ids[0]);
    EXPECT_TRUE(letters.list(10, 5).empty());
    EXPECT_TRUE(letters.list(0, 0).empty());
}

TEST(DeadLetters, ReplayRequeuesOnceWithAttemptsReset) {
    test::TempDir dir;
    auto path = dir / "outbox.db";
    OutboxOptions options;
    options.retry.max_attempts = 1;
    Outbox outbox(path, options);
    auto id = new_message_id();
    auto payload = bytes_of_text("replay me");
    uint64_t seq = outbox.put("pref:27", id, "fuhyo.Notice", payload, 0);
    std::vector<uint64_t> seqs{seq};
    outbox.mark_sent(seqs, 0);
    ASSERT_EQ(outbox.dead_letter_exhausted(1'000'000).size(), 1u);
    DeadLetters letters(path);
    ASSERT_EQ(letters.count(), 1u);

    auto entry = outbox.replay_dead_letter(id, 2'000'000);
    ASSERT_TRUE(entry);
    EXPECT_EQ(entry->id, id);
    EXPECT_EQ(entry->peer, "pref:27");
    EXPECT_EQ(entry->type, "fuhyo.Notice");
    EXPECT_EQ(entry->bytes, payload);
    EXPECT_EQ(entry->attempts, 0);
    EXPECT_GT(entry->seq, seq);
    EXPECT_EQ(letters.count(), 0u) << "replay removes the dead letter";
    EXPECT_FALSE(outbox.replay_dead_letter(id, 2'000'001)) << "a second replay finds nothing";

    auto due = outbox.due(2'000'000, 10);
    ASSERT_EQ(due.size(), 1u) << "the replayed message is due at once";
    EXPECT_EQ(due[0].id, id);
    EXPECT_TRUE(outbox.ack("pref:27", id));
}

TEST(DeadLetters, LateAckFromTheRightPeerDeletesTheDeadLetter) {
    test::TempDir dir;
    auto path = dir / "outbox.db";
    Outbox outbox(path);
    auto id = new_message_id();
    uint64_t seq = outbox.put("pref:13", id, "t", bytes_of_text("m"), 0);
    ASSERT_TRUE(outbox.move_to_dead_letter(seq, "no ack", 1));
    DeadLetters letters(path);
    EXPECT_FALSE(outbox.ack("pref:27", id)) << "another peer cannot ack it";
    EXPECT_EQ(letters.count(), 1u);
    EXPECT_TRUE(outbox.ack("pref:13", id));
    EXPECT_EQ(letters.count(), 0u) << "delivered after all: nothing left to replay";
}

TEST(DeadLetters, MissingDatabaseIsAnErrorNamingTheFile) {
    test::TempDir dir;
    auto path = dir / "typo.db";
    try {
        DeadLetters letters(path);
        FAIL() << "opened a database that does not exist";
    } catch (const sqlite::Error& e) {
        EXPECT_NE(std::string(e.what()).find(path.string()), std::string::npos) << e.what();
    }
    EXPECT_FALSE(std::filesystem::exists(path)) << "must not create it";
}

TEST(DeadLetters, RemoveDiscardsForGood) {
    test::TempDir dir;
    auto path = dir / "outbox.db";
    Outbox outbox(path);
    auto id = new_message_id();
    uint64_t seq = outbox.put("p", id, "t", bytes_of_text("m"), 0);
    ASSERT_TRUE(outbox.move_to_dead_letter(seq, "refused", 1));
    DeadLetters letters(path);
    EXPECT_TRUE(letters.remove(id));
    EXPECT_FALSE(letters.remove(id));
    EXPECT_EQ(letters.count(), 0u);
    EXPECT_FALSE(outbox.replay_dead_letter(id, 2));
}

TEST(DeadLetters, ReasonFromAPeerIsBoundedOnACharacterBoundary) {
    test::TempDir dir;
    auto path = dir / "outbox.db";
    Outbox outbox(path);
    auto id = new_message_id();
    uint64_t seq = outbox.put("p", id, "t", bytes_of_text("m"), 0);
    std::string reason = "x";
    for (int i = 0; i < 1000; ++i) reason += "拒否";  // 3 bytes each
    ASSERT_TRUE(outbox.move_to_dead_letter(seq, reason, 1));
    auto letter = DeadLetters(path).get(id);
    ASSERT_TRUE(letter);
    EXPECT_LE(letter->reason.size(), 1024u);
    EXPECT_EQ((letter->reason.size() - 1) % 3, 0u) << "cut inside a character";
    EXPECT_EQ(letter->reason, reason.substr(0, letter->reason.size()));
}

} // namespace
} // namespace renkei
