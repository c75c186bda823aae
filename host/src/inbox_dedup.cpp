#include "renkei/inbox_dedup.hpp"

#include <algorithm>
#include <stdexcept>

namespace renkei {

namespace {

std::span<const uint8_t> id_bytes(const MessageId& id) { return {id.data(), id.size()}; }

void check_id(const MessageId& id) {
    if (std::all_of(id.begin(), id.end(), [](uint8_t b) { return b == 0; }))
        throw std::invalid_argument("inbox dedup field 'id': must not be all zero");
}

void create_schema(sqlite::Database& db) {
    db.exec("CREATE TABLE IF NOT EXISTS inbox_seen ("
            " id BLOB PRIMARY KEY CHECK (length(id) = 16),"
            " seen_ms INTEGER NOT NULL) WITHOUT ROWID;"
            "CREATE INDEX IF NOT EXISTS inbox_seen_by_time ON inbox_seen (seen_ms);",
            "create inbox dedup table");
}

// Pruning deletes in chunks, each its own transaction, so a large backlog never holds the write
// lock (and the receivers waiting on it) for long.
constexpr int64_t kPruneChunk = 5000;

} // namespace

InboxDedup::InboxDedup(const std::filesystem::path& path, const sqlite::OpenOptions& options)
    : db_(path, options),
      insert_((create_schema(db_),
               db_.prepare("INSERT INTO inbox_seen (id, seen_ms) VALUES (?1, ?2)"
                           " ON CONFLICT (id) DO NOTHING",
                           "record inbox message id"))),
      select_(db_.prepare("SELECT 1 FROM inbox_seen WHERE id = ?1", "look up inbox message id")) {}

bool InboxDedup::record(const MessageId& id, int64_t now_ms) {
    insert_.bind_blob(1, id_bytes(id)).bind(2, now_ms);
    insert_.run();
    return db_.changes() == 1;
}

bool InboxDedup::first_time(const MessageId& id, int64_t now_ms) {
    return first_time_batch(std::span<const MessageId>(&id, 1), now_ms).front();
}

std::vector<bool> InboxDedup::first_time_batch(std::span<const MessageId> ids, int64_t now_ms) {
    for (const MessageId& id : ids) check_id(id);
    std::vector<bool> fresh;
    if (ids.empty()) return fresh;
    fresh.reserve(ids.size());
    std::lock_guard lock(mutex_);
    sqlite::Transaction tx(db_);
    for (const MessageId& id : ids) fresh.push_back(record(id, now_ms));
    tx.commit();
    return fresh;
}

bool InboxDedup::apply_once(const MessageId& id, int64_t now_ms,
                            const std::function<void(sqlite::Database&)>& effect) {
    check_id(id);
    std::lock_guard lock(mutex_);
    sqlite::Transaction tx(db_);
    if (!record(id, now_ms)) return false;  // the transaction rolls back: nothing was written
    effect(db_);
    tx.commit();
    return true;
}

bool InboxDedup::seen(const MessageId& id) {
    std::lock_guard lock(mutex_);
    select_.bind_blob(1, id_bytes(id));
    bool found = select_.step();
    select_.reset();
    return found;
}

size_t InboxDedup::prune_older_than(int64_t cutoff_ms) {
    size_t pruned = 0;
    for (;;) {
        std::lock_guard lock(mutex_);
        auto q = db_.prepare("DELETE FROM inbox_seen WHERE id IN (SELECT id FROM inbox_seen"
                             " WHERE seen_ms < ?1 LIMIT ?2)",
                             "prune inbox message ids");
        q.bind(1, cutoff_ms).bind(2, kPruneChunk);
        sqlite::Transaction tx(db_);
        q.run();
        auto n = db_.changes();
        tx.commit();
        pruned += static_cast<size_t>(n);
        if (n < kPruneChunk) return pruned;
    }
}

size_t InboxDedup::size() {
    std::lock_guard lock(mutex_);
    auto q = db_.prepare("SELECT count(*) FROM inbox_seen", "count inbox message ids");
    q.step();
    return static_cast<size_t>(q.column_int64(0));
}

} // namespace renkei
