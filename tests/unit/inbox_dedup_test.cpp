#include "renkei/inbox_dedup.hpp"

#include "test_support.hpp"

#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace renkei {
namespace {

void create_effects_table(sqlite::Database& db) {
    db.exec("CREATE TABLE IF NOT EXISTS effects (id BLOB PRIMARY KEY, note TEXT NOT NULL)",
            "create effects table");
}

void insert_effect(sqlite::Database& db, const MessageId& id, const std::string& note) {
    db.prepare("INSERT INTO effects (id, note) VALUES (?1, ?2)", "insert effect")
        .bind_blob(1, std::span<const uint8_t>(id.data(), id.size()))
        .bind_text(2, note)
        .run();
}

std::set<MessageId> effect_ids(sqlite::Database& db) {
    std::set<MessageId> ids;
    auto q = db.prepare("SELECT id FROM effects", "list effects");
    while (q.step()) {
        MessageId id{};
        auto b = q.column_blob_view(0);
        std::memcpy(id.data(), b.data(), std::min(b.size(), id.size()));
        ids.insert(id);
    }
    return ids;
}

std::set<MessageId> seen_ids(sqlite::Database& db) {
    std::set<MessageId> ids;
    auto q = db.prepare("SELECT id FROM inbox_seen", "list seen ids");
    while (q.step()) {
        MessageId id{};
        auto b = q.column_blob_view(0);
        std::memcpy(id.data(), b.data(), std::min(b.size(), id.size()));
        ids.insert(id);
    }
    return ids;
}

TEST(InboxDedup, FirstTimeOnlyOnceAndAcrossReopen) {
    test::TempDir dir;
    auto path = dir / "inbox.db";
    auto a = new_message_id(), b = new_message_id();
    {
        InboxDedup dedup(path);
        EXPECT_TRUE(dedup.first_time(a, 10));
        EXPECT_FALSE(dedup.first_time(a, 11));
        EXPECT_TRUE(dedup.seen(a));
        EXPECT_FALSE(dedup.seen(b));
        EXPECT_EQ(dedup.size(), 1u);
    }
    InboxDedup dedup(path);
    EXPECT_TRUE(dedup.seen(a));
    EXPECT_FALSE(dedup.first_time(a, 12)) << "a restart must not forget ids";
    EXPECT_TRUE(dedup.first_time(b, 12));
    EXPECT_EQ(dedup.size(), 2u);
}

// The links open their dedup store exclusively (no file lock per lookup): nobody else can use the
// file meanwhile, and what it recorded is there for the next opening, exclusive or not.
TEST(InboxDedup, ExclusiveStoreKeepsOthersOutAndItsIdsAcrossReopen) {
    test::TempDir dir;
    auto path = dir / "inbox.db";
    auto a = new_message_id(), b = new_message_id();
    sqlite::OpenOptions exclusive;
    exclusive.exclusive = true;
    exclusive.busy_timeout_ms = 0;
    {
        InboxDedup dedup(path, exclusive);
        EXPECT_TRUE(dedup.first_time(a, 10));
        EXPECT_FALSE(dedup.seen(b));
        sqlite::OpenOptions quick;
        quick.busy_timeout_ms = 0;
        EXPECT_THROW(
            {
                InboxDedup other(path, quick);
                other.seen(a);
            },
            sqlite::Error);
        EXPECT_TRUE(dedup.first_time(b, 11)) << "the owner goes on after the refused intruder";
    }
    InboxDedup again(path);
    EXPECT_TRUE(again.seen(a));
    EXPECT_TRUE(again.seen(b));
    EXPECT_EQ(again.size(), 2u);
}

TEST(InboxDedup, BatchMarksOnlyFirstOccurrences) {
    test::TempDir dir;
    InboxDedup dedup(dir / "inbox.db");
    auto old = new_message_id(), x = new_message_id(), y = new_message_id();
    ASSERT_TRUE(dedup.first_time(old, 1));
    std::vector<MessageId> ids{x, old, y, x};
    EXPECT_EQ(dedup.first_time_batch(ids, 2), (std::vector<bool>{true, false, true, false}));
    EXPECT_EQ(dedup.size(), 3u);
    EXPECT_TRUE(dedup.first_time_batch({}, 3).empty());
}

TEST(InboxDedup, RejectsAllZeroIdNamingTheField) {
    test::TempDir dir;
    InboxDedup dedup(dir / "inbox.db");
    try {
        dedup.first_time(MessageId{}, 1);
        FAIL() << "accepted an all-zero id";
    } catch (const std::invalid_argument& e) {
        EXPECT_STREQ(e.what(), "inbox dedup field 'id': must not be all zero");
    }
    std::vector<MessageId> ids{new_message_id(), MessageId{}};
    EXPECT_THROW(dedup.first_time_batch(ids, 1), std::invalid_argument);
    EXPECT_EQ(dedup.size(), 0u) << "a rejected batch records nothing";
}

TEST(InboxDedup, ApplyOnceCommitsEffectAndIdTogether) {
    test::TempDir dir;
    auto path = dir / "inbox.db";
    auto id = new_message_id();
    {
        InboxDedup dedup(path);
        int runs = 0;
        auto effect = [&](sqlite::Database& db) {
            ++runs;
            create_effects_table(db);
            insert_effect(db, id, "applied");
        };
        // A failing effect leaves neither the effect nor the id, so the retry is applied.
        EXPECT_THROW(dedup.apply_once(id, 1,
                                      [&](sqlite::Database& db) {
                                          effect(db);
                                          throw std::runtime_error("plugin refused");
                                      }),
                     std::runtime_error);
        EXPECT_FALSE(dedup.seen(id));
        EXPECT_TRUE(dedup.apply_once(id, 2, effect));
        EXPECT_FALSE(dedup.apply_once(id, 3, effect));
        EXPECT_EQ(runs, 2) << "a duplicate must not run the effect";
    }
    InboxDedup dedup(path);
    EXPECT_TRUE(dedup.seen(id));
    sqlite::Database db(path);
    EXPECT_EQ(effect_ids(db), std::set<MessageId>{id});
}

TEST(InboxDedup, PruneForgetsOnlyIdsOlderThanTheCutoffUpToItsLimit) {
    test::TempDir dir;
    InboxDedup dedup(dir / "inbox.db");
    std::vector<MessageId> ids;
    for (int i = 0; i < 12000; ++i) ids.push_back(new_message_id());
    std::vector<MessageId> old_ids(ids.begin(), ids.begin() + 11000);
    std::vector<MessageId> new_ids(ids.begin() + 11000, ids.end());
    dedup.first_time_batch(old_ids, 100);
    dedup.first_time_batch(new_ids, 300);
    EXPECT_EQ(dedup.prune_older_than(100), 0u) << "the cutoff itself is kept";
    EXPECT_EQ(dedup.prune_older_than(250, 6000), 10000u) << "whole chunks of 5,000 until the limit is reached";
    EXPECT_EQ(dedup.prune_older_than(250), 1000u) << "the rest, the last chunk a short one";
    EXPECT_EQ(dedup.size(), 1000u);
    EXPECT_FALSE(dedup.first_time(new_ids[0], 400));
    EXPECT_TRUE(dedup.first_time(old_ids[0], 400)) << "a pruned id is new again";
}

MessageId random_id(std::mt19937_64& rng) {
    MessageId id{};
    for (size_t i = 0; i < id.size(); i += 8) {
        uint64_t r = rng();
        std::memcpy(id.data() + i, &r, 8);
    }
    id[0] |= 1; // never all zero
    return id;
}

// Waits (up to 5 s) until `store` has filled `n` filters; false if it has not.
bool filled(InboxDedup& store, uint64_t n) {
    for (int i = 0; i < 1'000 && store.filters_built() < n; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    return store.filters_built() >= n;
}

TEST(IdFilter, NeverForgetsAnIdAndSeldomClaimsOneItWasNotGiven) {
    std::mt19937_64 rng(7);
    IdFilter filter(100'000);
    std::vector<MessageId> given;
    for (int i = 0; i < 100'000; ++i) given.push_back(random_id(rng));
    for (auto& id : given) filter.add(id);
    EXPECT_EQ(filter.added(), 100'000u);
    EXPECT_GE(filter.capacity(), 100'000u);
    for (auto& id : given) ASSERT_TRUE(filter.may_contain(id));
    int claimed = 0;
    for (int i = 0; i < 100'000; ++i) claimed += filter.may_contain(random_id(rng));
    EXPECT_LT(claimed, 1'000) << "at most 1% false positives at its design load (about 0.2% expected)";
}

// The filter in front of the file changes no answer: for ids recorded before the store was
// opened, while a filter was being filled (between its reads of the file, some of them below
// where it had read to), and when a full filter was replaced by a larger one.
TEST(InboxDedup, TheFilterAnswersAsTheFileDoesAcrossFillsAndRefills) {
    test::TempDir dir;
    std::mt19937_64 rng(11);
    std::vector<MessageId> recorded;
    for (int i = 0; i < 3'000; ++i) recorded.push_back(random_id(rng));
    {
        DedupFilterOptions none;
        none.ids = 0;
        InboxDedup store(dir / "inbox.db", {}, none);
        EXPECT_EQ(store.filters_built(), 0u) << "0: no filter";
        store.first_time_batch(recorded, 1);
    }
    std::mutex m;
    std::condition_variable opened;
    InboxDedup* store_ptr = nullptr;
    size_t recorded_while_filling = 0;
    DedupFilterOptions o; // sized by the file: the smallest filter, 4,096 ids
    o.ids = 1;
    o.chunk = 50;
    o.between_chunks = [&] {
        std::unique_lock lock(m);
        opened.wait(lock, [&] { return store_ptr != nullptr; });
        std::vector<MessageId> batch;
        for (int i = 0; i < 10; ++i) batch.push_back(random_id(rng));
        store_ptr->first_time_batch(batch, 2);
        recorded.insert(recorded.end(), batch.begin(), batch.end());
        recorded_while_filling += batch.size();
    };
    InboxDedup store(dir / "inbox.db", {}, o);
    {
        std::lock_guard lock(m);
        store_ptr = &store;
    }
    opened.notify_all();
    auto check = [&] {
        std::lock_guard lock(m);
        for (auto& id : recorded) ASSERT_TRUE(store.seen(id)) << "missed " << hex(id);
        for (int i = 0; i < 1'000; ++i) ASSERT_FALSE(store.seen(random_id(rng)));
    };
    ASSERT_TRUE(filled(store, 1));
    EXPECT_GT(store.filter_capacity(), 0u);
    EXPECT_GT(recorded_while_filling, 0u);
    check();
    // More than the first filter holds: a larger one is filled, with records between its reads.
    const size_t before_refill = recorded_while_filling;
    {
        std::lock_guard lock(m);
        std::vector<MessageId> batch;
        for (int i = 0; i < 5'000; ++i) batch.push_back(random_id(rng));
        store.first_time_batch(batch, 3);
        recorded.insert(recorded.end(), batch.begin(), batch.end());
    }
    ASSERT_TRUE(filled(store, 2));
    EXPECT_GT(recorded_while_filling, before_refill);
    check();
}

// A store that forgets as fast as it records (the host's retention at work) keeps refilling its
// filter at the size of what it holds, dropping the forgotten ids, instead of doubling it.
TEST(InboxDedup, RefillsOfAStoreThatPrunesAsItRecordsDoNotGrowTheFilter) {
    test::TempDir dir;
    std::mt19937_64 rng(5);
    DedupFilterOptions o;
    o.ids = 1; // the smallest filter: 4,096 ids
    InboxDedup store(dir / "inbox.db", {}, o);
    ASSERT_TRUE(filled(store, 1));
    // 60,000 ids in batches of 1,000, at most 2,000 held at a time.
    std::vector<MessageId> latest;
    for (int64_t t = 1; t <= 60; ++t) {
        latest.clear();
        for (int i = 0; i < 1'000; ++i) latest.push_back(random_id(rng));
        store.first_time_batch(latest, t);
        store.prune_older_than(t - 1);
        std::this_thread::sleep_for(std::chrono::milliseconds(2)); // the filler's turn
    }
    EXPECT_EQ(store.size(), 2'000u);
    EXPECT_GE(store.filters_built(), 3u) << "it filled up again and again";
    // Sized for twice what it holds when a refill starts (an estimate that may count a batch
    // twice over), never for all it ever took: doubling each time it would be at 16,384 or more.
    EXPECT_LE(store.filter_capacity(), 8'192u);
    for (auto& id : latest) EXPECT_TRUE(store.seen(id));
}

// A receiver killed at any instant: every recorded id has its effect and vice versa.
TEST(InboxDedup, SigkillNeverSeparatesIdFromEffect) {
    test::TempDir dir;
    auto path = dir / "inbox.db";
    {
        sqlite::Database db(path);
        create_effects_table(db);
    }
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        close(fds[0]);
        try {
            InboxDedup dedup(path);
            for (;;) {
                MessageId id = new_message_id();
                dedup.apply_once(id, 1, [&](sqlite::Database& db) { insert_effect(db, id, "e"); });
                dedup.apply_once(id, 1, [&](sqlite::Database& db) { insert_effect(db, id, "x"); });
                if (write(fds[1], id.data(), id.size()) != ssize_t(id.size())) _exit(3);
            }
        } catch (...) {
            _exit(2);
        }
    }
    close(fds[1]);
    std::set<MessageId> reported;
    MessageId id{};
    auto read_id = [&] {
        size_t got = 0;
        while (got < id.size()) {
            ssize_t n = read(fds[0], id.data() + got, id.size() - got);
            if (n <= 0) return false;
            got += size_t(n);
        }
        return true;
    };
    while (reported.size() < 1500 && read_id()) reported.insert(id);
    ASSERT_EQ(kill(child, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFSIGNALED(status)) << "receiver exited early with " << WEXITSTATUS(status);
    while (read_id()) reported.insert(id);
    close(fds[0]);

    sqlite::Database db(path);
    auto effects = effect_ids(db);
    auto seen = seen_ids(db);
    EXPECT_EQ(effects, seen);
    for (auto& r : reported) EXPECT_TRUE(seen.count(r)) << "a reported id was lost";
    EXPECT_LE(seen.size() - reported.size(), 1u);
}

} // namespace
} // namespace renkei
