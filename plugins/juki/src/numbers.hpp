// 個人番号 generation at J-LIS (番号法8条): a 12-digit number per 住民票コード that is unique, never
// reused, carries the check digit of 施行規則5条, and cannot be derived from the 住民票コード by
// anyone without J-LIS's secret (HMAC-SHA256 under it). A retried request gets the same answer; a
// change (番号法7条2項) issues a new number and keeps the old one in the history.
#pragma once

#include "transaction.hpp"

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

// The registry, whichever backend: a SQLite file (NumberRegistry) or a PostgreSQL schema
// (PgNumberRegistry, pg_store.hpp). The numbers come from the same HMAC either way.
class Numbers : public Transactional {
public:
    // Answers request `request_id` (hex message id). The same request id always gets the same
    // answer; without `change`, every request for a code that has a number gets that number.
    virtual Assignment assign(const std::string& request_id, const std::string& resident_code, bool change,
                              const std::string& reason, int64_t now_ms) = 0;
    // Numbers ever issued to `resident_code`, oldest first.
    virtual std::vector<std::string> history(const std::string& resident_code) = 0;
    // The current number of `resident_code`, if any.
    virtual std::optional<std::string> current(const std::string& resident_code) = 0;
    // A hint inside a transaction, as Store::prefetch: current() will be asked for these codes.
    // PostgreSQL reads them all now and answers current() from that until the code is assigned or
    // changed or the transaction ends; the default does nothing.
    virtual void prefetch(const std::vector<std::string>& resident_codes) { (void)resident_codes; }
    // The 住民票コード a number was issued to (now or before a change), if it was ever issued.
    virtual std::optional<std::string> holder(const std::string& my_number) = 0;
    // 住民票コード変更 (住基法30条の4): the person's numbers follow them to the new code.
    virtual void change_code(const std::string& old_code, const std::string& new_code, int64_t now_ms) = 0;
    virtual std::string describe() const = 0;

protected:
    // `secret` must be at least 32 bytes.
    explicit Numbers(std::vector<uint8_t> secret);
    // The candidate number `counter` of `generation` for a code (HMAC-SHA256 under the secret).
    std::string candidate(const std::string& resident_code, uint32_t generation, uint32_t counter) const;

private:
    std::vector<uint8_t> secret_;
};

// The SQLite registry: one file (WAL).
class NumberRegistry final : public Numbers {
public:
    // Opens (creating) the SQLite store; `secret` must be at least 32 bytes.
    NumberRegistry(const std::filesystem::path& store, std::vector<uint8_t> secret);
    ~NumberRegistry() override;
    NumberRegistry(const NumberRegistry&) = delete;
    NumberRegistry& operator=(const NumberRegistry&) = delete;

    sqlite3* db() { return db_; } // for sql::Tx around many assignments

    Assignment assign(const std::string& request_id, const std::string& resident_code, bool change,
                      const std::string& reason, int64_t now_ms) override;
    std::vector<std::string> history(const std::string& resident_code) override;
    std::optional<std::string> current(const std::string& resident_code) override;
    std::optional<std::string> holder(const std::string& my_number) override;
    void change_code(const std::string& old_code, const std::string& new_code, int64_t now_ms) override;
    std::string describe() const override { return "SQLite " + file_.string(); }

protected:
    bool tx_begin(TxKind kind) override;
    void tx_commit(bool nested) override;
    void tx_rollback(bool nested) noexcept override;

private:
    sqlite3* db_ = nullptr;
    sqlite3_stmt* current_ = nullptr;
    std::filesystem::path file_;
};

} // namespace renkei::juki
