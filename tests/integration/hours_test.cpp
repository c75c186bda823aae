// The common operating window across real hosts: outside it, a type ruled "queue" waits in the
// sender's outbox and goes when the window opens; a type ruled "refuse" comes back as a fault
// naming the window and its next opening.
#include "collector.hpp"
#include "network.hpp"

#include <gtest/gtest.h>

#include <atomic>

using namespace renkei;
using namespace renkei::test;
using namespace std::chrono_literals;

namespace {

constexpr int64_t kHour = 3'600'000;
constexpr int64_t kMon23Midnight = 1795359600000; // 2026-11-23T00:00+09:00, 勤労感謝の日

std::string send(Host& from, const std::string& origin, const std::string& type) {
    return submit_new(from, origin, type, "pref:13");
}

} // namespace

TEST(Hours, OutsideTheWindowQueuedTypesWaitAndRefusedTypesFault) {
    TempDir tmp;
    Network net(tmp);
    std::atomic<int64_t> now{kMon23Midnight + 10 * kHour}; // a holiday, 10:00 JST
    net.clock = [&] { return now.load(); };
    auto sink = std::make_shared<Collector>("sink", std::vector<std::string>{"hours.Update", "hours.Query"});
    net.start({"pref:13", true, {}, {{"muni:131016", {}}}});
    net["pref:13"].add_endpoint(sink->endpoint());
    net.start({"muni:131016", false, {}, {{"pref:13", {"*"}}}}, [](HostConfig& c) {
        c.calendar.holidays = {"2026-11-23"};
        c.hours = {HoursRule{"hours.Update", true}, HoursRule{"hours.Query", false}};
    });
    auto& muni = net["muni:131016"];
    Collector client("client", {"hours.Update.Fault", "hours.Query.Fault"});
    muni.add_endpoint(client.endpoint());

    auto queued = send(muni, client.name(), "hours.Update");
    auto refused = send(muni, client.name(), "hours.Query");
    auto faults = client.wait_for(1, 10s);
    ASSERT_EQ(faults.size(), 1u);
    EXPECT_EQ(faults[0].type, "hours.Query.Fault");
    EXPECT_EQ(faults[0].correlation, refused);
    EXPECT_EQ(faults[0].fault_code, RENKEI_ERR_DENIED);
    EXPECT_NE(faults[0].fault_message.find("common operating window (mon,tue,wed,thu,fri 08:30-17:15 UTC+09:00"),
              std::string::npos) << faults[0].fault_message;
    EXPECT_NE(faults[0].fault_message.find("next open 2026-11-24T08:30+09:00"), std::string::npos)
        << faults[0].fault_message;

    // The queued update is held in the outbox, not delivered, however long we wait.
    std::this_thread::sleep_for(1s);
    EXPECT_TRUE(sink->all().empty());
    EXPECT_EQ(muni.links_pending(), 1u);
    // The audit trail says so, and until when.
    auto trail = audit_trail(muni);
    auto held = trail.find("\theld\t" + queued + "\thours.Update\tmuni:131016\tpref:13\t");
    ASSERT_NE(held, std::string::npos) << trail;
    EXPECT_NE(trail.find("to pref:13 via pref:13: held until the operating window opens at 2026-11-24T08:30+09:00", held),
              std::string::npos) << trail;

    // Tuesday 08:30: the window opens and the held update goes, once.
    now = kMon23Midnight + 24 * kHour + 8 * kHour + 30 * 60'000;
    auto got = sink->wait_for(1, 10s);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].type, "hours.Update");
    EXPECT_EQ(got[0].id, queued);
    for (int i = 0; i < 100 && muni.links_pending(); ++i) std::this_thread::sleep_for(50ms);
    EXPECT_EQ(muni.links_pending(), 0u);

    // Inside the window a refused type goes through.
    send(muni, client.name(), "hours.Query");
    got = sink->wait_for(2, 10s);
    ASSERT_EQ(got.size(), 2u);
    EXPECT_EQ(got[1].type, "hours.Query");
    EXPECT_EQ(client.all().size(), 1u);
}
