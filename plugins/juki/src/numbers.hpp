// 個人番号 generation at J-LIS (番号法8条): a 12-digit number per 住民票コード that is unique, never
// reused, carries the check digit of 施行規則5条, and cannot be derived from the 住民票コード by
// anyone without J-LIS's secret (HMAC-SHA256 under it). A retried request gets the same answer; a
// change (番号法7条2項) issues a new number and keeps the old one in the history.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

struct sqlite3;
struct sqlite3_stmt;

namespace renkei::juki {

struct Assignment {
    std::string my_number;
    std::string previous;   // for a change: the number replaced
    uint32_t generation = 0;
};

class NumberRegistry {
public:
    // Opens (creating) the SQLite store; `secret` must be at least 32 bytes.
    NumberRegistry(const std::filesystem::path& store, std::vector<uint8_t> secret);
    ~NumberRegistry();
    NumberRegistry(const NumberRegistry&) = delete;
    NumberRegistry& operator=(const NumberRegistry&) = delete;

    sqlite3* db() { return db_; } // for sql::Tx around many assignments

    // Answers request `request_id` (hex message id). The same request id always gets the same
    // answer; without `change`, every request for a code that has a number gets that number.
    Assignment assign(const std::string& request_id, const std::string& resident_code, bool change,
                      const std::string& reason, int64_t now_ms);
    // Numbers ever issued to `resident_code`, oldest first.
    std::vector<std::string> history(const std::string& resident_code);
    // The current number of `resident_code`, if any.
    std::optional<std::string> current(const std::string& resident_code);
    // The 住民票コード a number was issued to (now or before a change), if it was ever issued.
    std::optional<std::string> holder(const std::string& my_number);
    // 住民票コード変更 (住基法30条の4): the person's numbers follow them to the new code.
    void change_code(const std::string& old_code, const std::string& new_code, int64_t now_ms);

private:
    std::string candidate(const std::string& resident_code, uint32_t generation, uint32_t counter) const;

    sqlite3* db_ = nullptr;
    sqlite3_stmt* current_ = nullptr;
    std::vector<uint8_t> secret_;
};

} // namespace renkei::juki
