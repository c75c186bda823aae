// DeliveryWakes: a thread handing over a run of deliveries wakes each endpoint's worker every
// kEvery deliveries and once at the end of the run, not once per delivery.
#include "test_support.hpp"

#include <renkei/local_endpoint.hpp>
#include <renkei/plugin_endpoint.hpp>

#include <gtest/gtest.h>

#include <condition_variable>
#include <mutex>
#include <thread>

using namespace renkei;
using namespace std::chrono_literals;

namespace {

// Counts, without a worker, how a delivery would have woken one: at once, or later by wake().
class CountingEndpoint : public PluginEndpoint {
public:
    const PluginInfo& info() const override { return info_; }
    const std::string& instance_name() const override { return info_.name; }
    void start() override {}
    void deliver(Delivery) override {
        ++delivered;
        if (DeliveryWakes::wake_now(*this)) ++woken_at_once;
    }
    void stop() override {}
    EndpointStatus status() const override { return {}; }
    void wake() noexcept override { ++woken_later; }

    unsigned delivered = 0, woken_at_once = 0, woken_later = 0;

private:
    PluginInfo info_{};
};

void deliver_n(PluginEndpoint& ep, unsigned n) {
    for (unsigned i = 0; i < n; ++i) ep.deliver(Delivery{});
}

} // namespace

TEST(DeliveryWakes, WithoutARunEveryDeliveryWakesAtOnce) {
    auto ep = std::make_shared<CountingEndpoint>();
    deliver_n(*ep, 5);
    EXPECT_EQ(ep->woken_at_once, 5u);
    EXPECT_EQ(ep->woken_later, 0u);
}

TEST(DeliveryWakes, ARunWakesEveryKEveryDeliveriesAndOnceWhenItEnds) {
    auto ep = std::make_shared<CountingEndpoint>();
    {
        DeliveryWakes run;
        deliver_n(*ep, DeliveryWakes::kEvery - 1);
        EXPECT_EQ(ep->woken_at_once, 0u);
        deliver_n(*ep, 1); // the kEvery-th: no delivery waits for more than kEvery - 1 after it
        EXPECT_EQ(ep->woken_at_once, 1u);
        deliver_n(*ep, DeliveryWakes::kEvery + 3);
        EXPECT_EQ(ep->woken_at_once, 2u);
        EXPECT_EQ(ep->woken_later, 0u);
    }
    EXPECT_EQ(ep->woken_later, 1u); // the last 3
    EXPECT_EQ(ep->delivered, 2 * DeliveryWakes::kEvery + 3);
}

TEST(DeliveryWakes, ARunEndingRightAfterAWakeDoesNotWakeAgain) {
    auto ep = std::make_shared<CountingEndpoint>();
    {
        DeliveryWakes run;
        deliver_n(*ep, DeliveryWakes::kEvery);
    }
    EXPECT_EQ(ep->woken_at_once, 1u);
    EXPECT_EQ(ep->woken_later, 0u);
}

TEST(DeliveryWakes, EachEndpointOfARunIsWokenOnceAtItsEnd) {
    auto a = std::make_shared<CountingEndpoint>(), b = std::make_shared<CountingEndpoint>();
    auto idle = std::make_shared<CountingEndpoint>();
    {
        DeliveryWakes run;
        for (int i = 0; i < 4; ++i) {
            a->deliver(Delivery{});
            b->deliver(Delivery{});
        }
    }
    EXPECT_EQ(a->woken_later, 1u);
    EXPECT_EQ(b->woken_later, 1u);
    EXPECT_EQ(idle->woken_later, 0u);
    EXPECT_EQ(a->woken_at_once + b->woken_at_once, 0u);
}

TEST(DeliveryWakes, ANestedRunLeavesTheWakesToTheOuterOne) {
    auto ep = std::make_shared<CountingEndpoint>();
    {
        DeliveryWakes outer;
        {
            DeliveryWakes inner;
            deliver_n(*ep, 2);
        }
        EXPECT_EQ(ep->woken_later, 0u);
        deliver_n(*ep, 1);
    }
    EXPECT_EQ(ep->woken_later, 1u);
    EXPECT_EQ(ep->woken_at_once, 0u);
}

TEST(DeliveryWakes, ARunOnAnotherThreadDoesNotHoldThisThreadsWakes) {
    auto ep = std::make_shared<CountingEndpoint>();
    std::mutex m;
    std::condition_variable cv;
    bool open = false, done = false;
    std::thread other([&] {
        DeliveryWakes run;
        std::unique_lock lock(m);
        open = true;
        cv.notify_all();
        cv.wait(lock, [&] { return done; });
    });
    {
        std::unique_lock lock(m);
        cv.wait(lock, [&] { return open; });
    }
    deliver_n(*ep, 3);
    EXPECT_EQ(ep->woken_at_once, 3u);
    {
        std::lock_guard lock(m);
        done = true;
        cv.notify_all();
    }
    other.join();
    EXPECT_EQ(ep->woken_later, 0u); // the other run never saw it
}

TEST(DeliveryWakes, AnEndpointNotOwnedByASharedPointerIsWokenAtOnce) {
    CountingEndpoint ep; // nothing could keep it alive until the run ends
    DeliveryWakes run;
    deliver_n(ep, 3);
    EXPECT_EQ(ep.woken_at_once, 3u);
}

// The real endpoint: what a run queued is handled once the run ends, and the first kEvery while it
// is still open.
TEST(DeliveryWakes, ALocalEndpointHandlesWhatARunQueued) {
    std::mutex m;
    std::condition_variable cv;
    unsigned handled = 0;
    auto ep = std::make_shared<LocalEndpoint>("sink", std::vector<std::string>{"t.T"},
                                              [&](const EnvelopeView&, std::string&) {
                                                  std::lock_guard lock(m);
                                                  ++handled;
                                                  cv.notify_all();
                                                  return RENKEI_OK;
                                              });
    ep->start();
    auto delivery = [] {
        capnp::MallocMessageBuilder mb;
        auto e = mb.initRoot<schema::Envelope>();
        auto id = new_message_id();
        e.setId(kj::ArrayPtr<const kj::byte>(id.data(), id.size()));
        e.setType("t.T");
        e.setFrom("a");
        e.setTo("b");
        Delivery d;
        d.envelope = capnp::messageToFlatArray(mb);
        d.type = "t.T";
        d.done = [](int32_t, const std::string&) {};
        return d;
    };
    auto wait_for = [&](unsigned n) {
        std::unique_lock lock(m);
        return cv.wait_for(lock, 10s, [&] { return handled >= n; });
    };
    {
        DeliveryWakes run;
        for (unsigned i = 0; i < DeliveryWakes::kEvery + 5; ++i) ep->deliver(delivery());
        EXPECT_TRUE(wait_for(DeliveryWakes::kEvery)) << "the kEvery-th delivery woke the worker";
    }
    EXPECT_TRUE(wait_for(DeliveryWakes::kEvery + 5)) << "the end of the run woke it for the rest";
    ep->stop();
}
