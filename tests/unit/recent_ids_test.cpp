// RecentIds: the newest ids up to a capacity, checked against a plain model through every kind of
// sequence (wrapping, evictions in the middle of probe runs, ids that differ in one byte only).
#include <renkei/recent_ids.hpp>

#include <gtest/gtest.h>

#include <deque>
#include <random>
#include <set>
#include <stdexcept>

using namespace renkei;

namespace {

MessageId id_of(uint64_t n, uint8_t fill = 0) {
    MessageId id;
    id.fill(fill);
    for (int i = 0; i < 8; ++i) id[15 - i] = static_cast<uint8_t>(n >> (8 * i));
    return id;
}

// What RecentIds must behave like: a queue of the newest ids and a set of them.
struct Model {
    size_t capacity;
    std::deque<MessageId> order;
    std::set<MessageId> set;
    void insert(const MessageId& id) {
        if (!set.insert(id).second) return;
        order.push_back(id);
        if (order.size() > capacity) {
            set.erase(order.front());
            order.pop_front();
        }
    }
};

} // namespace

TEST(RecentIds, KeepsTheNewestUpToTheCapacityAndForgetsTheOldest) {
    RecentIds ids(3);
    for (uint64_t n = 1; n <= 3; ++n) ids.insert(id_of(n));
    EXPECT_TRUE(ids.contains(id_of(1)));
    ids.insert(id_of(1)); // already there: it stays the oldest
    ids.insert(id_of(4));
    EXPECT_FALSE(ids.contains(id_of(1)));
    EXPECT_TRUE(ids.contains(id_of(2)));
    EXPECT_TRUE(ids.contains(id_of(4)));
    EXPECT_EQ(ids.size(), 3u);
    ids.clear();
    EXPECT_EQ(ids.size(), 0u);
    EXPECT_FALSE(ids.contains(id_of(4)));
    ids.insert(id_of(4));
    EXPECT_TRUE(ids.contains(id_of(4)));
    EXPECT_THROW(RecentIds(0), std::invalid_argument);
}

TEST(RecentIds, AgreesWithAModelThroughLongRandomSequences) {
    std::mt19937_64 rng(20261124);
    for (size_t capacity : {1u, 2u, 7u, 64u, 1000u}) {
        RecentIds ids(capacity);
        Model model{capacity, {}, {}};
        // Draws from a pool a few times the capacity, so ids come back both while remembered and
        // after being forgotten; half the pool differs from the rest in its first byte only.
        const uint64_t pool = capacity * 3 + 5;
        for (int step = 0; step < 20000; ++step) {
            uint64_t n = rng() % pool;
            MessageId id = id_of(n / 2, n % 2 ? 0xff : 0);
            if (rng() % 3) {
                ids.insert(id);
                model.insert(id);
            }
            ASSERT_EQ(ids.contains(id), model.set.count(id) > 0) << "capacity " << capacity << " step " << step;
            ASSERT_EQ(ids.size(), model.set.size());
        }
        for (uint64_t n = 0; n < pool; ++n) {
            MessageId id = id_of(n / 2, n % 2 ? 0xff : 0);
            EXPECT_EQ(ids.contains(id), model.set.count(id) > 0) << "capacity " << capacity << " id " << n;
        }
    }
}

TEST(RecentIds, HoldsAMillionIdsAndForgetsInOrder) {
    RecentIds ids(1 << 20);
    for (uint64_t n = 0; n < (1u << 20) + 1000; ++n) ids.insert(id_of(n, 0x42));
    EXPECT_EQ(ids.size(), size_t(1) << 20);
    for (uint64_t n = 0; n < 1000; ++n) ASSERT_FALSE(ids.contains(id_of(n, 0x42))) << n;
    for (uint64_t n = 1000; n < (1u << 20) + 1000; n += 997) ASSERT_TRUE(ids.contains(id_of(n, 0x42))) << n;
}
