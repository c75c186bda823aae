// A minimal RAII layer over SQLite for the host's durable stores (outbox, inbox dedup, dead letters).
//
// Every error names the database file and the operation, never bound values: stored messages may
// carry personal data and must not reach logs through an exception text.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

struct sqlite3;
struct sqlite3_stmt;

namespace renkei::sqlite {

class Error : public std::runtime_error {
public:
    Error(const std::string& path, std::string_view operation, std::string_view detail);
};

// How far a commit is pushed towards the disk. Both are in WAL mode.
enum class Durability {
    // synchronous=NORMAL: a commit is in the WAL file (the OS page cache) when it returns, so it
    // survives the process being killed at any instant (SIGKILL, crash); the last commits may be
    // lost on power failure or an OS crash, as the WAL is fsynced only at checkpoints.
    process_crash,
    // synchronous=FULL: the WAL is fsynced on every commit, so commits also survive power loss.
    power_loss,
};

struct OpenOptions {
    Durability durability = Durability::process_crash;
    // How long a writer waits for another connection's write lock before failing.
    int busy_timeout_ms = 5000;
    // This connection is the file's only user while it is open (locking_mode=EXCLUSIVE): the
    // WAL index lives in its memory and no transaction takes a file lock (an fcntl call each);
    // any other connection, in this process or another, gets "database is locked".
    bool exclusive = false;
};

class Statement;

// One connection. Not thread-safe: the owner serialises access.
class Database {
public:
    // Opens (creating if needed) the file, switches it to WAL and applies `options`.
    Database(const std::filesystem::path& path, const OpenOptions& options = {});
    ~Database();
    Database(const Database&) = delete;
    Database& operator=(const Database&) = delete;

    // Runs one or more statements without results (schema, pragmas).
    void exec(std::string_view sql, std::string_view operation);
    // `operation` is what the statement is for ("insert outbox entry"); it appears in errors.
    Statement prepare(std::string_view sql, std::string_view operation);
    // Rows changed by the last INSERT/UPDATE/DELETE on this connection.
    int64_t changes() const;
    // Rowid of the last successful INSERT on this connection.
    int64_t last_insert_rowid() const;

    const std::string& path() const { return path_; }
    sqlite3* handle() const { return db_; }

    // Throws Error for a failed sqlite3_* call `rc` about `operation`.
    [[noreturn]] void fail(int rc, std::string_view operation) const;

private:
    std::string path_;
    sqlite3* db_ = nullptr;
};

// A prepared statement, reusable: bind, step until done, reset.
class Statement {
public:
    Statement(Statement&& other) noexcept;
    Statement& operator=(Statement&& other) noexcept;
    Statement(const Statement&) = delete;
    Statement& operator=(const Statement&) = delete;
    ~Statement();

    // Parameters are 1-based, as in SQLite. Text and blobs are copied, so temporaries are fine.
    Statement& bind(int index, int64_t value);
    Statement& bind_text(int index, std::string_view value);
    Statement& bind_blob(int index, std::span<const uint8_t> value);
    Statement& bind_null(int index);

    // Advances; true when a row is available, false when done.
    bool step();
    // Steps a statement that returns no rows.
    void run();
    // Clears the result state and bindings so the statement can be reused.
    void reset();

    // Columns are 0-based.
    int64_t column_int64(int column) const;
    std::string column_text(int column) const;
    std::vector<uint8_t> column_blob(int column) const;
    std::span<const uint8_t> column_blob_view(int column) const;  // valid until the next step/reset
    bool column_is_null(int column) const;

private:
    friend class Database;
    Statement(const Database& db, sqlite3_stmt* stmt, std::string operation);
    void check_bind(int rc);

    const Database* db_ = nullptr;
    sqlite3_stmt* stmt_ = nullptr;
    std::string operation_;
};

// BEGIN IMMEDIATE on construction (takes the write lock up front, so a transaction never fails
// half-way on a lock upgrade); ROLLBACK on destruction unless committed.
class Transaction {
public:
    explicit Transaction(Database& db);
    ~Transaction();
    Transaction(const Transaction&) = delete;
    Transaction& operator=(const Transaction&) = delete;
    void commit();

private:
    Database& db_;
    bool done_ = false;
};

} // namespace renkei::sqlite
