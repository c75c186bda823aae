// Small SQLite helpers shared by juki's stores: prepared statements that throw with the
// database's message, and a transaction that rolls back unless committed.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace renkei::juki::sql {

[[noreturn]] inline void fail(sqlite3* db, const char* what) {
    throw std::runtime_error(std::string("juki store: ") + what + ": " + sqlite3_errmsg(db));
}

// Opens (creating its directory) a WAL database; `pragmas` run once.
inline sqlite3* open(const std::filesystem::path& file, const char* pragmas) {
    if (file.has_parent_path()) std::filesystem::create_directories(file.parent_path());
    sqlite3* db = nullptr;
    if (sqlite3_open(file.c_str(), &db) != SQLITE_OK) {
        std::string why = db ? sqlite3_errmsg(db) : "out of memory";
        sqlite3_close(db);
        throw std::runtime_error(file.string() + ": " + why);
    }
    sqlite3_busy_timeout(db, 5000);
    char* err = nullptr;
    if (sqlite3_exec(db, pragmas, nullptr, nullptr, &err) != SQLITE_OK) {
        std::string why = err ? err : "unknown";
        sqlite3_free(err);
        sqlite3_close(db);
        throw std::runtime_error(file.string() + ": " + why);
    }
    return db;
}

inline void exec(sqlite3* db, const char* text) {
    char* err = nullptr;
    if (sqlite3_exec(db, text, nullptr, nullptr, &err) != SQLITE_OK) {
        std::string why = err ? err : "unknown";
        sqlite3_free(err);
        throw std::runtime_error("juki store: " + why);
    }
}

// A prepared statement. Owned (finalised on destruction) or borrowed from a Cache (reset).
class Stmt {
public:
    Stmt(sqlite3* db, const char* text) : owned_(true) {
        if (sqlite3_prepare_v2(db, text, -1, &s_, nullptr) != SQLITE_OK) fail(db, text);
    }
    explicit Stmt(sqlite3_stmt* cached) : s_(cached), owned_(false) {}
    ~Stmt() {
        if (owned_) {
            sqlite3_finalize(s_);
        } else {
            sqlite3_reset(s_);
            sqlite3_clear_bindings(s_);
        }
    }
    Stmt(const Stmt&) = delete;
    Stmt& operator=(const Stmt&) = delete;

    Stmt& text(int i, std::string_view v) {
        sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
        return *this;
    }
    // Bound without a copy: the bytes must stay as they are until the statement has run.
    Stmt& text_ref(int i, std::string_view v) {
        sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
        return *this;
    }
    Stmt& blob_ref(int i, const void* data, size_t size) {
        sqlite3_bind_blob(s_, i, size ? data : "", static_cast<int>(size), SQLITE_STATIC);
        return *this;
    }
    Stmt& integer(int i, int64_t v) {
        sqlite3_bind_int64(s_, i, v);
        return *this;
    }
    Stmt& blob(int i, const void* data, size_t size) {
        if (size == 0)
            sqlite3_bind_zeroblob(s_, i, 0); // an empty value, not NULL
        else
            sqlite3_bind_blob(s_, i, data, static_cast<int>(size), SQLITE_TRANSIENT);
        return *this;
    }
    bool row() {
        int rc = sqlite3_step(s_);
        if (rc == SQLITE_ROW) return true;
        if (rc == SQLITE_DONE) return false;
        fail(sqlite3_db_handle(s_), sqlite3_sql(s_));
    }
    void run() { row(); }
    std::string col(int i) {
        auto* p = sqlite3_column_text(s_, i);
        return p ? std::string(reinterpret_cast<const char*>(p), sqlite3_column_bytes(s_, i)) : std::string();
    }
    int64_t num(int i) { return sqlite3_column_int64(s_, i); }
    bool null(int i) { return sqlite3_column_type(s_, i) == SQLITE_NULL; }
    std::vector<uint8_t> bytes(int i) {
        auto* p = static_cast<const uint8_t*>(sqlite3_column_blob(s_, i));
        return p ? std::vector<uint8_t>(p, p + sqlite3_column_bytes(s_, i)) : std::vector<uint8_t>();
    }

private:
    sqlite3_stmt* s_ = nullptr;
    bool owned_;
};

// The steps of Tx for the stores' transaction() (transaction.hpp): begin returns whether it is a
// savepoint inside an open transaction.
inline bool begin(sqlite3* db, bool read) {
    bool nested = sqlite3_get_autocommit(db) == 0;
    const char* text = nested ? "SAVEPOINT tx" : read ? "BEGIN" : "BEGIN IMMEDIATE";
    if (sqlite3_exec(db, text, nullptr, nullptr, nullptr) != SQLITE_OK) fail(db, "BEGIN");
    return nested;
}
inline void commit(sqlite3* db, bool nested) {
    if (sqlite3_exec(db, nested ? "RELEASE tx" : "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) fail(db, "COMMIT");
}
inline void rollback(sqlite3* db, bool nested) noexcept {
    sqlite3_exec(db, nested ? "ROLLBACK TO tx; RELEASE tx" : "ROLLBACK", nullptr, nullptr, nullptr);
}

// Rolls back unless committed. Inside another transaction it is a savepoint of it.
class Tx {
public:
    enum Kind { Write, Read }; // Read: a snapshot for several reads (BEGIN DEFERRED), no write lock
    explicit Tx(sqlite3* db, Kind kind = Write) : db_(db), nested_(sqlite3_get_autocommit(db) == 0) {
        const char* begin = nested_ ? "SAVEPOINT tx" : kind == Read ? "BEGIN" : "BEGIN IMMEDIATE";
        if (sqlite3_exec(db_, begin, nullptr, nullptr, nullptr) != SQLITE_OK) fail(db_, "BEGIN");
    }
    void commit() {
        if (sqlite3_exec(db_, nested_ ? "RELEASE tx" : "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK)
            fail(db_, "COMMIT");
        done_ = true;
    }
    ~Tx() {
        if (!done_) sqlite3_exec(db_, nested_ ? "ROLLBACK TO tx; RELEASE tx" : "ROLLBACK", nullptr, nullptr, nullptr);
    }
    Tx(const Tx&) = delete;
    Tx& operator=(const Tx&) = delete;

private:
    sqlite3* db_;
    bool nested_;
    bool done_ = false;
};

} // namespace renkei::juki::sql
