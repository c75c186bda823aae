// A small SQLite wrapper for the adapters' own files (feed, batches, quotas): WAL, full sync,
// secure_delete (acknowledged personal data is overwritten, not just unlinked), busy timeout.
// Not thread-safe by itself: each adapter serialises access with its own mutex.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace renkei::http::sql {

class Error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

class Db {
public:
    explicit Db(const std::filesystem::path& file);
    ~Db();
    Db(const Db&) = delete;
    Db& operator=(const Db&) = delete;
    void exec(const std::string& sql);
    int64_t changes() const { return sqlite3_changes64(db_); }
    int64_t last_id() const { return sqlite3_last_insert_rowid(db_); }
    sqlite3* raw() const { return db_; }

private:
    sqlite3* db_ = nullptr;
};

class Stmt {
public:
    Stmt(Db& db, const char* sql);
    ~Stmt();
    Stmt(const Stmt&) = delete;
    Stmt& operator=(const Stmt&) = delete;
    Stmt& bind(int i, int64_t v);
    Stmt& bind(int i, const std::string& v);
    Stmt& bind_blob(int i, const std::vector<uint8_t>& v);
    Stmt& bind_null(int i);
    // True while a row is available; false when done. Throws on error.
    bool step();
    void run() { step(); }
    int64_t integer(int col) const { return sqlite3_column_int64(s_, col); }
    bool null(int col) const { return sqlite3_column_type(s_, col) == SQLITE_NULL; }
    std::string text(int col) const;
    std::vector<uint8_t> blob(int col) const;

private:
    Db& db_;
    sqlite3_stmt* s_ = nullptr;
};

// BEGIN IMMEDIATE ... COMMIT; rolled back unless committed.
class Tx {
public:
    explicit Tx(Db& db) : db_(db) { db_.exec("BEGIN IMMEDIATE"); }
    ~Tx() {
        if (!done_) sqlite3_exec(db_.raw(), "ROLLBACK", nullptr, nullptr, nullptr);
    }
    void commit() {
        db_.exec("COMMIT");
        done_ = true;
    }

private:
    Db& db_;
    bool done_ = false;
};

} // namespace renkei::http::sql
