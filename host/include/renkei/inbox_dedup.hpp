// Receiver-side deduplication by message id, durable across restarts.
//
// Senders retry until acknowledged, so a receiver sees a message again whenever an ack was lost
// or it crashed before acking. Exactly-once *effect* needs one of two orderings:
//
//  1. Same transaction (preferred): record the id and apply the effect in one transaction
//     (apply_once, whose effect writes to database()), commit, then ack. A crash before the
//     commit leaves neither, and the sender's retry applies it; a crash after it makes the retry
//     a duplicate.
//  2. Idempotent effect: apply the effect durably, then first_time(), then ack. A crash between
//     the two re-applies the effect on the retry, which is harmless only because it is idempotent.
//
// Never record first and apply afterwards: a crash in between would drop the message for good.
// Always ack a duplicate (the sender is retrying because it never saw the first ack).
//
// Ids are pruned after a retention window that must exceed the longest time a sender keeps
// retrying (RetryPolicy: sum of the waits up to max_attempts), or a late retry would pass as new.
#pragma once

#include "renkei/envelope.hpp"
#include "renkei/recent_ids.hpp"
#include "renkei/sqlite.hpp"

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

namespace renkei {

struct DedupFilterOptions {
    uint64_t ids = uint64_t(1) << 20; // sized for at least this many ids (0: no filter)
    int64_t chunk = 20000;            // ids read from the file per hold of the store's lock
    std::function<void()> between_chunks; // for tests: runs on the filling thread, unlocked
};

// Thread-safe. seen() asks an in-memory filter (IdFilter) first, so a new id, the usual case,
// costs no read of the file: at a national host's volume the store is gigabytes and a lookup
// would be a random read. A thread of its own fills the filter from the file after opening, a
// chunk at a time, and fills a larger one when it is full; until the first is ready every
// lookup reads the file.
class InboxDedup {
public:
    // Opens (creating) the database file. Throws sqlite::Error naming the file.
    explicit InboxDedup(const std::filesystem::path& path, const sqlite::OpenOptions& options = {},
                        DedupFilterOptions filter = {});
    ~InboxDedup();
    InboxDedup(const InboxDedup&) = delete;
    InboxDedup& operator=(const InboxDedup&) = delete;

    // Records `id` (committed when this returns) and says whether it was new.
    // Throws std::invalid_argument for an all-zero id.
    bool first_time(const MessageId& id, int64_t now_ms);
    // One transaction for all; result[i] is true only for the first occurrence of ids[i], also
    // within the batch.
    std::vector<bool> first_time_batch(std::span<const MessageId> ids, int64_t now_ms);
    // If `id` is new: runs `effect` and records the id in one transaction and returns true. If it
    // is a duplicate: returns false without running `effect`. If `effect` throws, nothing is
    // recorded and the exception propagates. `effect` writes through the Database it is given
    // (this store's connection), and must not call back into this InboxDedup.
    bool apply_once(const MessageId& id, int64_t now_ms,
                    const std::function<void(sqlite::Database&)>& effect);

    // Whether `id` has been recorded (and not pruned). Does not record it.
    bool seen(const MessageId& id);
    // Forgets ids recorded before `cutoff_ms`, at most about `limit` of them (whole chunks of
    // 5,000, one transaction each); returns how many.
    size_t prune_older_than(int64_t cutoff_ms, size_t limit = SIZE_MAX);
    size_t size();
    // How many filters have been filled so far (seen() asks one first from the first on), and how
    // many ids the one in use is sized for (0: none yet).
    uint64_t filters_built();
    uint64_t filter_capacity();

private:
    bool record(const MessageId& id, int64_t now_ms);  // requires mutex_ and a transaction
    void build_filters();                              // the filler thread

    std::mutex mutex_;
    sqlite::Database db_;
    sqlite::Statement insert_;
    sqlite::Statement select_;
    // Under mutex_: the filter in use, and the one being filled (every id recorded meanwhile goes
    // into both, so the new one misses nothing when it replaces the old).
    const DedupFilterOptions filter_options_;
    std::unique_ptr<IdFilter> filter_, filling_;
    uint64_t filters_built_ = 0;
    uint64_t pruned_since_fill_ = 0; // ids forgotten since the filter in use was filled
    bool stopping_ = false;
    std::condition_variable fill_cv_;
    std::thread filler_;
};

} // namespace renkei
