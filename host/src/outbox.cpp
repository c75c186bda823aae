#include "renkei/outbox.hpp"

#include "renkei/crypto.hpp"
#include "renkei/dead_letters.hpp"

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <limits>
#include <mutex>
#include <random>

namespace renkei {

int64_t retry_delay_ms(const RetryPolicy& policy, int attempts, double unit) {
    int doublings = std::max(attempts, 1) - 1;
    int64_t delay = policy.max_delay_ms;
    // base * 2^doublings without overflow: stop doubling once the cap is reached.
    if (doublings < 62 && policy.base_delay_ms <= (policy.max_delay_ms >> doublings))
        delay = policy.base_delay_ms << doublings;
    unit = std::clamp(unit, 0.0, 1.0);
    auto spread = static_cast<int64_t>(std::floor(static_cast<double>(delay) * policy.jitter * unit));
    return std::max<int64_t>(delay - spread, 1);
}

namespace {

std::span<const uint8_t> id_bytes(const MessageId& id) { return {id.data(), id.size()}; }

int64_t to_sql_count(size_t n) {
    return static_cast<int64_t>(std::min<size_t>(n, std::numeric_limits<int64_t>::max()));
}

void check_options(const OutboxOptions& o) {
    auto bad = [](const char* field, const char* rule) {
        throw std::invalid_argument(std::string("outbox option '") + field + "': " + rule);
    };
    const RetryPolicy& r = o.retry;
    if (r.base_delay_ms <= 0) bad("retry.base_delay_ms", "must be > 0");
    if (r.max_delay_ms < r.base_delay_ms) bad("retry.max_delay_ms", "must be >= base_delay_ms");
    if (!(r.jitter >= 0.0 && r.jitter < 1.0)) bad("retry.jitter", "must be in [0, 1)");
    if (r.max_attempts < 1) bad("retry.max_attempts", "must be >= 1");
    if (o.max_message_bytes == 0) bad("max_message_bytes", "must be > 0");
    if (o.max_name_bytes == 0) bad("max_name_bytes", "must be > 0");
}

void check_name(std::string_view field, std::string_view value, size_t max_bytes) {
    if (value.empty()) throw OutboxInputError(std::string(field), "must not be empty");
    if (value.size() > max_bytes)
        throw OutboxInputError(std::string(field),
                               "must be at most " + std::to_string(max_bytes) + " bytes");
    for (unsigned char c : value)
        if (c < 0x20 || c == 0x7f)
            throw OutboxInputError(std::string(field), "must not contain control characters");
}

void check_put(const OutboxPut& m, const OutboxOptions& o) {
    check_name("peer", m.peer, o.max_name_bytes);
    check_name("type", m.type, o.max_name_bytes);
    // An all-zero id is what an unset or wrongly sized id decodes to; it would collide.
    if (std::all_of(m.id.begin(), m.id.end(), [](uint8_t b) { return b == 0; }))
        throw OutboxInputError("id", "must not be all zero");
    if (m.bytes.empty()) throw OutboxInputError("bytes", "must not be empty");
    if (m.bytes.size() > o.max_message_bytes)
        throw OutboxInputError("bytes", "must be at most " + std::to_string(o.max_message_bytes) +
                                            " bytes (got " + std::to_string(m.bytes.size()) + ")");
}

void create_schema(sqlite::Database& db) {
    // AUTOINCREMENT so a seq is never reused, even after the queue drains: a caller holding
    // an old seq can never mark or dead-letter a newer message by mistake.
    db.exec("CREATE TABLE IF NOT EXISTS outbox ("
            " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
            " id BLOB NOT NULL UNIQUE CHECK (length(id) = 16),"
            " peer TEXT NOT NULL,"
            " type TEXT NOT NULL,"
            " attempts INTEGER NOT NULL,"
            " next_attempt_ms INTEGER NOT NULL,"
            " queued_ms INTEGER NOT NULL,"
            // Last, so reading the small columns never walks a large message's overflow pages.
            " bytes BLOB NOT NULL);"
            // Rows are picked by this index (which ends in seq), so due() costs O(limit) even
            // with a large backlog waiting for its retry time.
            "CREATE INDEX IF NOT EXISTS outbox_by_next_attempt ON outbox (next_attempt_ms);",
            "create outbox table");
    dead_letter_table::create(db);
}

constexpr const char* kEntryColumns =
    "seq, peer, id, type, bytes, attempts, next_attempt_ms, queued_ms";

OutboxEntry read_entry(const sqlite::Statement& row) {
    OutboxEntry e;
    e.seq = static_cast<uint64_t>(row.column_int64(0));
    e.peer = row.column_text(1);
    auto id = row.column_blob_view(2);
    std::memcpy(e.id.data(), id.data(), std::min(id.size(), e.id.size()));
    e.type = row.column_text(3);
    e.bytes = row.column_blob(4);
    e.attempts = static_cast<int>(row.column_int64(5));
    e.next_attempt_ms = row.column_int64(6);
    e.queued_ms = row.column_int64(7);
    return e;
}

DeadLetter to_dead_letter(OutboxEntry&& e, std::string_view reason, int64_t now_ms) {
    DeadLetter d;
    d.id = e.id;
    d.peer = std::move(e.peer);
    d.type = std::move(e.type);
    d.bytes = std::move(e.bytes);
    d.attempts = e.attempts;
    d.reason = std::string(reason);
    d.queued_ms = e.queued_ms;
    d.dead_ms = now_ms;
    return d;
}

} // namespace

struct Outbox::Impl {
    Impl(const std::filesystem::path& path, OutboxOptions opts)
        : options((check_options(opts), std::move(opts))), db(path, options.storage),
          schema(db),
          insert(db.prepare("INSERT INTO outbox (id, peer, type, bytes, attempts, next_attempt_ms,"
                            " queued_ms) VALUES (?1, ?2, ?3, ?4, ?7, max(?5, ?6), ?5)"
                            " ON CONFLICT (id) DO NOTHING",
                            "insert outbox entry")),
          find_seq(db.prepare("SELECT seq FROM outbox WHERE id = ?1", "find outbox entry")),
          select_due(db.prepare(std::string("SELECT ") + kEntryColumns +
                                    " FROM outbox WHERE next_attempt_ms <= ?1 AND attempts < ?2"
                                    " ORDER BY next_attempt_ms, seq LIMIT ?3",
                                "select due outbox entries")),
          select_by_seq(db.prepare(std::string("SELECT ") + kEntryColumns +
                                       " FROM outbox WHERE seq = ?1",
                                   "read outbox entry")),
          select_exhausted(db.prepare(std::string("SELECT ") + kEntryColumns +
                                          " FROM outbox WHERE attempts >= ?1 AND"
                                          " next_attempt_ms <= ?2"
                                          " ORDER BY next_attempt_ms, seq LIMIT 256",
                                      "select exhausted outbox entries")),
          select_attempts(db.prepare("SELECT attempts FROM outbox WHERE seq = ?1",
                                     "read outbox attempts")),
          update_sent(db.prepare("UPDATE outbox SET attempts = ?2, next_attempt_ms = ?3"
                                 " WHERE seq = ?1",
                                 "schedule outbox retry")),
          delete_ack(db.prepare("DELETE FROM outbox WHERE id = ?1 AND peer = ?2",
                                "delete acknowledged outbox entry")),
          delete_seq(db.prepare("DELETE FROM outbox WHERE seq = ?1", "delete outbox entry")),
          delete_delivered_dead_letter(dead_letter_table::prepare_delete_delivered(db)),
          count(db.prepare("SELECT count(*) FROM outbox", "count outbox entries")),
          count_held(db.prepare("SELECT count(*) FROM outbox WHERE attempts = 0 AND next_attempt_ms > ?1",
                                "count held outbox entries")),
          rng(options.jitter_seed ? options.jitter_seed : std::random_device{}()) {}

