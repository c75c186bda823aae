// The durable outbox: every outgoing message is committed here before it is sent and stays until
// the next hop acknowledges it. Unacknowledged sends are retried with capped, jittered exponential
// back-off; a message that runs out of attempts, or that the peer refuses for good, becomes a dead
// letter (same database file, moved in one transaction).
//
// Sender loop:
//   outbox.put(...)                        // before anything is sent; returns once committed
//   for (auto& e : outbox.due(now, 256))   // ready to (re)send, oldest first
//       transport.send(e.peer, e.bytes);
//   outbox.mark_sent(seqs, now);           // arms the retry timer for each
//   on ack from peer P for id I:  outbox.ack(P, I)
//   periodically:                 outbox.dead_letter_exhausted(now)
// A crash anywhere in this loop loses nothing (a committed put survives the process) and can only
// cause a re-send of an unacknowledged message, which the receiver removes with InboxDedup.
#pragma once

#include "renkei/dead_letters.hpp"
#include "renkei/envelope.hpp"
#include "renkei/sqlite.hpp"

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace renkei {

// A put refused for bad input; names the field and the rule. Nothing of the batch was stored.
class OutboxInputError : public std::invalid_argument {
public:
    OutboxInputError(std::string field, std::string rule)
        : std::invalid_argument("outbox entry field '" + field + "': " + rule),
          field_(std::move(field)), rule_(std::move(rule)) {}
    const std::string& field() const { return field_; }
    const std::string& rule() const { return rule_; }

private:
    std::string field_;
    std::string rule_;
};

struct RetryPolicy {
    int64_t base_delay_ms = 1'000;   // wait for an ack after the first send
    int64_t max_delay_ms = 300'000;  // the wait never exceeds this
    // The wait is drawn from [d * (1 - jitter), d] where d = min(base * 2^(n-1), max), so retries
    // of many messages sent together spread out and never exceed the cap. 0 <= jitter < 0.5 keeps
    // the schedule strictly growing until the cap.
    double jitter = 0.2;
    int max_attempts = 20;           // sends without an ack before the message is dead-lettered
};

// The wait after the `attempts`-th send; `unit` in [0, 1) chooses the point in the jitter range.
int64_t retry_delay_ms(const RetryPolicy& policy, int attempts, double unit);

struct OutboxOptions {
    // Durability::process_crash (default) keeps every returned put through SIGKILL;
    // power_loss also fsyncs each commit.
    sqlite::OpenOptions storage;
    RetryPolicy retry;
    size_t max_message_bytes = 16u << 20;
    size_t max_name_bytes = 256;  // peer and type
    uint64_t jitter_seed = 0;     // 0: seeded from std::random_device
};

// One message to put. Views: the data must outlive the put call only.
struct OutboxPut {
    std::string_view peer;
    MessageId id{};
    std::string_view type;
    std::span<const uint8_t> bytes;
    int64_t not_before_ms = 0;  // held (not due) until then, e.g. the operating window's opening
    // The caller sends it right after the put returns: stored as sent once (attempts 1, retry
    // armed), saving the mark_sent round. not_before_ms is ignored.
    bool sending = false;
};

struct OutboxEntry {
    uint64_t seq = 0;  // queue order; never reused within a database
    std::string peer;
    MessageId id{};
    std::string type;
    std::vector<uint8_t> bytes;
    int attempts = 0;            // sends so far
    int64_t next_attempt_ms = 0; // due at or after this time
    int64_t queued_ms = 0;
};

// Thread-safe. Each commit costs a fixed ~tens of microseconds, so throughput comes from
// batches: put_batch/ack_batch write many messages per transaction (the way to reach tens of
// thousands per second). Concurrent put() calls are also group-committed: while one transaction
// commits, the next callers queue up and the next leader writes them all in one transaction.
class Outbox {
public:
    // Opens (creating) the database file. Throws sqlite::Error naming the file.
    explicit Outbox(const std::filesystem::path& path, OutboxOptions options = {});
    ~Outbox();
    Outbox(const Outbox&) = delete;
    Outbox& operator=(const Outbox&) = delete;

    // Commits one message, due at once; returns its seq when durable. Putting an id that is still
    // queued is a no-op that returns the existing seq (the first put wins), so a caller may retry
    // a put after an error. Throws OutboxInputError for bad input, sqlite::Error for storage.
    uint64_t put(std::string_view peer, const MessageId& id, std::string_view type,
                 std::span<const uint8_t> bytes, int64_t now_ms);
    // All or nothing, one transaction. Returns the seqs in the order given.
    std::vector<uint64_t> put_batch(std::span<const OutboxPut> messages, int64_t now_ms);

    // Up to `limit` entries due at `now_ms` that have attempts left: the earliest scheduled
    // (next_attempt_ms, then seq), returned in seq order. A fresh put is scheduled at its put
    // time, so new messages come out first-in first-out. Does not change them: call mark_sent
    // after handing them to the transport or they stay due. Entries out of attempts are skipped
    // until dead_letter_exhausted moves them, so call that regularly.
    std::vector<OutboxEntry> due(int64_t now_ms, size_t limit);
    // Counts one send per seq and schedules its retry by the back-off. Unknown seqs (acked in the
    // meantime) are skipped.
    void mark_sent(std::span<const uint64_t> seqs, int64_t now_ms);

    // Deletes the entry if it was queued for `peer`: a peer cannot acknowledge (and so erase)
    // a message that was sent to someone else. A late ack of a message already dead-lettered
    // deletes the dead letter (it was delivered after all). True if either was deleted.
    bool ack(std::string_view peer, const MessageId& id);
    // Returns how many were deleted; one transaction.
    size_t ack_batch(std::string_view peer, std::span<const MessageId> ids);

    // What peers acknowledged and what goes out next, in one transaction (one commit and one
    // sync instead of two): the links' committer. All or nothing; put_batch's rules for `puts`,
    // ack_batch's for `acks`.
    struct Acks {
        std::string_view peer;
        std::span<const MessageId> ids;
    };
    struct Committed {
        std::vector<uint64_t> seqs; // of `puts`, in the order given
        size_t acked = 0;           // entries deleted
    };
    Committed commit(std::span<const OutboxPut> puts, std::span<const Acks> acks, int64_t now_ms);

    // Moves the entry to the dead letters with `reason` (e.g. the peer's permanent refusal).
    // False if there is no such seq.
    bool move_to_dead_letter(uint64_t seq, std::string_view reason, int64_t now_ms);
    // Moves every entry that used all its attempts and whose last ack wait is over. Returns the
    // ids moved (for the audit log).
    std::vector<MessageId> dead_letter_exhausted(int64_t now_ms);
    // Records dead letters of messages that were never in this outbox (kept in memory by a link
    // with delivery = "memory"), in one transaction; replay puts them in the outbox.
    void add_dead_letters(std::span<const DeadLetter> letters);
    // Moves a dead letter back into the queue, due at once with attempts reset, in one
    // transaction. Nothing if there is no dead letter with that id.
    std::optional<OutboxEntry> replay_dead_letter(const MessageId& id, int64_t now_ms);

    // What the bytes of entries and dead letters hold is the caller's to say: a number kept in the
    // file (PRAGMA user_version), 0 in a file that never recorded one.
    int64_t bytes_format();
    // Rewrites the bytes of every entry and dead letter with `convert` and records `format`, in
    // one transaction: if `convert` throws, nothing changes and the exception (naming the entry's
    // id) propagates.
    void convert_bytes(int64_t format,
                       const std::function<std::vector<uint8_t>(std::span<const uint8_t>)>& convert);

    // Queued (un-acknowledged, not dead) entries.
    size_t size();
    // Entries never sent and held beyond `now_ms` (waiting for their not_before time).
    size_t held(int64_t now_ms);
    const RetryPolicy& retry_policy() const;
    const std::string& path() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

} // namespace renkei
