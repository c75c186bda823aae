// The audit log: append-only, hash-chained, one record per message event and per decision.
//
// Records are lines of tab-separated fields (tab, newline and backslash escaped) in files
// audit-<first seq>.log that rotate by size. Each record carries its sequence number, the hash of
// the previous record and its own hash, SHA-256(previous hash || the record's fields), so any
// edit, deletion, insertion or reordering breaks the chain at a place verify() names. Personal
// identifiers are stored only as HMAC-SHA256 under the node's audit key, never raw.
//
// append() is thread-safe and never waits for the disk: it formats the record's fields on the
// caller's thread and queues them; a writer thread numbers, chains and commits records in batches
// (group commit, gathering for AuditOptions::linger_ms after the first record), with fdatasync
// per batch in durable mode; flush() waits until all appended records are on disk.
// Expiring old files writes an anchor (the first remaining seq and the hash it chains from), so
// what remains still verifies while a missing file in the middle is still detected.
//
// Several processes may append to one directory (the running host, and operator commands such as
// `renkei media` and `renkei deadletter replay` beside it): every batch is written under an
// exclusive flock on <dir>/audit.lock, and a writer that finds the tail moved since its own last
// write (another process appended, rotated or opened a new file) re-reads the last sequence number
// and hash before it writes, so the chain stays one chain. A torn last line is cut only under the
// lock, where it can only be a writer that died mid-write, never one still writing.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace renkei {

struct AuditRecord {
    int64_t time_ms = 0;
    std::string event;      // accepted, forwarded, held, delivered, refused, failed, duplicate, policy_allow, policy_deny, admin
    std::string message_id; // hex
    std::string type, from, to, purpose, operator_id;
    std::string outcome;    // ok, refused, failed, ...
    std::string detail;     // the reason or the peer, no personal data
    std::string subject;    // a personal identifier (個人番号, 住民票コード): stored only as its HMAC
};

// The same fields as views, for the message path: formatted straight into the queue, nothing
// copied on the way. `subject` is the personal identifier in clear; append() keeps only its HMAC.
struct AuditFields {
    int64_t time_ms = 0;
    std::string_view event, message_id, type, from, to, purpose, operator_id, outcome, detail, subject;
};

struct AuditOptions {
    bool durable = true;                  // fdatasync each batch
    // A batch gathers the records appended within this long after its first one (group commit:
    // one write and fdatasync for many). flush() does not wait for it.
    int linger_ms = 5;
    uint64_t max_file_bytes = 64u << 20;  // rotate after this
    std::filesystem::path key_file;       // HMAC key; default <dir>/../audit.key, created 0600
};

class AuditLog {
public:
    AuditLog(std::filesystem::path dir, AuditOptions options = {});
    ~AuditLog();
    AuditLog(const AuditLog&) = delete;
    AuditLog& operator=(const AuditLog&) = delete;

    void append(const AuditFields& fields);
    void append(const AuditRecord& record);
    void flush();
    uint64_t appended() const;

    // Removes whole files whose records are all older than `cutoff_ms` (never the current file)
    // and anchors the chain at the first remaining record. Returns the number of files removed.
    size_t expire_before(int64_t cutoff_ms);

    const std::filesystem::path& dir() const { return dir_; }

private:
    void writer();
    void read_tail();          // with the directory lock held
    bool tail_moved() const;   // with the directory lock held
    void open_current();
    void write_batch(std::string_view batch, std::string& out);
    std::string hmac(std::string_view value) const;

    std::filesystem::path dir_;
    AuditOptions options_;
    std::vector<uint8_t> key_;
    mutable std::mutex mutex_;
    std::mutex io_mutex_; // the file state below, between the writer and expire_before (flock is per open file)
    std::condition_variable cv_, flushed_;
    // Records formatted by the threads that appended them: the fields between the sequence number
    // and the hashes, which only the writer knows, one line each (the fields escape newlines).
    std::string pending_;
    size_t pending_records_ = 0;
    uint64_t next_seq_ = 1, written_seq_ = 0, queued_seq_ = 0;
    std::string last_hash_;
    std::filesystem::path current_file_;
    uint64_t current_size_ = 0;
    int fd_ = -1;
    int lock_fd_ = -1; // <dir>/audit.lock, flocked around every batch
    bool stopping_ = false;
    int flushing_ = 0; // callers waiting in flush()
    static constexpr size_t kFullBatch = 8192; // written at once, without waiting for the linger
    std::thread thread_;
};

struct AuditVerifyResult {
    bool ok = false;
    uint64_t records = 0;
    std::string error; // the first broken link: file, line, sequence number and why
};

// Checks the chain of every file in `dir` from the anchor (or the genesis) to the last record.
// Safe while writers append: it takes a snapshot of the files and their sizes under a shared
// lock and checks what the snapshot holds.
AuditVerifyResult verify_audit(const std::filesystem::path& dir);

} // namespace renkei