    struct Schema {
        explicit Schema(sqlite::Database& db) { create_schema(db); }
    };

    // One caller's put, waiting for a leader to commit it.
    struct PutRequest {
        std::span<const OutboxPut> messages;
        int64_t now_ms;
        std::vector<uint64_t> seqs;
        std::exception_ptr error;
        bool done = false;
    };

    // Requires db_mutex.
    uint64_t insert_one(const OutboxPut& m, int64_t now_ms) {
        insert.bind_blob(1, id_bytes(m.id))
            .bind_text(2, m.peer)
            .bind_text(3, m.type)
            .bind_blob(4, m.bytes)
            .bind(5, now_ms);
        if (m.sending) { // counted as the first send, its ack wait armed: no mark_sent needed
            insert.bind(6, now_ms + retry_delay_ms(options.retry, 1, unit(rng))).bind(7, 1);
        } else {
            insert.bind(6, m.not_before_ms).bind(7, 0);
        }
        insert.run();
        if (db.changes() == 1) return static_cast<uint64_t>(db.last_insert_rowid());
        find_seq.bind_blob(1, id_bytes(m.id));
        if (!find_seq.step())  // cannot happen inside the transaction that saw the conflict
            throw sqlite::Error(db.path(), "find outbox entry", "conflicting entry not found");
        auto seq = static_cast<uint64_t>(find_seq.column_int64(0));
        find_seq.reset();
        return seq;
    }

