#include "renkei/sqlite.hpp"

#include <sqlite3.h>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace renkei::sqlite {

Error::Error(const std::string& path, std::string_view operation, std::string_view detail)
    : std::runtime_error("sqlite database '" + path + "': " + std::string(operation) + ": " +
                         std::string(detail)) {}

namespace {

// Stored messages carry personal data: a new database file is private to the owner. SQLite gives
// its -wal and -shm files the permissions of the main file.
void create_private_file(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) throw Error(path, "create file", std::strerror(errno));
    ::close(fd);
}

// SQLite keeps memory statistics by default, behind one process-wide mutex taken on every
// allocation and free. A host runs SQLite on many threads at once (outbox, dedup, audit, plugin
// stores, juki's stores), and profiles of the juki chain showed the tiers' workers queueing on
// that mutex. Nothing here reads the statistics (no soft heap limit), so they are turned off
// before SQLite is first used (sqlite3_config only works before sqlite3_initialize).
[[maybe_unused]] const int kMemoryStatisticsOff = [] {
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    return 0;
}();

} // namespace

Database::Database(const std::filesystem::path& path, const OpenOptions& options)
    : path_(path.string()) {
    if (path_.empty()) throw Error(path_, "open", "the path is empty");
    create_private_file(path_);
    int rc = sqlite3_open_v2(path_.c_str(), &db_,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr);
    if (rc != SQLITE_OK) {
        std::string detail = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
        sqlite3_close(db_);
        db_ = nullptr;
        throw Error(path_, "open", detail);
    }
    sqlite3_extended_result_codes(db_, 1);
    try {
        if (options.busy_timeout_ms < 0) throw Error(path_, "open", "busy_timeout_ms must be >= 0");
        sqlite3_busy_timeout(db_, options.busy_timeout_ms);
        // Before the first access in WAL mode, or SQLite sets up the shared-memory index anyway.
        if (options.exclusive) exec("PRAGMA locking_mode=EXCLUSIVE", "set exclusive locking");
        // WAL can be refused (e.g. on some network file systems); running without it would
        // silently change both the durability and the concurrency this store promises.
        auto mode = prepare("PRAGMA journal_mode=WAL", "enable WAL journal");
        if (!mode.step() || mode.column_text(0) != "wal")
            throw Error(path_, "enable WAL journal", "the file system refused WAL mode");
        mode.reset();
        exec(options.durability == Durability::power_loss ? "PRAGMA synchronous=FULL"
                                                          : "PRAGMA synchronous=NORMAL",
             "set synchronous");
        // Queues and indexes are read back soon after they are written: keep them in memory
        // (32 MiB page cache, reads through mmap) instead of a pread per page.
        exec("PRAGMA cache_size=-32768; PRAGMA mmap_size=268435456; PRAGMA temp_store=MEMORY",
             "set cache sizes");
        // Checkpoint every 8,192 WAL pages (not SQLite's 1,000): a queue's pages are written and
        // freed again within moments, so most never need copying into the file more than once.
        exec("PRAGMA wal_autocheckpoint=8192; PRAGMA journal_size_limit=67108864", "set checkpoint interval");
    } catch (...) {
        sqlite3_close(db_);
        db_ = nullptr;
        throw;
    }
}

Database::~Database() {
    // Statements are owned by their users and must be finalised first; close_v2 tolerates
    // stragglers by deferring the close until they are.
    if (db_) sqlite3_close_v2(db_);
}

void Database::fail(int rc, std::string_view operation) const {
    std::string detail = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
    throw Error(path_, operation, detail);
}

void Database::exec(std::string_view sql, std::string_view operation) {
    std::string text(sql);
    char* message = nullptr;
    int rc = sqlite3_exec(db_, text.c_str(), nullptr, nullptr, &message);
    if (rc != SQLITE_OK) {
        std::string detail = message ? message : sqlite3_errstr(rc);
        sqlite3_free(message);
        throw Error(path_, operation, detail);
    }
}

