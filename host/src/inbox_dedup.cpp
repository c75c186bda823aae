#include "renkei/inbox_dedup.hpp"

#include <algorithm>
#include <cstring>
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

InboxDedup::InboxDedup(const std::filesystem::path& path, const sqlite::OpenOptions& options, DedupFilterOptions filter)
    : db_(path, options),
      insert_((create_schema(db_),
               db_.prepare("INSERT INTO inbox_seen (id, seen_ms) VALUES (?1, ?2)"
                           " ON CONFLICT (id) DO NOTHING",
                           "record inbox message id"))),
      select_(db_.prepare("SELECT 1 FROM inbox_seen WHERE id = ?1", "look up inbox message id")),
      filter_options_(filter) {
    if (filter_options_.ids > 0) filler_ = std::thread([this] { build_filters(); });
}

InboxDedup::~InboxDedup() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    fill_cv_.notify_all();
    if (filler_.joinable()) filler_.join();
}

bool InboxDedup::record(const MessageId& id, int64_t now_ms) {
    insert_.bind_blob(1, id_bytes(id)).bind(2, now_ms);
    insert_.run();
    if (db_.changes() != 1) return false;
    // Also when the transaction is later rolled back: the filter may say "perhaps" wrongly, never
    // "no" wrongly.
    if (filling_) filling_->add(id);
    if (filter_) {
        filter_->add(id);
        if (filter_->added() > filter_->capacity() && !filling_) fill_cv_.notify_one(); // full: a larger one
    }
    return true;
}

// Fills a filter from the file in chunks of ids in key order, the lock released between chunks so
// receivers wait a chunk at a time; then waits until the one in use is full and fills another.
// The first is sized by the file, which bounds how many ids it holds (each takes more than 32
// bytes with its index); a later one for twice the ids the store holds now (those the full one
// took, less those pruned since), so a store that forgets as fast as it records refills at the
// same size, dropping the forgotten ids, and one that grows gets a larger filter.
void InboxDedup::build_filters() {
    const int64_t chunk = std::max<int64_t>(1, filter_options_.chunk);
    for (;;) {
        uint64_t expected = filter_options_.ids;
        {
            std::unique_lock lock(mutex_);
            fill_cv_.wait(lock, [&] { return stopping_ || !filter_ || filter_->added() > filter_->capacity(); });
            if (stopping_) return;
            try {
                if (filter_) {
                    expected = std::max(expected, 2 * (filter_->added() - std::min(pruned_since_fill_, filter_->added())));
                } else {
                    int64_t pages = 0, page_size = 0;
                    auto q = db_.prepare("PRAGMA page_count", "size the dedup filter");
                    if (q.step()) pages = q.column_int64(0);
                    auto p = db_.prepare("PRAGMA page_size", "size the dedup filter");
                    if (p.step()) page_size = p.column_int64(0);
                    expected = std::max(expected, static_cast<uint64_t>(pages * page_size / 32));
                }
                filling_ = std::make_unique<IdFilter>(expected);
            } catch (const std::exception&) {
                return; // the file cannot be read: every lookup keeps reading it (and fails as it would)
            }
        }
        MessageId last{};
        for (bool done = false; !done;) {
            if (filter_options_.between_chunks && last != MessageId{}) filter_options_.between_chunks();
            std::lock_guard lock(mutex_);
            if (stopping_) return;
            try {
                auto q = db_.prepare("SELECT id FROM inbox_seen WHERE id > ?1 ORDER BY id LIMIT ?2", "fill the dedup filter");
                q.bind_blob(1, id_bytes(last)).bind(2, chunk);
                int64_t n = 0;
                while (q.step()) {
                    auto b = q.column_blob_view(0);
                    if (b.size() != last.size()) continue; // the table's CHECK rules these out
                    std::memcpy(last.data(), b.data(), last.size());
                    filling_->add(last);
                    ++n;
                }
                if (n < chunk) {
                    filter_ = std::move(filling_);
                    pruned_since_fill_ = 0;
                    ++filters_built_;
                    done = true;
                }
            } catch (const std::exception&) {
                filling_.reset();
                return;
            }
        }
    }
}

uint64_t InboxDedup::filter_capacity() {
    std::lock_guard lock(mutex_);
    return filter_ ? filter_->capacity() : 0;
}

uint64_t InboxDedup::filters_built() {
    std::lock_guard lock(mutex_);
    return filters_built_;
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
    if (filter_ && !filter_->may_contain(id)) return false;
    select_.bind_blob(1, id_bytes(id));
    bool found = select_.step();
    select_.reset();
    return found;
}

size_t InboxDedup::prune_older_than(int64_t cutoff_ms, size_t limit) {
    size_t pruned = 0;
    while (pruned < limit) {
        std::lock_guard lock(mutex_);
        auto q = db_.prepare("DELETE FROM inbox_seen WHERE id IN (SELECT id FROM inbox_seen"
                             " WHERE seen_ms < ?1 LIMIT ?2)",
                             "prune inbox message ids");
        q.bind(1, cutoff_ms).bind(2, kPruneChunk);
        sqlite::Transaction tx(db_);
        q.run();
        auto n = db_.changes();
        tx.commit();
        pruned_since_fill_ += static_cast<uint64_t>(n); // still in the filter until the next fill
        pruned += static_cast<size_t>(n);
        if (n < kPruneChunk) return pruned;
    }
    return pruned;
}

size_t InboxDedup::size() {
    std::lock_guard lock(mutex_);
    auto q = db_.prepare("SELECT count(*) FROM inbox_seen", "count inbox message ids");
    q.step();
    return static_cast<size_t>(q.column_int64(0));
}

} // namespace renkei
