#include "state.hpp"

#include <sqlite3.h>

#include <map>
#include <stdexcept>

namespace renkei::legacy_file {
namespace {

[[noreturn]] void fail(sqlite3* db, const char* what) {
    throw std::runtime_error(std::string("legacy-file state: ") + what + ": " + sqlite3_errmsg(db));
}

class Stmt {
public:
    Stmt(sqlite3* db, const char* text) {
        if (sqlite3_prepare_v2(db, text, -1, &s_, nullptr) != SQLITE_OK) fail(db, text);
    }
    ~Stmt() { sqlite3_finalize(s_); }
    Stmt(const Stmt&) = delete;
    Stmt& operator=(const Stmt&) = delete;
    Stmt& text(int i, const std::string& v) {
        sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
        return *this;
    }
    Stmt& integer(int i, int64_t v) {
        sqlite3_bind_int64(s_, i, v);
        return *this;
    }
    Stmt& blob(int i, const std::vector<uint8_t>& v) {
        if (v.empty()) sqlite3_bind_zeroblob(s_, i, 0);
        else sqlite3_bind_blob(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
        return *this;
    }
    bool row() {
        int rc = sqlite3_step(s_);
        if (rc == SQLITE_ROW) return true;
        if (rc == SQLITE_DONE) return false;
        fail(sqlite3_db_handle(s_), sqlite3_sql(s_));
    }
    void run() {
        row();
        sqlite3_reset(s_);
    }
    void reset() { sqlite3_reset(s_); }
    std::string col(int i) {
        auto* p = sqlite3_column_text(s_, i);
        return p ? std::string(reinterpret_cast<const char*>(p), sqlite3_column_bytes(s_, i)) : std::string();
    }
    int64_t num(int i) { return sqlite3_column_int64(s_, i); }
    std::vector<uint8_t> bytes(int i) {
        auto* p = static_cast<const uint8_t*>(sqlite3_column_blob(s_, i));
        return p ? std::vector<uint8_t>(p, p + sqlite3_column_bytes(s_, i)) : std::vector<uint8_t>();
    }

private:
    sqlite3_stmt* s_ = nullptr;
};

class Tx {
public:
    explicit Tx(sqlite3* db) : db_(db) {
        if (sqlite3_exec(db_, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) != SQLITE_OK) fail(db_, "BEGIN");
    }
    void commit() {
        if (sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) fail(db_, "COMMIT");
        done_ = true;
    }
    ~Tx() {
        if (!done_) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    }

private:
    sqlite3* db_;
    bool done_ = false;
};

const char* kFileCols = "digest, name, work_path, final_path, phase, size, records, batches, claimed_ms, recorded_ms, complete_ms";

FileRow file_of(Stmt& q) {
    FileRow f;
    f.digest = q.col(0);
    f.name = q.col(1);
    f.work_path = q.col(2);
    f.final_path = q.col(3);
    f.phase = q.col(4);
    f.size = static_cast<uint64_t>(q.num(5));
    f.records = static_cast<uint32_t>(q.num(6));
    f.batches = static_cast<uint32_t>(q.num(7));
    f.claimed_ms = q.num(8);
    f.recorded_ms = q.num(9);
    f.complete_ms = q.num(10);
    return f;
}

// The layout (schema version 2).
#define FILES_COLUMNS                                                                                         \
    " (id INTEGER PRIMARY KEY, digest TEXT NOT NULL UNIQUE, name TEXT NOT NULL, work_path TEXT NOT NULL,"      \
    " final_path TEXT NOT NULL DEFAULT '', phase TEXT NOT NULL, size INTEGER NOT NULL, records INTEGER NOT NULL," \
    " batches INTEGER NOT NULL, claimed_ms INTEGER NOT NULL, recorded_ms INTEGER NOT NULL DEFAULT 0,"            \
    " complete_ms INTEGER NOT NULL DEFAULT 0);"
// A row per record of every file, clustered by (file, line). The file's number, not its 64-character
// digest, keys it: a record takes about 70 bytes with its index entry rather than 300.
#define RECORDS_COLUMNS                                                                                \
    " (file INTEGER NOT NULL, line INTEGER NOT NULL, code TEXT NOT NULL, chunk INTEGER NOT NULL,"       \
    " idx INTEGER NOT NULL, outcome TEXT NOT NULL, by TEXT NOT NULL DEFAULT '',"                        \
    " field TEXT NOT NULL DEFAULT '', rule TEXT NOT NULL DEFAULT '', message TEXT NOT NULL DEFAULT '',"  \
    " jlis TEXT NOT NULL DEFAULT '', PRIMARY KEY (file, line)) WITHOUT ROWID;"
// A batch's payload (a megabyte at 5,000 records) lives apart from its state row: SQLite reads a
// row's overflow pages to reach the columns after a blob and writes them all again on every
// update of the row (sent, the CS's answer, J-LIS's).
#define PAYLOADS_COLUMNS \
    " (digest TEXT NOT NULL, chunk INTEGER NOT NULL, payload BLOB NOT NULL, PRIMARY KEY (digest, chunk));"
// The records of the file a statement's digest parameter names.
#define FILE_ID "(SELECT id FROM files WHERE digest = ?)"

constexpr const char* kTables =
    "CREATE TABLE IF NOT EXISTS files" FILES_COLUMNS
    "CREATE TABLE IF NOT EXISTS batches (digest TEXT NOT NULL, chunk INTEGER NOT NULL, batch_id TEXT NOT NULL UNIQUE,"
    " payload BLOB, count INTEGER NOT NULL, accepted INTEGER NOT NULL DEFAULT 0, sent_ms INTEGER NOT NULL DEFAULT 0,"
    " envelope BLOB, cs INTEGER NOT NULL DEFAULT 0, jlis INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (digest, chunk));"
    "CREATE INDEX IF NOT EXISTS batches_envelope ON batches (envelope);"
    "CREATE TABLE IF NOT EXISTS records" RECORDS_COLUMNS
    "CREATE INDEX IF NOT EXISTS records_batch ON records (file, chunk, idx);"
    // A later tier's list that arrived before the CS's own answer (lost in a stop and asked
    // again): kept until that answer is in, then applied.
    "CREATE TABLE IF NOT EXISTS early (id INTEGER PRIMARY KEY, digest TEXT NOT NULL, chunk INTEGER NOT NULL,"
    " by TEXT NOT NULL, final INTEGER NOT NULL, refused TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS payloads" PAYLOADS_COLUMNS;

// Schema versions (PRAGMA user_version). Each step runs once, in order, in one transaction.
//  0: each batch's payload in batches.payload; files and records keyed by the file's digest.
//  1: payloads in their own table (batches.payload stays, always NULL, so a file written by either
//     build opens).
//  2: files numbered; records keyed by (file number, line), WITHOUT ROWID.
constexpr const char* kMigrateTo1 =
    "CREATE TABLE IF NOT EXISTS payloads" PAYLOADS_COLUMNS
    "INSERT OR IGNORE INTO payloads (digest, chunk, payload) SELECT digest, chunk, payload FROM batches"
    " WHERE payload IS NOT NULL;"
    "UPDATE batches SET payload = NULL WHERE payload IS NOT NULL;";
constexpr const char* kMigrateTo2 =
    "CREATE TABLE files_v2" FILES_COLUMNS
    "INSERT INTO files_v2 (digest, name, work_path, final_path, phase, size, records, batches, claimed_ms,"
    " recorded_ms, complete_ms) SELECT digest, name, work_path, final_path, phase, size, records, batches,"
    " claimed_ms, recorded_ms, complete_ms FROM files ORDER BY rowid;"
    "CREATE TABLE records_v2" RECORDS_COLUMNS
    "INSERT INTO records_v2 SELECT f.id, r.line, r.code, r.chunk, r.idx, r.outcome, r.by, r.field, r.rule,"
    " r.message, r.jlis FROM records r JOIN files_v2 f ON f.digest = r.digest;"
    "DROP TABLE records;"
    "DROP TABLE files;"
    "ALTER TABLE files_v2 RENAME TO files;"
    "ALTER TABLE records_v2 RENAME TO records;";

} // namespace

State::State(const std::filesystem::path& file) {
    if (file.has_parent_path()) std::filesystem::create_directories(file.parent_path());
    if (sqlite3_open(file.c_str(), &db_) != SQLITE_OK) {
        std::string why = db_ ? sqlite3_errmsg(db_) : "out of memory";
        sqlite3_close(db_);
        db_ = nullptr;
        throw std::runtime_error(file.string() + ": " + why);
    }
    sqlite3_busy_timeout(db_, 10000);
    // 16 KB pages (a new file only; an existing one keeps its size): a claim writes its batches'
    // payloads, a megabyte each, through the WAL page by page, and a quarter of the pages is a
    // quarter of the writes (the claim of a 200,000-record file: 1.5-1.7 s with 4 KB, 0.9-1.3 s).
    exec("PRAGMA page_size=16384; PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;"
         "PRAGMA journal_size_limit=67108864;");
    // A checkpoint every 64 MB of WAL rather than SQLite's 1,000 pages: a record's row is written
    // three times (claimed, the CS's answer, J-LIS's), and a page checkpointed between those
    // writes is read back and written to the file again each time.
    {
        Stmt q(db_, "PRAGMA page_size"); // always a row: a power of two from 512 to 65,536
        q.row();
        exec(("PRAGMA wal_autocheckpoint=" + std::to_string((int64_t(64) << 20) / q.num(0))).c_str());
    }
    migrate(file);
}

void State::migrate(const std::filesystem::path& file) {
    int version = 0;
    {
        Stmt v(db_, "PRAGMA user_version");
        if (v.row()) version = static_cast<int>(v.num(0));
    }
    if (version > kSchemaVersion)
        throw std::runtime_error(file.string() + ": legacy-file state schema version " + std::to_string(version) +
                                 " is newer than this build's " + std::to_string(kSchemaVersion));
    if (version == kSchemaVersion) return;
    Tx tx(db_);
    bool fresh = !Stmt(db_, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'files'").row();
    if (!fresh && version == 0) exec(kMigrateTo1);
    if (!fresh && version <= 1) exec(kMigrateTo2);
    exec(kTables);
    exec(("PRAGMA user_version = " + std::to_string(kSchemaVersion)).c_str());
    tx.commit();
}

State::~State() { sqlite3_close(db_); }

void State::exec(const char* sql) {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
        std::string why = err ? err : "unknown";
        sqlite3_free(err);
        throw std::runtime_error("legacy-file state: " + why);
    }
}

std::optional<FileRow> State::file(const std::string& digest) {
    std::lock_guard lock(mutex_);
    Stmt q(db_, (std::string("SELECT ") + kFileCols + " FROM files WHERE digest = ?").c_str());
    q.text(1, digest);
    if (!q.row()) return std::nullopt;
    return file_of(q);
}

std::vector<FileRow> State::files(const std::string& phase) {
    std::lock_guard lock(mutex_);
    Stmt q(db_, (std::string("SELECT ") + kFileCols + " FROM files WHERE phase = ? ORDER BY claimed_ms, name").c_str());
    q.text(1, phase);
    std::vector<FileRow> out;
    while (q.row()) out.push_back(file_of(q));
    return out;
}

uint64_t State::files_with_phase(const std::string& phase) {
    std::lock_guard lock(mutex_);
    Stmt q(db_, "SELECT COUNT(*) FROM files WHERE phase = ?");
    q.text(1, phase);
    return q.row() ? static_cast<uint64_t>(q.num(0)) : 0;
}

void State::claim(const FileRow& f, const std::vector<RecordRow>& records,
                  const std::vector<std::pair<BatchRow, std::vector<uint8_t>>>& batches) {
    std::lock_guard lock(mutex_);
    Tx tx(db_);
    Stmt(db_, "INSERT INTO files (digest, name, work_path, phase, size, records, batches, claimed_ms) VALUES (?,?,?,?,?,?,?,?)")
        .text(1, f.digest).text(2, f.name).text(3, f.work_path).text(4, f.phase)
        .integer(5, static_cast<int64_t>(f.size)).integer(6, f.records).integer(7, f.batches).integer(8, f.claimed_ms)
        .run();
    int64_t id = sqlite3_last_insert_rowid(db_);
    Stmt r(db_, "INSERT INTO records (file, line, code, chunk, idx, outcome, by, field, rule, message) VALUES (?,?,?,?,?,?,?,?,?,?)");
    for (auto& x : records) {
        r.integer(1, id).integer(2, static_cast<int64_t>(x.line)).text(3, x.code).integer(4, x.chunk)
            .integer(5, x.index).text(6, x.outcome).text(7, x.by).text(8, x.field).text(9, x.rule).text(10, x.message);
        r.run();
    }
    Stmt b(db_, "INSERT INTO batches (digest, chunk, batch_id, count) VALUES (?,?,?,?)");
    Stmt p(db_, "INSERT INTO payloads (digest, chunk, payload) VALUES (?,?,?)");
    for (auto& [row, payload] : batches) {
        b.text(1, f.digest).integer(2, row.chunk).text(3, row.batch_id).integer(4, row.count);
        b.run();
        p.text(1, f.digest).integer(2, row.chunk).blob(3, payload);
        p.run();
    }
    tx.commit();
}

std::vector<BatchRow> State::batches(const std::string& digest) {
    std::lock_guard lock(mutex_);
    Stmt q(db_, "SELECT chunk, batch_id, count, accepted, sent_ms, cs, jlis FROM batches WHERE digest = ? ORDER BY chunk");
    q.text(1, digest);
    std::vector<BatchRow> out;
    while (q.row()) {
        BatchRow b;
        b.chunk = static_cast<uint32_t>(q.num(0));
        b.batch_id = q.col(1);
        b.count = static_cast<uint32_t>(q.num(2));
        b.accepted = static_cast<uint32_t>(q.num(3));
        b.sent_ms = q.num(4);
        b.cs = q.num(5) != 0;
        b.jlis = q.num(6) != 0;
        out.push_back(b);
    }
    return out;
}

std::vector<uint8_t> State::payload(const std::string& digest, uint32_t chunk) {
    std::lock_guard lock(mutex_);
    Stmt q(db_, "SELECT payload FROM payloads WHERE digest = ? AND chunk = ?");
    q.text(1, digest).integer(2, chunk);
    return q.row() ? q.bytes(0) : std::vector<uint8_t>();
}

void State::sent(const std::string& digest, uint32_t chunk, int64_t now_ms, const std::vector<uint8_t>& envelope_id) {
    std::lock_guard lock(mutex_);
    Stmt(db_, "UPDATE batches SET sent_ms = ?, envelope = ? WHERE digest = ? AND chunk = ?")
        .integer(1, now_ms).blob(2, envelope_id).text(3, digest).integer(4, chunk).run();
}

std::optional<std::pair<std::string, uint32_t>> State::batch_by_id(const std::string& batch_id) {
    std::lock_guard lock(mutex_);
    Stmt q(db_, "SELECT digest, chunk FROM batches WHERE batch_id = ?");
    q.text(1, batch_id);
    if (!q.row()) return std::nullopt;
    return std::pair{q.col(0), static_cast<uint32_t>(q.num(1))};
}

std::optional<std::pair<std::string, uint32_t>> State::batch_by_envelope(const std::vector<uint8_t>& envelope_id) {
    std::lock_guard lock(mutex_);
    Stmt q(db_, "SELECT digest, chunk FROM batches WHERE envelope = ?");
    q.blob(1, envelope_id);
    if (!q.row()) return std::nullopt;
    return std::pair{q.col(0), static_cast<uint32_t>(q.num(1))};
}

bool State::cs_answer(const std::string& digest, uint32_t chunk, const std::string& by, const std::vector<Refused>& refused) {
    std::lock_guard lock(mutex_);
    Tx tx(db_);
    Stmt q(db_, "SELECT cs, count FROM batches WHERE digest = ? AND chunk = ?");
    q.text(1, digest).integer(2, chunk);
    if (!q.row() || q.num(0) != 0) return false;
    uint32_t count = static_cast<uint32_t>(q.num(1));
    std::map<uint32_t, const Refused*> no;
    for (auto& r : refused)
        if (r.index < count) no[r.index] = &r;
    // INDEXED BY: without statistics SQLite takes the primary key's (file = ?) for these
    // statements and visits every row of the file, not the batch's (checked with EXPLAIN QUERY PLAN).
    Stmt acc(db_, "UPDATE records INDEXED BY records_batch SET outcome = 'accepted' WHERE file = " FILE_ID
                  " AND chunk = ? AND outcome = 'pending'");
    Stmt rej(db_, "UPDATE records SET outcome = 'rejected', by = ?, field = ?, rule = ?, message = ?"
                  " WHERE file = " FILE_ID " AND chunk = ? AND idx = ?");
    for (auto& [i, r] : no) {
        rej.text(1, by).text(2, r->field).text(3, r->rule).text(4, r->message).text(5, digest).integer(6, chunk).integer(7, i);
        rej.run();
    }
    acc.text(1, digest).integer(2, chunk).run();
    uint32_t accepted = count - static_cast<uint32_t>(no.size());
    Stmt(db_, "UPDATE batches SET cs = 1, accepted = ?, jlis = ? WHERE digest = ? AND chunk = ?")
        .integer(1, accepted).integer(2, accepted == 0 ? 1 : 0).text(3, digest).integer(4, chunk).run();
    {
        Stmt e(db_, "SELECT by, final, refused FROM early WHERE digest = ? AND chunk = ? ORDER BY id");
        e.text(1, digest).integer(2, chunk);
        while (e.row()) apply_later(digest, chunk, e.col(0), e.num(1) != 0, decode(e.col(2)));
        Stmt(db_, "DELETE FROM early WHERE digest = ? AND chunk = ?").text(1, digest).integer(2, chunk).run();
    }
    tx.commit();
    return true;
}

bool State::later_answer(const std::string& digest, uint32_t chunk, const std::string& by, bool final,
                         const std::vector<Refused>& refused) {
    std::lock_guard lock(mutex_);
    Tx tx(db_);
    Stmt q(db_, "SELECT cs, jlis FROM batches WHERE digest = ? AND chunk = ?");
    q.text(1, digest).integer(2, chunk);
    if (!q.row()) return false;
    if (q.num(0) == 0) { // before the CS's own answer: kept for it
        Stmt(db_, "INSERT INTO early (digest, chunk, by, final, refused) VALUES (?,?,?,?,?)")
            .text(1, digest).integer(2, chunk).text(3, by).integer(4, final ? 1 : 0).text(5, encode(refused)).run();
        tx.commit();
        return true;
    }
    if (final && q.num(1) != 0) return false;
    q.reset();
    apply_later(digest, chunk, by, final, refused);
    tx.commit();
    return true;
}

void State::apply_later(const std::string& digest, uint32_t chunk, const std::string& by, bool final,
                        const std::vector<Refused>& refused) {
    // What the CS forwarded: the records it accepted, in batch order.
    std::vector<uint64_t> forwarded;
    {
        Stmt f(db_, "SELECT line FROM records INDEXED BY records_batch WHERE file = " FILE_ID " AND chunk = ? AND"
                    " (outcome = 'accepted' OR by LIKE 'pref:%' OR by LIKE 'jlis:%') ORDER BY idx");
        f.text(1, digest).integer(2, chunk);
        while (f.row()) forwarded.push_back(static_cast<uint64_t>(f.num(0)));
    }
    std::map<uint32_t, const Refused*> no;
    for (auto& r : refused)
        if (r.index < forwarded.size()) no[r.index] = &r;
    Stmt rej(db_, "UPDATE records SET outcome = 'rejected', by = CASE WHEN ? OR by = '' OR by NOT LIKE 'pref:%' THEN ? ELSE by END,"
                  " field = ?, rule = ?, message = ?, jlis = CASE WHEN ? THEN 'rejected' ELSE jlis END"
                  " WHERE file = " FILE_ID " AND line = ?");
    for (auto& [i, r] : no) {
        bool pref = by.rfind("pref:", 0) == 0;
        rej.integer(1, pref ? 1 : 0).text(2, by).text(3, r->field).text(4, r->rule).text(5, r->message)
            .integer(6, final ? 1 : 0).text(7, digest).integer(8, static_cast<int64_t>(forwarded[i]));
        rej.run();
    }
    if (final) {
        // Every forwarded record J-LIS did not refuse (those now carry jlis = 'rejected'): the
        // selection above, in one statement (INDEXED BY as in cs_answer).
        Stmt(db_, "UPDATE records INDEXED BY records_batch SET jlis = 'recorded' WHERE file = " FILE_ID
                  " AND chunk = ? AND jlis = '' AND (outcome = 'accepted' OR by LIKE 'pref:%' OR by LIKE 'jlis:%')")
            .text(1, digest).integer(2, chunk).run();
        Stmt(db_, "UPDATE batches SET jlis = 1 WHERE digest = ? AND chunk = ?").text(1, digest).integer(2, chunk).run();
    }
}

std::string State::encode(const std::vector<Refused>& refused) {
    std::string out;
    auto clean = [](std::string s) {
        for (auto& c : s)
            if (c == '\t' || c == '\n') c = ' ';
        return s;
    };
    for (auto& r : refused)
        out += std::to_string(r.index) + "\t" + clean(r.field) + "\t" + clean(r.rule) + "\t" + clean(r.message) + "\n";
    return out;
}

std::vector<Refused> State::decode(const std::string& text) {
    std::vector<Refused> out;
    size_t pos = 0;
    while (pos < text.size()) {
        auto nl = text.find('\n', pos);
        std::string line = text.substr(pos, nl - pos);
        pos = nl == std::string::npos ? text.size() : nl + 1;
        std::vector<std::string> c;
        size_t p = 0;
        while (c.size() < 3) {
            auto tab = line.find('\t', p);
            if (tab == std::string::npos) break;
            c.push_back(line.substr(p, tab - p));
            p = tab + 1;
        }
        if (c.size() != 3) continue;
        out.push_back({static_cast<uint32_t>(std::stoul(c[0])), c[1], c[2], line.substr(p)});
    }
    return out;
}

void State::set_phase(const std::string& digest, const std::string& phase, int64_t now_ms, const std::string& final_path) {
    std::lock_guard lock(mutex_);
    const char* sql = phase == "recorded"
                          ? "UPDATE files SET phase = ?, recorded_ms = ?, final_path = CASE WHEN ? = '' THEN final_path ELSE ? END WHERE digest = ?"
                          : "UPDATE files SET phase = ?, complete_ms = ?, final_path = CASE WHEN ? = '' THEN final_path ELSE ? END WHERE digest = ?";
    Stmt(db_, sql).text(1, phase).integer(2, now_ms).text(3, final_path).text(4, final_path).text(5, digest).run();
}

void State::drop_payloads(const std::string& digest) {
    std::lock_guard lock(mutex_);
    Stmt(db_, "DELETE FROM payloads WHERE digest = ?").text(1, digest).run();
}

std::vector<RecordRow> State::records(const std::string& digest) {
    std::lock_guard lock(mutex_);
    Stmt q(db_, "SELECT line, code, chunk, idx, outcome, by, field, rule, message, jlis FROM records WHERE file = " FILE_ID
                " ORDER BY line");
    q.text(1, digest);
    std::vector<RecordRow> out;
    while (q.row()) {
        RecordRow r;
        r.line = static_cast<uint64_t>(q.num(0));
        r.code = q.col(1);
        r.chunk = q.num(2);
        r.index = static_cast<uint32_t>(q.num(3));
        r.outcome = q.col(4);
        r.by = q.col(5);
        r.field = q.col(6);
        r.rule = q.col(7);
        r.message = q.col(8);
        r.jlis = q.col(9);
        out.push_back(std::move(r));
    }
    return out;
}

uint64_t State::pending(const std::string& digest) {
    std::lock_guard lock(mutex_);
    Stmt q(db_, "SELECT COALESCE(SUM(count), 0) FROM batches WHERE digest = ? AND cs = 0");
    q.text(1, digest);
    return q.row() ? static_cast<uint64_t>(q.num(0)) : 0;
}

State::Counts State::counts(const std::string& digest) {
    std::lock_guard lock(mutex_);
    Stmt q(db_, "SELECT COUNT(*), SUM(outcome = 'accepted'), SUM(outcome = 'rejected'),"
                " SUM(jlis = 'recorded'), SUM(jlis = 'rejected') FROM records WHERE file = " FILE_ID );
    q.text(1, digest);
    Counts c;
    if (q.row()) {
        c.total = static_cast<uint64_t>(q.num(0));
        c.accepted = static_cast<uint64_t>(q.num(1));
        c.rejected = static_cast<uint64_t>(q.num(2));
        c.jlis_recorded = static_cast<uint64_t>(q.num(3));
        c.jlis_rejected = static_cast<uint64_t>(q.num(4));
    }
    return c;
}

} // namespace renkei::legacy_file
