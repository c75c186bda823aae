#include "renkei/dead_letters.hpp"

#include <algorithm>
#include <cstring>
#include <limits>

namespace renkei {

namespace {

constexpr const char* kColumns = "id, peer, type, bytes, attempts, reason, queued_ms, dead_ms";

// A reason can come from a peer's refusal, so it is bounded; cut on a UTF-8 boundary.
constexpr size_t kMaxReasonBytes = 1024;

std::string_view bounded_reason(std::string_view reason) {
    if (reason.size() <= kMaxReasonBytes) return reason;
    size_t end = kMaxReasonBytes;
    while (end > 0 && (static_cast<unsigned char>(reason[end]) & 0xC0) == 0x80) --end;
    return reason.substr(0, end);
}

std::span<const uint8_t> id_bytes(const MessageId& id) { return {id.data(), id.size()}; }

DeadLetter read_row(const sqlite::Statement& row) {
    DeadLetter letter;
    auto id = row.column_blob_view(0);
    // The table only ever receives 16-byte ids (CHECK constraint); copy defensively anyway.
    std::memcpy(letter.id.data(), id.data(), std::min(id.size(), letter.id.size()));
    letter.peer = row.column_text(1);
    letter.type = row.column_text(2);
    letter.bytes = row.column_blob(3);
    letter.attempts = static_cast<int>(row.column_int64(4));
    letter.reason = row.column_text(5);
    letter.queued_ms = row.column_int64(6);
    letter.dead_ms = row.column_int64(7);
    return letter;
}

int64_t to_sql_count(size_t n) {
    return static_cast<int64_t>(std::min<size_t>(n, std::numeric_limits<int64_t>::max()));
}

} // namespace

namespace dead_letter_table {

void create(sqlite::Database& db) {
    db.exec("CREATE TABLE IF NOT EXISTS dead_letters ("
            " id BLOB NOT NULL PRIMARY KEY CHECK (length(id) = 16),"
            " peer TEXT NOT NULL,"
            " type TEXT NOT NULL,"
            " attempts INTEGER NOT NULL,"
            " reason TEXT NOT NULL,"
            " queued_ms INTEGER NOT NULL,"
            " dead_ms INTEGER NOT NULL,"
            " bytes BLOB NOT NULL);"
            "CREATE INDEX IF NOT EXISTS dead_letters_by_time ON dead_letters (dead_ms, id);",
            "create dead-letter table");
}

void insert(sqlite::Database& db, const DeadLetter& letter) {
    auto stmt = db.prepare(std::string("INSERT OR REPLACE INTO dead_letters (") + kColumns +
                               ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                           "insert dead letter");
    stmt.bind_blob(1, id_bytes(letter.id))
        .bind_text(2, letter.peer)
        .bind_text(3, letter.type)
        .bind_blob(4, letter.bytes)
        .bind(5, letter.attempts)
        .bind_text(6, bounded_reason(letter.reason))
        .bind(7, letter.queued_ms)
        .bind(8, letter.dead_ms);
    stmt.run();
}

std::optional<DeadLetter> take(sqlite::Database& db, const MessageId& id) {
    auto select = db.prepare(std::string("SELECT ") + kColumns + " FROM dead_letters WHERE id = ?1",
                             "read dead letter");
    select.bind_blob(1, id_bytes(id));
    if (!select.step()) return std::nullopt;
    DeadLetter letter = read_row(select);
    select.reset();
    auto remove = db.prepare("DELETE FROM dead_letters WHERE id = ?1", "delete dead letter");
    remove.bind_blob(1, id_bytes(id)).run();
    return letter;
}

sqlite::Statement prepare_delete_delivered(sqlite::Database& db) {
    return db.prepare("DELETE FROM dead_letters WHERE id = ?1 AND peer = ?2",
                      "delete delivered dead letter");
}

} // namespace dead_letter_table

namespace {

// The operator's view never creates a database: a mistyped path must be an error, not an
// empty list.
const std::filesystem::path& existing(const std::filesystem::path& path) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec))
        throw sqlite::Error(path.string(), "open dead letters", "no such database file");
    return path;
}

} // namespace

DeadLetters::DeadLetters(const std::filesystem::path& path, const sqlite::OpenOptions& options)
    : db_(existing(path), options) {
    dead_letter_table::create(db_);
}

std::vector<DeadLetter> DeadLetters::list(size_t limit, size_t offset) {
    std::lock_guard lock(mutex_);
    auto stmt = db_.prepare(std::string("SELECT ") + kColumns +
                                " FROM dead_letters ORDER BY dead_ms, id LIMIT ?1 OFFSET ?2",
                            "list dead letters");
    stmt.bind(1, to_sql_count(limit)).bind(2, to_sql_count(offset));
    std::vector<DeadLetter> out;
    while (stmt.step()) out.push_back(read_row(stmt));
    return out;
}

std::optional<DeadLetter> DeadLetters::get(const MessageId& id) {
    std::lock_guard lock(mutex_);
    auto stmt = db_.prepare(std::string("SELECT ") + kColumns + " FROM dead_letters WHERE id = ?1",
                            "read dead letter");
    stmt.bind_blob(1, id_bytes(id));
    if (!stmt.step()) return std::nullopt;
    return read_row(stmt);
}

size_t DeadLetters::count() {
    std::lock_guard lock(mutex_);
    auto stmt = db_.prepare("SELECT count(*) FROM dead_letters", "count dead letters");
    stmt.step();
    return static_cast<size_t>(stmt.column_int64(0));
}

bool DeadLetters::remove(const MessageId& id) {
    std::lock_guard lock(mutex_);
    auto stmt = db_.prepare("DELETE FROM dead_letters WHERE id = ?1", "delete dead letter");
    stmt.bind_blob(1, id_bytes(id)).run();
    return db_.changes() > 0;
}

} // namespace renkei
