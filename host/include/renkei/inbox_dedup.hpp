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
#include "renkei/sqlite.hpp"

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <mutex>
#include <span>
#include <vector>

namespace renkei {

// Thread-safe.
class InboxDedup {
public:
    // Opens (creating) the database file. Throws sqlite::Error naming the file.
    explicit InboxDedup(const std::filesystem::path& path, const sqlite::OpenOptions& options = {});

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
    // Forgets ids recorded before `cutoff_ms`; returns how many.
    size_t prune_older_than(int64_t cutoff_ms);
    size_t size();

private:
    bool record(const MessageId& id, int64_t now_ms);  // requires mutex_ and a transaction

    std::mutex mutex_;
    sqlite::Database db_;
    sqlite::Statement insert_;
    sqlite::Statement select_;
};

} // namespace renkei
