// The operating calendar: days, holidays, the window, and the next business start.
#include <renkei/calendar.hpp>

#include <gtest/gtest.h>

using namespace renkei;

namespace {
// Local (JST) wall-clock instants in unix ms. 2026-11-20 is a Friday, 2026-11-23 a Monday.
constexpr int64_t kMin = 60'000, kHour = 60 * kMin, kDay = 24 * kHour;
constexpr int64_t kFri20Midnight = 1795100400000; // 2026-11-20T00:00+09:00
int64_t jst(int day_offset, int hour, int minute = 0) { return kFri20Midnight + day_offset * kDay + hour * kHour + minute * kMin; }

OperatingCalendar japan() {
    CalendarConfig c; // mon-fri 08:30-17:15 UTC+09:00
    c.holidays = {"2026-11-23"}; // 勤労感謝の日
    return OperatingCalendar(c);
}
} // namespace

TEST(Calendar, WindowIsOpenOnlyOnOperatingDaysBetweenOpenAndClose) {
    auto cal = japan();
    EXPECT_EQ(cal.local_time(jst(0, 9)), "2026-11-20T09:00+09:00");
    EXPECT_TRUE(cal.open_at(jst(0, 8, 30)));
    EXPECT_TRUE(cal.open_at(jst(0, 17, 14)));
    EXPECT_FALSE(cal.open_at(jst(0, 17, 15))); // close is exclusive
    EXPECT_FALSE(cal.open_at(jst(0, 8, 29)));
    EXPECT_FALSE(cal.open_at(jst(1, 10)));      // Saturday
    EXPECT_FALSE(cal.open_at(jst(3, 10)));      // Monday, a holiday
    EXPECT_TRUE(cal.open_at(jst(4, 10)));       // Tuesday
    EXPECT_FALSE(cal.operating_day(jst(3, 10)));
    EXPECT_TRUE(cal.operating_day(jst(4, 0)));
}

TEST(Calendar, NextOpenSkipsNightsWeekendsAndHolidays) {
    auto cal = japan();
    EXPECT_EQ(cal.next_open(jst(0, 10)), jst(0, 10));                   // open now
    EXPECT_EQ(cal.local_time(cal.next_open(jst(0, 18))), "2026-11-24T08:30+09:00"); // Fri evening -> Tue
    EXPECT_EQ(cal.local_time(cal.next_open(jst(4, 7))), "2026-11-24T08:30+09:00");  // Tue early morning
    EXPECT_EQ(cal.local_time(cal.next_open(jst(4, 18))), "2026-11-25T08:30+09:00");
    // The night crosses UTC midnight at 09:00 JST; the local date is what counts.
    EXPECT_EQ(cal.local_time(cal.next_open(jst(4, 8, 59) - 9 * kHour)), "2026-11-24T08:30+09:00");
}

TEST(Calendar, NextBusinessStartIsTheNextOperatingDaysOpening) {
    auto cal = japan();
    // An update recorded Friday afternoon is due before business starts on Tuesday (Mon is a holiday).
    EXPECT_EQ(cal.local_time(cal.next_business_start(jst(0, 15))), "2026-11-24T08:30+09:00");
    EXPECT_EQ(cal.local_time(cal.next_business_start(jst(4, 1))), "2026-11-25T08:30+09:00");
}

TEST(Calendar, WindowThatNeverOpensSaysSo) {
    CalendarConfig c;
    c.weekdays.clear();
    OperatingCalendar never(c);
    EXPECT_EQ(never.next_open(jst(0, 10)), INT64_MAX);
    EXPECT_EQ(japan().describe(), "mon,tue,wed,thu,fri 08:30-17:15 UTC+09:00 except 1 holidays");
}
