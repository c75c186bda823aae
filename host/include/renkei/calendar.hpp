// The common operating window (共通運用時間帯) and operating days (運用日): which days and hours
// the network exchanges a message type. Outside the window a message of a governed type is either
// queued (durably, in the outbox) until the window opens or refused with the next opening named.
// The same calendar gives "start of business on the next operating day", the deadline of
// 本人確認情報 updates.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

namespace renkei {

struct CalendarConfig {
    int utc_offset_minutes = 9 * 60;  // JST
    std::set<int> weekdays{1, 2, 3, 4, 5}; // 0 = Sunday .. 6 = Saturday
    std::set<std::string> holidays;   // "YYYY-MM-DD" (local dates)
    int open_minute = 8 * 60 + 30;    // minutes after local midnight
    int close_minute = 17 * 60 + 15;  // exclusive
};

struct HoursRule {
    std::string type;  // message type or "prefix.*"
    bool queue = true; // outside the window: true = hold until it opens, false = refuse
};

class OperatingCalendar {
public:
    explicit OperatingCalendar(CalendarConfig c = {});

    bool operating_day(int64_t unix_ms) const; // the local date is a weekday in `weekdays`, not a holiday
    bool open_at(int64_t unix_ms) const;       // an operating day, within [open, close)
    // The first instant at or after `unix_ms` when the window is open (unix_ms itself if open).
    int64_t next_open(int64_t unix_ms) const;
    // Start of business on the first operating day after the local date of `unix_ms`.
    int64_t next_business_start(int64_t unix_ms) const;
    // "mon-fri 08:30-17:15 UTC+09:00" for messages.
    std::string describe() const;
    std::string local_time(int64_t unix_ms) const; // "2026-11-23T08:30+09:00"

    const CalendarConfig& config() const { return c_; }

private:
    int64_t day_start(int64_t local_day) const; // unix ms of local midnight of day number
    CalendarConfig c_;
};

} // namespace renkei
