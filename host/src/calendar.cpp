#include <renkei/calendar.hpp>

#include <cstdio>
#include <cstdlib>
#include <ctime>

namespace renkei {
namespace {

constexpr int64_t kDayMs = 86'400'000;

int64_t floor_div(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

std::string date_of(int64_t local_day) {
    std::time_t t = local_day * 86400;
    std::tm tm{};
    gmtime_r(&t, &tm);
    char b[16];
    std::strftime(b, sizeof b, "%Y-%m-%d", &tm);
    return b;
}

int weekday_of(int64_t local_day) { return static_cast<int>(((local_day % 7) + 7 + 4) % 7); } // 1970-01-01 was a Thursday

} // namespace

OperatingCalendar::OperatingCalendar(CalendarConfig c) : c_(std::move(c)) {}

int64_t OperatingCalendar::day_start(int64_t local_day) const {
    return local_day * kDayMs - int64_t(c_.utc_offset_minutes) * 60'000;
}

bool OperatingCalendar::operating_day(int64_t unix_ms) const {
    int64_t day = floor_div(unix_ms + int64_t(c_.utc_offset_minutes) * 60'000, kDayMs);
    return c_.weekdays.count(weekday_of(day)) && !c_.holidays.count(date_of(day));
}

bool OperatingCalendar::open_at(int64_t unix_ms) const {
    int64_t local = unix_ms + int64_t(c_.utc_offset_minutes) * 60'000;
    int64_t minute = (local - floor_div(local, kDayMs) * kDayMs) / 60'000;
    return operating_day(unix_ms) && minute >= c_.open_minute && minute < c_.close_minute;
}

int64_t OperatingCalendar::next_open(int64_t unix_ms) const {
    if (open_at(unix_ms)) return unix_ms;
    int64_t day = floor_div(unix_ms + int64_t(c_.utc_offset_minutes) * 60'000, kDayMs);
    for (int i = 0; i < 400; ++i, ++day) {
        int64_t open = day_start(day) + int64_t(c_.open_minute) * 60'000;
        if (open >= unix_ms && open_at(open)) return open;
    }
    return INT64_MAX; // no operating day within a year: the window never opens
}

int64_t OperatingCalendar::next_business_start(int64_t unix_ms) const {
    int64_t day = floor_div(unix_ms + int64_t(c_.utc_offset_minutes) * 60'000, kDayMs) + 1;
    for (int i = 0; i < 400; ++i, ++day) {
        int64_t open = day_start(day) + int64_t(c_.open_minute) * 60'000;
        if (operating_day(open)) return open;
    }
    return INT64_MAX;
}

std::string OperatingCalendar::describe() const {
    static const char* names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};
    std::string days;
    for (int d : c_.weekdays) days += (days.empty() ? "" : ",") + std::string(names[d]);
    char b[96];
    int off = c_.utc_offset_minutes;
    std::snprintf(b, sizeof b, " %02d:%02d-%02d:%02d UTC%c%02d:%02d", c_.open_minute / 60, c_.open_minute % 60,
                  c_.close_minute / 60, c_.close_minute % 60, off < 0 ? '-' : '+', std::abs(off) / 60,
                  std::abs(off) % 60);
    return days + b + (c_.holidays.empty() ? "" : " except " + std::to_string(c_.holidays.size()) + " holidays");
}

std::string OperatingCalendar::local_time(int64_t unix_ms) const {
    int off = c_.utc_offset_minutes;
    std::time_t t = (unix_ms + int64_t(off) * 60'000) / 1000;
    std::tm tm{};
    gmtime_r(&t, &tm);
    char b[48];
    std::strftime(b, sizeof b, "%Y-%m-%dT%H:%M", &tm);
    char z[16];
    std::snprintf(z, sizeof z, "%c%02d:%02d", off < 0 ? '-' : '+', std::abs(off) / 60, std::abs(off) % 60);
    return std::string(b) + z;
}

} // namespace renkei
