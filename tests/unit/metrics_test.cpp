// Metrics: a thread remembers the counters it asked for last, so a repeated lookup takes no lock.
// That memory must never hand one registry's counters to another, not even to one made later at
// the same address.
#include <renkei/metrics.hpp>

#include <gtest/gtest.h>

#include <memory>
#include <thread>

using namespace renkei;

TEST(Metrics, ARepeatedLookupFindsTheSameCountersAndAnotherPairItsOwn) {
    Metrics m;
    auto& a = m.counters("juki.query", "juki");
    a.in += 3;
    EXPECT_EQ(&m.counters("juki.query", "juki"), &a);
    EXPECT_EQ(m.counters("juki.query", "juki").in.load(), 3u);
    EXPECT_EQ(m.counters("juki.query", "fuhyo").in.load(), 0u);
    EXPECT_EQ(m.counters("juki.reply", "juki").in.load(), 0u);
    EXPECT_EQ(&m.counters("juki.query", "juki"), &a);
    for (int i = 0; i < 10; ++i) // more pairs than a thread remembers
        EXPECT_EQ(m.counters("t" + std::to_string(i), "juki").in.load(), 0u);
    EXPECT_EQ(&m.counters("juki.query", "juki"), &a);
    std::thread([&] { EXPECT_EQ(&m.counters("juki.query", "juki"), &a); }).join();
    EXPECT_NE(m.render().find("renkei_messages_in_total{type=\"juki.query\",plugin=\"juki\"} 3"), std::string::npos)
        << m.render();
}

TEST(Metrics, CountersOfOneRegistryAreNeverHandedToAnother) {
    auto first = std::make_unique<Metrics>();
    first->counters("t", "p").in += 5;
    Metrics other;
    EXPECT_EQ(other.counters("t", "p").in.load(), 0u);
    // Made after the first is gone, a registry may well get its address: still counters of its own.
    first->counters("t", "p").in += 1;
    first.reset();
    auto next = std::make_unique<Metrics>();
    EXPECT_EQ(next->counters("t", "p").in.load(), 0u);
    next->counters("t", "p").out += 2;
    EXPECT_EQ(next->counters("t", "p").out.load(), 2u);
    EXPECT_EQ(other.counters("t", "p").out.load(), 0u);
}