    // Requires db_mutex and an open transaction. Returns how many were deleted.
    size_t delete_acked(std::string_view peer, std::span<const MessageId> ids) {
        size_t deleted = 0;
        for (const MessageId& id : ids) {
            delete_ack.bind_blob(1, id_bytes(id)).bind_text(2, peer);
            delete_ack.run();
            if (db.changes() == 0) {
                // Usually a repeated ack; else the ack of a message already given up on.
                delete_delivered_dead_letter.bind_blob(1, id_bytes(id)).bind_text(2, peer);
                delete_delivered_dead_letter.run();
            }
            deleted += static_cast<size_t>(db.changes());
        }
        return deleted;
    }

    // Requires db_mutex and an open transaction.
    std::optional<OutboxEntry> read_seq(uint64_t seq) {
        select_by_seq.bind(1, static_cast<int64_t>(seq));
        std::optional<OutboxEntry> e;
        if (select_by_seq.step()) e = read_entry(select_by_seq);
        select_by_seq.reset();
        return e;
    }

    // Writes every request of a group in one transaction; they all succeed or all fail.
    void commit_group(const std::vector<PutRequest*>& group) {
        std::exception_ptr error;
        try {
            std::lock_guard lock(db_mutex);
            sqlite::Transaction tx(db);
            for (PutRequest* r : group) {
                r->seqs.clear();
                r->seqs.reserve(r->messages.size());
                for (const OutboxPut& m : r->messages) r->seqs.push_back(insert_one(m, r->now_ms));
            }
            tx.commit();
        } catch (...) {
            error = std::current_exception();
        }
        std::lock_guard lock(queue_mutex);
        for (PutRequest* r : group) {
            r->error = error;
            r->done = true;
        }
        leader_active = false;
        queue_cv.notify_all();
    }

    // Group commit without a writer thread: the first caller to find no commit running becomes
    // the leader and commits everything queued so far; the others wait for it.
    std::vector<uint64_t> put(std::span<const OutboxPut> messages, int64_t now_ms) {
        PutRequest request{messages, now_ms, {}, nullptr, false};
        std::unique_lock lock(queue_mutex);
        queue.push_back(&request);
        queue_cv.wait(lock, [&] { return request.done || !leader_active; });
        if (!request.done) {
            // Our request is still queued: no leader took it, since a leader finishes (and marks
            // its group done) before it clears leader_active.
            leader_active = true;
            std::vector<PutRequest*> group;
            group.swap(queue);
            lock.unlock();
            commit_group(group);
            lock.lock();
        }
        if (request.error) std::rethrow_exception(request.error);
        return std::move(request.seqs);
    }

    OutboxOptions options;
    sqlite::Database db;
    Schema schema;
    sqlite::Statement insert, find_seq, select_due, select_by_seq, select_exhausted,
        select_attempts, update_sent, delete_ack, delete_seq, delete_delivered_dead_letter, count, count_held;
    std::mt19937_64 rng;
    std::uniform_real_distribution<double> unit{0.0, 1.0};
    std::mutex db_mutex;  // guards db, the statements and rng