Statement Database::prepare(std::string_view sql, std::string_view operation) {
    sqlite3_stmt* stmt = nullptr;
    int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()),
                                SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
    if (rc != SQLITE_OK) fail(rc, operation);
    return Statement(*this, stmt, std::string(operation));
}

int64_t Database::changes() const { return sqlite3_changes64(db_); }

int64_t Database::last_insert_rowid() const { return sqlite3_last_insert_rowid(db_); }

Statement::Statement(const Database& db, sqlite3_stmt* stmt, std::string operation)
    : db_(&db), stmt_(stmt), operation_(std::move(operation)) {}

Statement::Statement(Statement&& other) noexcept
    : db_(other.db_), stmt_(std::exchange(other.stmt_, nullptr)),
      operation_(std::move(other.operation_)) {}

Statement& Statement::operator=(Statement&& other) noexcept {
    if (this != &other) {
        sqlite3_finalize(stmt_);
        db_ = other.db_;
        stmt_ = std::exchange(other.stmt_, nullptr);
        operation_ = std::move(other.operation_);
    }
    return *this;
}

Statement::~Statement() { sqlite3_finalize(stmt_); }

void Statement::check_bind(int rc) {
    if (rc != SQLITE_OK) db_->fail(rc, operation_ + " (bind)");
}

Statement& Statement::bind(int index, int64_t value) {
    check_bind(sqlite3_bind_int64(stmt_, index, value));
    return *this;
}

Statement& Statement::bind_text(int index, std::string_view value) {
    check_bind(sqlite3_bind_text64(stmt_, index, value.data(), value.size(), SQLITE_TRANSIENT,
                                   SQLITE_UTF8));
    return *this;
}

Statement& Statement::bind_blob(int index, std::span<const uint8_t> value) {
    // A null pointer would bind NULL rather than an empty blob.
    static const uint8_t empty = 0;
    check_bind(sqlite3_bind_blob64(stmt_, index, value.empty() ? &empty : value.data(),
                                   value.size(), SQLITE_TRANSIENT));
    return *this;
}

Statement& Statement::bind_null(int index) {
    check_bind(sqlite3_bind_null(stmt_, index));
    return *this;
}

bool Statement::step() {
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    // Reset so the statement is reusable after the caller handles the error.
    std::string detail = sqlite3_errmsg(db_->handle());
    sqlite3_reset(stmt_);
    throw Error(db_->path(), operation_, detail);
}

void Statement::run() {
    while (step()) {
    }
    reset();
}

void Statement::reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
}

int64_t Statement::column_int64(int column) const { return sqlite3_column_int64(stmt_, column); }

std::string Statement::column_text(int column) const {
    auto* text = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, column));
    int size = sqlite3_column_bytes(stmt_, column);
    return text ? std::string(text, static_cast<size_t>(size)) : std::string();
}

std::span<const uint8_t> Statement::column_blob_view(int column) const {
    auto* data = static_cast<const uint8_t*>(sqlite3_column_blob(stmt_, column));
    int size = sqlite3_column_bytes(stmt_, column);
    return data ? std::span<const uint8_t>(data, static_cast<size_t>(size))
                : std::span<const uint8_t>();
}

std::vector<uint8_t> Statement::column_blob(int column) const {
    auto view = column_blob_view(column);
    return std::vector<uint8_t>(view.begin(), view.end());
}

bool Statement::column_is_null(int column) const {
    return sqlite3_column_type(stmt_, column) == SQLITE_NULL;
}

Transaction::Transaction(Database& db) : db_(db) { db_.exec("BEGIN IMMEDIATE", "begin transaction"); }

Transaction::~Transaction() {
    if (!done_) {
        // Best effort: if ROLLBACK itself fails SQLite has already rolled back (or will, when the
        // connection closes); a destructor must not throw.
        sqlite3_exec(db_.handle(), "ROLLBACK", nullptr, nullptr, nullptr);
    }
}

void Transaction::commit() {
    db_.exec("COMMIT", "commit transaction");
    done_ = true;
}

} // namespace renkei::sqlite