    std::mutex queue_mutex;  // guards queue and leader_active
    std::condition_variable queue_cv;
    std::vector<PutRequest*> queue;
    bool leader_active = false;
};

Outbox::Outbox(const std::filesystem::path& path, OutboxOptions options)
    : impl_(std::make_unique<Impl>(path, std::move(options))) {}

Outbox::~Outbox() = default;

uint64_t Outbox::put(std::string_view peer, const MessageId& id, std::string_view type,
                     std::span<const uint8_t> bytes, int64_t now_ms) {
    OutboxPut m{peer, id, type, bytes};
    return put_batch(std::span<const OutboxPut>(&m, 1), now_ms).front();
}

std::vector<uint64_t> Outbox::put_batch(std::span<const OutboxPut> messages, int64_t now_ms) {
    // Validate before queueing, so bad input fails only its own caller, never a whole group.
    for (const OutboxPut& m : messages) check_put(m, impl_->options);
    if (messages.empty()) return {};
    return impl_->put(messages, now_ms);
}

std::vector<OutboxEntry> Outbox::due(int64_t now_ms, size_t limit) {
    std::vector<OutboxEntry> out;
    if (limit == 0) return out;
    std::lock_guard lock(impl_->db_mutex);
    auto& q = impl_->select_due;
    q.bind(1, now_ms).bind(2, impl_->options.retry.max_attempts).bind(3, to_sql_count(limit));
    try {
        while (q.step()) out.push_back(read_entry(q));
    } catch (...) {
        q.reset();
        throw;
    }
    q.reset();
    std::sort(out.begin(), out.end(),
              [](const OutboxEntry& a, const OutboxEntry& b) { return a.seq < b.seq; });
    return out;
}

void Outbox::mark_sent(std::span<const uint64_t> seqs, int64_t now_ms) {
    if (seqs.empty()) return;
    Impl& m = *impl_;
    std::lock_guard lock(m.db_mutex);
    sqlite::Transaction tx(m.db);
    for (uint64_t seq : seqs) {
        m.select_attempts.bind(1, static_cast<int64_t>(seq));
        bool found = m.select_attempts.step();
        int attempts = found ? static_cast<int>(m.select_attempts.column_int64(0)) + 1 : 0;
        m.select_attempts.reset();
        if (!found) continue;
        int64_t delay = retry_delay_ms(m.options.retry, attempts, m.unit(m.rng));
        m.update_sent.bind(1, static_cast<int64_t>(seq)).bind(2, attempts).bind(3, now_ms + delay);
        m.update_sent.run();
    }
    tx.commit();
}

bool Outbox::ack(std::string_view peer, const MessageId& id) {
    return ack_batch(peer, std::span<const MessageId>(&id, 1)) == 1;
}

size_t Outbox::ack_batch(std::string_view peer, std::span<const MessageId> ids) {
    if (ids.empty()) return 0;
    const Acks acks{peer, ids};
    return commit({}, std::span<const Acks>(&acks, 1), 0).acked;
}

Outbox::Committed Outbox::commit(std::span<const OutboxPut> puts, std::span<const Acks> acks, int64_t now_ms) {
    for (const OutboxPut& p : puts) check_put(p, impl_->options);
    Committed out;
    Impl& m = *impl_;
    std::lock_guard lock(m.db_mutex);
    sqlite::Transaction tx(m.db);
    for (const Acks& a : acks) out.acked += m.delete_acked(a.peer, a.ids);
    out.seqs.reserve(puts.size());
    for (const OutboxPut& p : puts) out.seqs.push_back(m.insert_one(p, now_ms));
    tx.commit();
    return out;
}

bool Outbox::move_to_dead_letter(uint64_t seq, std::string_view reason, int64_t now_ms) {
    Impl& m = *impl_;
    std::lock_guard lock(m.db_mutex);
    sqlite::Transaction tx(m.db);
    auto entry = m.read_seq(seq);
    if (!entry) return false;
    dead_letter_table::insert(m.db, to_dead_letter(std::move(*entry), reason, now_ms));
    m.delete_seq.bind(1, static_cast<int64_t>(seq)).run();
    tx.commit();
    return true;
}

std::vector<MessageId> Outbox::dead_letter_exhausted(int64_t now_ms) {
    Impl& m = *impl_;
    const int max_attempts = m.options.retry.max_attempts;
    const std::string reason =
        "no acknowledgement after " + std::to_string(max_attempts) + " sends";
    std::vector<MessageId> moved;
    std::lock_guard lock(m.db_mutex);
    sqlite::Transaction tx(m.db);
    // In chunks, so a long outage of a busy peer never loads its whole backlog into memory.
    for (;;) {
        std::vector<OutboxEntry> chunk;
        auto& q = m.select_exhausted;
        q.bind(1, max_attempts).bind(2, now_ms);
        try {
            while (q.step()) chunk.push_back(read_entry(q));
        } catch (...) {
            q.reset();
            throw;
        }
        q.reset();
        if (chunk.empty()) break;
        for (OutboxEntry& e : chunk) {
            uint64_t seq = e.seq;
            moved.push_back(e.id);
            dead_letter_table::insert(m.db, to_dead_letter(std::move(e), reason, now_ms));
            m.delete_seq.bind(1, static_cast<int64_t>(seq)).run();
        }
    }
    tx.commit();
    return moved;
}

void Outbox::add_dead_letters(std::span<const DeadLetter> letters) {
    if (letters.empty()) return;
    Impl& m = *impl_;
    std::lock_guard lock(m.db_mutex);
    sqlite::Transaction tx(m.db);
    for (const DeadLetter& d : letters) dead_letter_table::insert(m.db, d);
    tx.commit();
}

std::optional<OutboxEntry> Outbox::replay_dead_letter(const MessageId& id, int64_t now_ms) {
    Impl& m = *impl_;
    std::lock_guard lock(m.db_mutex);
    sqlite::Transaction tx(m.db);
    auto letter = dead_letter_table::take(m.db, id);
    if (!letter) return std::nullopt;
    // If the same id was queued again meanwhile, that entry stands and the dead letter goes.
    uint64_t seq = m.insert_one(OutboxPut{letter->peer, letter->id, letter->type, letter->bytes},
                                now_ms);
    auto entry = m.read_seq(seq);
    tx.commit();
    return entry;
}

int64_t Outbox::bytes_format() {
    std::lock_guard lock(impl_->db_mutex);
    auto q = impl_->db.prepare("PRAGMA user_version", "read the outbox's bytes format");
    q.step();
    return q.column_int64(0);
}

void Outbox::convert_bytes(int64_t format,
                           const std::function<std::vector<uint8_t>(std::span<const uint8_t>)>& convert) {
    Impl& m = *impl_;
    std::lock_guard lock(m.db_mutex);
    sqlite::Transaction tx(m.db);
    for (const char* table : {"outbox", "dead_letters"}) {
        // Read first, then written: no row is updated under a running scan of its table.
        std::vector<std::pair<std::vector<uint8_t>, std::vector<uint8_t>>> rows;
        auto read = m.db.prepare(std::string("SELECT id, bytes FROM ") + table, "read bytes to convert");
        while (read.step()) {
            auto id = read.column_blob(0);
            try {
                rows.emplace_back(id, convert(read.column_blob_view(1)));
            } catch (const std::exception& e) {
                read.reset();
                throw std::runtime_error(m.db.path() + ": " + table + " entry " + crypto::to_hex(id) +
                                         " could not be converted to format " + std::to_string(format) + ": " +
                                         e.what());
            }
        }
        read.reset();
        auto write = m.db.prepare(std::string("UPDATE ") + table + " SET bytes = ?2 WHERE id = ?1",
                                  "write converted bytes");
        for (auto& [id, bytes] : rows) write.bind_blob(1, id).bind_blob(2, bytes).run();
    }
    // PRAGMA takes no bound parameters; `format` is a number.
    m.db.exec("PRAGMA user_version = " + std::to_string(format), "record the outbox's bytes format");
    tx.commit();
}

size_t Outbox::held(int64_t now_ms) {
    std::lock_guard lock(impl_->db_mutex);
    auto& q = impl_->count_held;
    q.bind(1, now_ms);
    q.step();
    auto n = static_cast<size_t>(q.column_int64(0));
    q.reset();
    return n;
}

size_t Outbox::size() {
    std::lock_guard lock(impl_->db_mutex);
    auto& q = impl_->count;
    q.step();
    auto n = static_cast<size_t>(q.column_int64(0));
    q.reset();
    return n;
}

const RetryPolicy& Outbox::retry_policy() const { return impl_->options.retry; }

const std::string& Outbox::path() const { return impl_->db.path(); }

} // namespace renkei
