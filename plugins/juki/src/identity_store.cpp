#include "identity_store.hpp"

#include "pg_store.hpp"
#include "sql.hpp"

#include <capnp/serialize-packed.h>
#include <capnp/serialize.h>
#include <kj/io.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <thread>

namespace renkei::juki {
namespace {
using sql::Stmt;

Resident resident_from(Stmt& q) { // columns: code, municipality, my_number, removed, updated_ms, record
    Resident r;
    r.code = q.col(0);
    r.municipality = q.col(1);
    r.my_number = q.col(2);
    r.removed = q.num(3) != 0;
    r.updated_ms = q.num(4);
    r.record = unpack_record(q.bytes(5), r.code);
    return r;
}

// Fetched once: SHA256() and EVP_sha256() look the algorithm up in OpenSSL's providers on every
// call, which cost twice the hashing of a record (a tier hashes every record it receives).
const EVP_MD* sha256_md() {
    static EVP_MD* const md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    if (md == nullptr) throw std::runtime_error("juki: OpenSSL has no SHA-256");
    return md;
}
} // namespace

std::vector<uint8_t> sha256(const void* data, size_t size) {
    std::vector<uint8_t> out(SHA256_DIGEST_LENGTH);
    if (EVP_Digest(data, size, out.data(), nullptr, sha256_md(), nullptr) != 1)
        throw std::runtime_error("juki: SHA-256 failed");
    return out;
}

std::vector<uint8_t> digest_of(const std::vector<uint8_t>& hashes, const std::vector<uint32_t>& skip) {
    std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> c(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
    EVP_DigestInit_ex(c.get(), sha256_md(), nullptr);
    std::vector<bool> skipped(hashes.size() / 32);
    for (auto i : skip)
        if (i < skipped.size()) skipped[i] = true;
    for (size_t i = 0; i < skipped.size(); ++i)
        if (!skipped[i]) EVP_DigestUpdate(c.get(), hashes.data() + i * 32, 32);
    std::vector<uint8_t> out(SHA256_DIGEST_LENGTH);
    EVP_DigestFinal_ex(c.get(), out.data(), nullptr);
    return out;
}

std::vector<uint8_t> canonical_bytes(IdentityRecord::Reader record) {
    auto words = capnp::canonicalize(record);
    auto bytes = words.asBytes();
    return {bytes.begin(), bytes.end()};
}

namespace {

// pack_record's bytes after what `out` holds.
void append_packed(const void* canonical, size_t size, std::vector<uint8_t>& out) {
    if (size % sizeof(capnp::word) != 0) throw std::runtime_error("juki store: a record is not word-aligned");
    const size_t words = size / sizeof(capnp::word), at = out.size();
    // At most a tag byte, 8 bytes and a run count per word, the segment table's word included.
    out.resize(at + (words + 1) * 10);
    kj::ArrayOutputStream stream(kj::arrayPtr(out.data() + at, out.size() - at));
    kj::ArrayPtr<const capnp::word> segment(static_cast<const capnp::word*>(canonical), words);
    capnp::writePackedMessage(stream, kj::arrayPtr(&segment, 1));
    out.resize(at + stream.getArray().size());
}

} // namespace

void pack_record(const void* canonical, size_t size, std::vector<uint8_t>& out) {
    out.clear();
    append_packed(canonical, size, out);
}

void PackedRecords::add(IdentityRecord::Reader record) {
    auto words = capnp::canonicalize(record);
    append_packed(words.begin(), words.asBytes().size(), bytes_);
    ends_.push_back(bytes_.size());
}

void Store::load(capnp::List<IdentityRecord>::Reader records, const PackedRecords& packed, int64_t now_ms) {
    if (packed.size() != records.size()) throw std::invalid_argument("juki store: load: a packed record per record");
    load_packed(records, packed, now_ms);
}

void Store::load(capnp::List<IdentityRecord>::Reader records, int64_t now_ms) {
    PackedRecords packed;
    for (auto r : records) packed.add(r);
    load(records, packed, now_ms);
}

std::vector<uint8_t> unpack_record(std::vector<uint8_t> stored, const std::string& code) {
    if (stored.empty() || stored[0] == 0) return stored; // canonical: written before packing
    std::string why = "a packed record is one segment with nothing after it";
    try {
        kj::ArrayInputStream stream(kj::arrayPtr(stored.data(), stored.size()));
        capnp::PackedMessageReader message(stream);
        auto segment = message.getSegment(0).asBytes();
        if (message.getSegment(1).size() == 0 && stream.tryGetReadBuffer().size() == 0)
            return {segment.begin(), segment.end()};
    } catch (const kj::Exception& e) {
        why = e.getDescription().cStr();
    }
    throw std::runtime_error("juki store: resident " + code + ": the stored record is damaged: it is neither canonical"
                             " nor packed (" + why + ")");
}

RecordReader::RecordReader(const std::vector<uint8_t>& canonical)
    : words_(kj::heapArray<capnp::word>(canonical.size() / sizeof(capnp::word))) {
    if (canonical.size() % sizeof(capnp::word) != 0) throw std::runtime_error("juki store: a record is not word-aligned");
    if (!canonical.empty()) memcpy(words_.begin(), canonical.data(), canonical.size());
    kj::ArrayPtr<const capnp::word> segments[1] = {words_.asPtr()};
    reader_ = kj::heap<capnp::SegmentArrayMessageReader>(kj::arrayPtr(segments, 1));
}

IdentityRecord::Reader RecordReader::get() { return reader_->getRoot<IdentityRecord>(); }

std::string date_text(schema::Date::Reader d) {
    if (d.getYear() == 0) return {};
    char b[16];
    std::snprintf(b, sizeof b, "%04u-%02u-%02u", d.getYear(), d.getMonth(), d.getDay());
    return b;
}

namespace {

// Schema versions (PRAGMA user_version). Each step runs once, in order, in one transaction.
//  1: the first layout (history held every version, the current one included).
//  2: history holds superseded versions only, with when they were superseded; the current version
//     lives once, in residents (half the writes per update).
constexpr int kSchemaVersion = 2;

// The current version of each resident, clustered by 住民票コード (one B-tree, no separate key index).
#define RESIDENTS_COLUMNS                                                                              \
    " (code TEXT PRIMARY KEY, municipality TEXT NOT NULL, my_number TEXT NOT NULL,"                    \
    " removed INTEGER NOT NULL, updated_ms INTEGER NOT NULL, name TEXT NOT NULL, kana TEXT NOT NULL,"  \
    " birth TEXT NOT NULL, sex INTEGER NOT NULL, address TEXT NOT NULL, record BLOB NOT NULL) WITHOUT ROWID;"

constexpr const char* kTables =
    "CREATE TABLE IF NOT EXISTS residents" RESIDENTS_COLUMNS
    "CREATE TABLE IF NOT EXISTS history (id INTEGER PRIMARY KEY, code TEXT NOT NULL,"
    " recorded_ms INTEGER NOT NULL, superseded_ms INTEGER NOT NULL, record BLOB NOT NULL);"
    "CREATE INDEX IF NOT EXISTS history_code ON history (code);"
    "CREATE INDEX IF NOT EXISTS history_superseded ON history (superseded_ms);"
    "CREATE TABLE IF NOT EXISTS code_links (old_code TEXT PRIMARY KEY, new_code TEXT NOT NULL,"
    " changed_ms INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS answers (sender TEXT NOT NULL, batch TEXT NOT NULL, answer BLOB NOT NULL,"
    " at_ms INTEGER NOT NULL, PRIMARY KEY (sender, batch));"
    "CREATE TABLE IF NOT EXISTS sent (batch TEXT NOT NULL, stage TEXT NOT NULL, to_node TEXT NOT NULL,"
    " municipality TEXT NOT NULL, count INTEGER NOT NULL, hashes BLOB NOT NULL, context BLOB NOT NULL,"
    " sent_ms INTEGER NOT NULL, deadline_ms INTEGER NOT NULL, confirmed_ms INTEGER NOT NULL DEFAULT 0,"
    " PRIMARY KEY (batch, stage));"
    "CREATE TABLE IF NOT EXISTS alarms (id INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL, batch TEXT NOT NULL,"
    " detail TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS provisions (id INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL,"
    " recipient TEXT NOT NULL, affair TEXT NOT NULL, subject TEXT NOT NULL, outcome TEXT NOT NULL,"
    " operator TEXT NOT NULL, detail TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS provisions_subject ON provisions (subject);"
    "CREATE TABLE IF NOT EXISTS notices (id INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL, type TEXT NOT NULL,"
    " from_node TEXT NOT NULL, subject TEXT NOT NULL, body BLOB NOT NULL);"
    "CREATE TABLE IF NOT EXISTS check_chunks (check_id TEXT NOT NULL, chunk INTEGER NOT NULL,"
    " PRIMARY KEY (check_id, chunk));"
    "CREATE TABLE IF NOT EXISTS check_seen (check_id TEXT NOT NULL, code TEXT NOT NULL,"
    " PRIMARY KEY (check_id, code)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS check_totals (check_id TEXT PRIMARY KEY, chunks INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS check_diffs (id INTEGER PRIMARY KEY, check_id TEXT NOT NULL, code TEXT NOT NULL,"
    " kind INTEGER NOT NULL, fields TEXT NOT NULL, registered_at TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS check_diffs_check ON check_diffs (check_id, kind);"
    "CREATE TABLE IF NOT EXISTS erasures (id INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL,"
    " history INTEGER NOT NULL, residents INTEGER NOT NULL, provisions INTEGER NOT NULL);";

// Only the nodes that answer queries (a prefecture for its residents, J-LIS) keep the search indexes;
// a CS finds its residents by 住民票コード and lists them in code order, which the primary key gives.
constexpr const char* kSearchIndexes =
    "CREATE INDEX IF NOT EXISTS residents_number ON residents (my_number);"
    "CREATE INDEX IF NOT EXISTS residents_name ON residents (name);"
    "CREATE INDEX IF NOT EXISTS residents_kana ON residents (kana);"
    "CREATE INDEX IF NOT EXISTS residents_municipality ON residents (municipality, code);";

constexpr const char* kMigrateTo2 =
    "ALTER TABLE history ADD COLUMN superseded_ms INTEGER NOT NULL DEFAULT 0;"
    // An older version was superseded when the next version of the same person was recorded.
    "UPDATE history SET superseded_ms = coalesce((SELECT min(n.recorded_ms) FROM history n"
    " WHERE n.code = history.code AND n.id > history.id), recorded_ms);"
    // The newest history row of a current resident is that resident's current version: it goes.
    "DELETE FROM history WHERE id IN (SELECT max(h.id) FROM history h JOIN residents r ON r.code = h.code"
    " GROUP BY h.code);"
    "CREATE INDEX IF NOT EXISTS history_superseded ON history (superseded_ms);"
    "ALTER TABLE history DROP COLUMN reason;"
    // residents becomes clustered by code; its indexes go with the old table and are made again.
    "CREATE TABLE residents_v2" RESIDENTS_COLUMNS
    "INSERT INTO residents_v2 SELECT code, municipality, my_number, removed, updated_ms, name, kana, birth, sex,"
    " address, record FROM residents;"
    "DROP TABLE residents;"
    "ALTER TABLE residents_v2 RENAME TO residents;";

int user_version(sqlite3* db) {
    Stmt q(db, "PRAGMA user_version");
    q.row();
    return static_cast<int>(q.num(0));
}

bool has_table(sqlite3* db, const char* name) {
    Stmt q(db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1");
    q.text(1, name);
    return q.row();
}

} // namespace

SqliteIdentityStore::SqliteIdentityStore(const std::filesystem::path& file, Retention retention, StoreOptions options)
    : file_(file), retention_(retention), options_(options) {
    // 16 KiB pages for a new store (an existing one keeps the size it was made with; WAL fixes it):
    // a row of about 400 bytes, and four times fewer pages than SQLite's 4 KiB to log, checkpoint
    // and split. InnoDB's default, for the same reasons.
    // A checkpoint copies the WAL into the file and syncs both; doing it every 64 MiB of WAL instead
    // of SQLite's 1,000 pages writes a page that many batches touched (an index page) once, not per batch.
    db_ = sql::open(file, "PRAGMA page_size=16384; PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                          " PRAGMA secure_delete=ON; PRAGMA journal_size_limit=67108864;");
    autocheckpoint_ = "PRAGMA wal_autocheckpoint=" + std::to_string((64 << 20) / scalar("PRAGMA page_size"));
    sql::exec(db_, autocheckpoint_.c_str());
    // Page cache and memory map sized by the role: J-LIS's file is the big one.
    std::string pragmas = "PRAGMA cache_size=-" + std::to_string(options.cache_kib) +
                          "; PRAGMA mmap_size=" + std::to_string(options.mmap_bytes) + ";";
    sql::exec(db_, pragmas.c_str());
    int version = user_version(db_);
    if (version > kSchemaVersion)
        throw std::runtime_error(file.string() + ": juki store schema version " + std::to_string(version) +
                                 " is newer than this build's " + std::to_string(kSchemaVersion));
    sql::Tx tx(db_);
    if (version == 0 && has_table(db_, "history")) version = 1; // written before versions were recorded
    if (version == 1) sql::exec(db_, kMigrateTo2);
    sql::exec(db_, kTables);
    if (options.search_indexes) sql::exec(db_, kSearchIndexes);
    sql::exec(db_, ("PRAGMA user_version=" + std::to_string(kSchemaVersion)).c_str());
    tx.commit();
}

SqliteIdentityStore::~SqliteIdentityStore() {
    for (auto& [text, stmt] : statements_) sqlite3_finalize(stmt);
    sqlite3_close(db_);
}

sqlite3_stmt* SqliteIdentityStore::cached(const char* text) {
    auto& s = statements_[text];
    if (s == nullptr && sqlite3_prepare_v3(db_, text, -1, SQLITE_PREPARE_PERSISTENT, &s, nullptr) != SQLITE_OK)
        sql::fail(db_, text);
    return s;
}

// As sql::Tx: BEGIN IMMEDIATE takes the write lock up front; inside a transaction, a savepoint.
bool SqliteIdentityStore::tx_begin(TxKind kind) { return sql::begin(db_, kind == TxKind::Read); }
void SqliteIdentityStore::tx_commit(bool nested) { sql::commit(db_, nested); }
void SqliteIdentityStore::tx_rollback(bool nested) noexcept {
    sql::rollback(db_, nested);
    if (!nested && bulk_) end_bulk(); // the dropped indexes are back: nothing to build
}

int64_t SqliteIdentityStore::scalar(const std::string& text) {
    Stmt q(db_, text.c_str());
    return q.row() ? q.num(0) : 0;
}

int SqliteIdentityStore::schema_version() { return user_version(db_); }

std::unique_ptr<ReaderPool> SqliteIdentityStore::readers(size_t connections) {
    return std::make_unique<ReaderPool>(file_, connections, options_);
}

void SqliteIdentityStore::load_packed(capnp::List<IdentityRecord>::Reader records, const PackedRecords& packed,
                                      int64_t now_ms) {
    Transaction tx(*this);
    auto view = [](capnp::Text::Reader t) { return std::string_view(t.begin(), t.size()); };
    for (unsigned i = 0; i < records.size(); ++i) {
        auto p = records[i].getPerson();
        const std::string birth = date_text(p.getDateOfBirth());
        // A plain INSERT: a resident already there fails the load (and the transaction). The values
        // are bound in place: the records, `birth` and `packed` outlive the statement's run.
        Stmt u(cached("INSERT INTO residents (code, municipality, my_number, removed, updated_ms, name, kana, birth,"
                      " sex, address, record) VALUES (?1, ?2, ?3, 0, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"));
        u.text_ref(1, view(p.getResidentCode()))
            .text_ref(2, view(p.getAddress().getLocalGovCode()))
            .text_ref(3, view(p.getMyNumber()))
            .integer(4, now_ms)
            .text_ref(5, view(p.getName().getKanji()))
            .text_ref(6, view(p.getName().getKana()))
            .text_ref(7, birth)
            .integer(8, static_cast<int>(p.getSex()))
            .text_ref(9, view(p.getAddress().getText()))
            .blob_ref(10, packed[i].begin(), packed[i].size());
        u.run();
    }
    tx.commit();
}

void SqliteIdentityStore::drop_search_indexes() {
    if (!options_.search_indexes) return;
    sql::exec(db_, "DROP INDEX IF EXISTS residents_number; DROP INDEX IF EXISTS residents_name;"
                   " DROP INDEX IF EXISTS residents_kana; DROP INDEX IF EXISTS residents_municipality;");
    // The load's commit leaves its rows in the WAL, uncopied: build_search_indexes() copies them
    // into the file while it builds (a checkpoint at the commit would copy them first, then build).
    if (sqlite3_get_autocommit(db_) == 0) {
        sql::exec(db_, "PRAGMA wal_autocheckpoint=0");
        bulk_ = true;
    }
}

void SqliteIdentityStore::end_bulk() noexcept {
    bulk_ = false;
    sqlite3_exec(db_, autocheckpoint_.c_str(), nullptr, nullptr, nullptr); // sets a number: cannot fail
}

void SqliteIdentityStore::build_search_indexes() {
    if (!options_.search_indexes) return;
    if (!bulk_ || sqlite3_get_autocommit(db_) == 0) { // inside a transaction: built in it
        sql::exec(db_, kSearchIndexes);
        if (bulk_) end_bulk(); // its commit checkpoints as any other
        return;
    }
    // The committed rows are copied from the WAL into the file (and both synced) by a second
    // connection on another thread while this one sorts and writes the indexes: the other core is
    // otherwise idle here. A PASSIVE checkpoint never waits for this connection's write. Like
    // SQLite's own checkpoints, one that fails leaves its pages in the WAL (nothing is lost) for
    // the next one: the one below, or the next commit's.
    std::thread checkpointer([this] {
        try {
            sqlite3* c = sql::open(file_, "PRAGMA synchronous=NORMAL;");
            sqlite3_wal_checkpoint_v2(c, nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
            sqlite3_close(c);
        } catch (const std::exception&) {
            // could not open a second connection: the checkpoint below copies it all
        }
    });
    std::exception_ptr build_error;
    try {
        sql::Tx tx(db_);
        sql::exec(db_, kSearchIndexes);
        tx.commit();
    } catch (...) {
        build_error = std::current_exception();
    }
    checkpointer.join();
    end_bulk();
    if (build_error) std::rethrow_exception(build_error);
    // What the checkpointer left (the indexes' pages, and any rows it could not copy).
    sqlite3_wal_checkpoint_v2(db_, nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
}

std::optional<Resident> SqliteIdentityStore::get(const std::string& code) {
    Stmt q(cached("SELECT code, municipality, my_number, removed, updated_ms, record FROM residents WHERE code = ?1"));
    q.text(1, code);
    if (!q.row()) return std::nullopt;
    return resident_from(q);
}

void SqliteIdentityStore::put(IdentityRecord::Reader record, const std::vector<uint8_t>& canonical, bool removed,
                        int64_t now_ms, bool replaces) {
    auto p = record.getPerson();
    std::string code = p.getResidentCode();
    if (replaces) supersede(code, now_ms); // the version it replaces joins the history
    std::vector<uint8_t> packed;
    pack_record(canonical.data(), canonical.size(), packed);
    Stmt u(cached("INSERT INTO residents (code, municipality, my_number, removed, updated_ms, name, kana, birth, sex,"
                " address, record) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) ON CONFLICT (code) DO UPDATE SET"
                " municipality = ?2, my_number = ?3, removed = ?4, updated_ms = ?5, name = ?6, kana = ?7, birth = ?8,"
                " sex = ?9, address = ?10, record = ?11"));
    u.text(1, code)
        .text(2, p.getAddress().getLocalGovCode().cStr())
        .text(3, p.getMyNumber().cStr())
        .integer(4, removed ? 1 : 0)
        .integer(5, now_ms)
        .text(6, p.getName().getKanji().cStr())
        .text(7, p.getName().getKana().cStr())
        .text(8, date_text(p.getDateOfBirth()))
        .integer(9, static_cast<int>(p.getSex()))
        .text(10, p.getAddress().getText().cStr())
        .blob(11, packed.data(), packed.size());
    u.run();
}

void SqliteIdentityStore::supersede(const std::string& code, int64_t now_ms) {
    Stmt h(cached("INSERT INTO history (code, recorded_ms, superseded_ms, record)"
                  " SELECT code, updated_ms, ?2, record FROM residents WHERE code = ?1"));
    h.text(1, code).integer(2, now_ms);
    h.run();
}

void SqliteIdentityStore::retire_code(const std::string& old_code, const std::string& new_code, int64_t now_ms) {
    supersede(old_code, now_ms);
    Stmt d(db_, "DELETE FROM residents WHERE code = ?1");
    d.text(1, old_code);
    d.run();
    Stmt l(db_, "INSERT OR REPLACE INTO code_links (old_code, new_code, changed_ms) VALUES (?1, ?2, ?3)");
    l.text(1, old_code).text(2, new_code).integer(3, now_ms);
    l.run();
}

std::vector<Resident> SqliteIdentityStore::by_number(const std::string& my_number) {
    std::vector<Resident> out;
    Stmt q(cached("SELECT code, municipality, my_number, removed, updated_ms, record FROM residents WHERE my_number = ?1"));
    q.text(1, my_number);
    while (q.row()) out.push_back(resident_from(q));
    return out;
}

std::vector<Resident> SqliteIdentityStore::by_attributes(const std::string& name, const std::string& birth, int sex,
                                                   const std::string& address) {
    std::vector<Resident> out;
    Stmt q(db_, "SELECT code, municipality, my_number, removed, updated_ms, record FROM residents"
                " WHERE (name = ?1 OR kana = ?1) AND (?2 = '' OR birth = ?2) AND (?3 = 0 OR sex = ?3)"
                " AND (?4 = '' OR address = ?4) LIMIT 50");
    q.text(1, name).text(2, birth).integer(3, sex).text(4, address);
    while (q.row()) out.push_back(resident_from(q));
    return out;
}

std::vector<Resident> SqliteIdentityStore::residents_of(const std::string& municipality, const std::string& after_code,
                                                  size_t limit) {
    std::vector<Resident> out;
    Stmt q(db_, "SELECT code, municipality, my_number, removed, updated_ms, record FROM residents"
                " WHERE municipality = ?1 AND code > ?2 AND removed = 0 ORDER BY code LIMIT ?3");
    q.text(1, municipality).text(2, after_code).integer(3, static_cast<int64_t>(limit));
    while (q.row()) out.push_back(resident_from(q));
    return out;
}

uint64_t SqliteIdentityStore::count() {
    Stmt q(db_, "SELECT count(*) FROM residents");
    q.row();
    return static_cast<uint64_t>(q.num(0));
}

uint64_t SqliteIdentityStore::count_up_to(uint64_t limit) {
    Stmt q(db_, "SELECT count(*) FROM (SELECT 1 FROM residents LIMIT ?1)");
    q.integer(1, static_cast<int64_t>(std::min<uint64_t>(limit, INT64_MAX)));
    q.row();
    return static_cast<uint64_t>(q.num(0));
}

std::optional<std::vector<uint8_t>> SqliteIdentityStore::answer(const std::string& sender, const std::string& batch) {
    Stmt q(db_, "SELECT answer FROM answers WHERE sender = ?1 AND batch = ?2");
    q.text(1, sender).text(2, batch);
    if (!q.row()) return std::nullopt;
    return q.bytes(0);
}

void SqliteIdentityStore::save_answer(const std::string& sender, const std::string& batch, const std::vector<uint8_t>& answer,
                                int64_t now_ms) {
    Stmt i(db_, "INSERT INTO answers (sender, batch, answer, at_ms) VALUES (?1, ?2, ?3, ?4)");
    i.text(1, sender).text(2, batch).blob(3, answer.data(), answer.size()).integer(4, now_ms);
    i.run();
}

void SqliteIdentityStore::expect(const Expectation& e) {
    Stmt i(db_, "INSERT INTO sent (batch, stage, to_node, municipality, count, hashes, context, sent_ms, deadline_ms)"
                " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT (batch, stage) DO NOTHING");
    i.text(1, e.batch).text(2, e.stage).text(3, e.to).text(4, e.municipality).integer(5, e.count);
    i.blob(6, e.hashes.data(), e.hashes.size()).blob(7, e.context.data(), e.context.size());
    i.integer(8, e.sent_ms).integer(9, e.deadline_ms);
    i.run();
}

namespace {
Expectation expectation_from(Stmt& q) { // batch, stage, to_node, municipality, count, hashes, context, sent, deadline, confirmed
    Expectation e;
    e.batch = q.col(0);
    e.stage = q.col(1);
    e.to = q.col(2);
    e.municipality = q.col(3);
    e.count = static_cast<uint32_t>(q.num(4));
    e.hashes = q.bytes(5);
    e.context = q.bytes(6);
    e.sent_ms = q.num(7);
    e.deadline_ms = q.num(8);
    e.confirmed_ms = q.num(9);
    return e;
}
} // namespace

std::optional<Expectation> SqliteIdentityStore::expected(const std::string& batch, const std::string& stage) {
    Stmt q(db_, "SELECT batch, stage, to_node, municipality, count, hashes, context, sent_ms, deadline_ms, confirmed_ms"
                " FROM sent WHERE batch = ?1 AND stage = ?2");
    q.text(1, batch).text(2, stage);
    if (!q.row()) return std::nullopt;
    return expectation_from(q);
}

void SqliteIdentityStore::confirm(const std::string& batch, const std::string& stage, int64_t now_ms) {
    Stmt u(db_, "UPDATE sent SET confirmed_ms = ?3 WHERE batch = ?1 AND stage = ?2");
    u.text(1, batch).text(2, stage).integer(3, now_ms);
    u.run();
}

std::vector<Expectation> SqliteIdentityStore::pending() {
    std::vector<Expectation> out;
    Stmt q(db_, "SELECT batch, stage, to_node, municipality, count, x'', x'', sent_ms, deadline_ms, confirmed_ms"
                " FROM sent WHERE confirmed_ms = 0 ORDER BY sent_ms");
    while (q.row()) out.push_back(expectation_from(q));
    return out;
}

void SqliteIdentityStore::alarm(const std::string& batch, const std::string& detail, int64_t now_ms) {
    Stmt i(db_, "INSERT INTO alarms (at_ms, batch, detail) VALUES (?1, ?2, ?3)");
    i.integer(1, now_ms).text(2, batch).text(3, detail);
    i.run();
}

std::vector<Alarm> SqliteIdentityStore::alarms() {
    std::vector<Alarm> out;
    Stmt q(db_, "SELECT at_ms, batch, detail FROM alarms ORDER BY id");
    while (q.row()) out.push_back({q.num(0), q.col(1), q.col(2)});
    return out;
}

void SqliteIdentityStore::record_provision(const ProvisionRow& r) {
    Stmt i(db_, "INSERT INTO provisions (at_ms, recipient, affair, subject, outcome, operator, detail)"
                " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)");
    i.integer(1, r.at_ms).text(2, r.recipient).text(3, r.affair).text(4, r.subject).text(5, r.outcome);
    i.text(6, r.operator_id).text(7, r.detail);
    i.run();
}

std::vector<ProvisionRow> SqliteIdentityStore::provisions_of(const std::string& subject) {
    std::vector<ProvisionRow> out;
    Stmt q(db_, "SELECT at_ms, recipient, affair, subject, outcome, operator, detail FROM provisions"
                " WHERE subject = ?1 ORDER BY id");
    q.text(1, subject);
    while (q.row()) out.push_back({q.num(0), q.col(1), q.col(2), q.col(3), q.col(4), q.col(5), q.col(6)});
    return out;
}

void SqliteIdentityStore::record_notice(const std::string& type, const std::string& from, const std::string& subject,
                                  const std::vector<uint8_t>& body, int64_t now_ms) {
    Stmt i(db_, "INSERT INTO notices (at_ms, type, from_node, subject, body) VALUES (?1, ?2, ?3, ?4, ?5)");
    i.integer(1, now_ms).text(2, type).text(3, from).text(4, subject).blob(5, body.data(), body.size());
    i.run();
}

uint64_t SqliteIdentityStore::notices(const std::string& type) {
    Stmt q(db_, "SELECT count(*) FROM notices WHERE type = ?1");
    q.text(1, type);
    q.row();
    return static_cast<uint64_t>(q.num(0));
}

bool SqliteIdentityStore::chunk_seen(const std::string& check, uint32_t chunk) {
    Stmt i(db_, "INSERT INTO check_chunks (check_id, chunk) VALUES (?1, ?2) ON CONFLICT DO NOTHING");
    i.text(1, check).integer(2, chunk);
    i.run();
    return sqlite3_changes(db_) == 0;
}

void SqliteIdentityStore::mark_seen(const std::string& check, const std::string& code) {
    Stmt i(db_, "INSERT INTO check_seen (check_id, code) VALUES (?1, ?2) ON CONFLICT DO NOTHING");
    i.text(1, check).text(2, code);
    i.run();
}

uint32_t SqliteIdentityStore::chunks(const std::string& check) {
    Stmt q(db_, "SELECT count(*) FROM check_chunks WHERE check_id = ?1");
    q.text(1, check);
    q.row();
    return static_cast<uint32_t>(q.num(0));
}

std::vector<std::string> SqliteIdentityStore::unseen(const std::string& check, const std::string& municipality,
                                               const std::string& after_code, size_t limit) {
    std::vector<std::string> out;
    Stmt q(db_, "SELECT r.code FROM residents r WHERE r.municipality = ?2 AND r.removed = 0 AND r.code > ?3"
                " AND NOT EXISTS (SELECT 1 FROM check_seen s WHERE s.check_id = ?1 AND s.code = r.code)"
                " ORDER BY r.code LIMIT ?4");
    q.text(1, check).text(2, municipality).text(3, after_code).integer(4, static_cast<int64_t>(limit));
    while (q.row()) out.push_back(q.col(0));
    return out;
}

void SqliteIdentityStore::forget_check(const std::string& check) {
    for (auto* text : {"DELETE FROM check_seen WHERE check_id = ?1", "DELETE FROM check_chunks WHERE check_id = ?1",
                       "DELETE FROM check_totals WHERE check_id = ?1", "DELETE FROM check_diffs WHERE check_id = ?1"}) {
        Stmt d(db_, text);
        d.text(1, check);
        d.run();
    }
}

void SqliteIdentityStore::set_total(const std::string& check, uint32_t chunks) {
    Stmt i(db_, "INSERT OR REPLACE INTO check_totals (check_id, chunks) VALUES (?1, ?2)");
    i.text(1, check).integer(2, chunks);
    i.run();
}

std::optional<uint32_t> SqliteIdentityStore::total(const std::string& check) {
    Stmt q(db_, "SELECT chunks FROM check_totals WHERE check_id = ?1");
    q.text(1, check);
    if (!q.row()) return std::nullopt;
    return static_cast<uint32_t>(q.num(0));
}

uint64_t SqliteIdentityStore::seen(const std::string& check) {
    Stmt q(db_, "SELECT count(*) FROM check_seen WHERE check_id = ?1");
    q.text(1, check);
    q.row();
    return static_cast<uint64_t>(q.num(0));
}

void SqliteIdentityStore::add_difference(const std::string& check, const std::string& code, int kind,
                                   const std::string& fields, const std::string& registered_at) {
    Stmt i(db_, "INSERT INTO check_diffs (check_id, code, kind, fields, registered_at) VALUES (?1, ?2, ?3, ?4, ?5)");
    i.text(1, check).text(2, code).integer(3, kind).text(4, fields).text(5, registered_at);
    i.run();
}

std::vector<Store::StoredDifference> SqliteIdentityStore::differences(const std::string& check, size_t limit) {
    std::vector<StoredDifference> out;
    Stmt q(db_, "SELECT code, kind, fields, registered_at FROM check_diffs WHERE check_id = ?1 ORDER BY id LIMIT ?2");
    q.text(1, check).integer(2, static_cast<int64_t>(limit));
    while (q.row()) out.push_back({q.col(0), static_cast<int>(q.num(1)), q.col(2), q.col(3)});
    return out;
}

uint64_t SqliteIdentityStore::difference_count(const std::string& check, int kind) {
    Stmt q(db_, "SELECT count(*) FROM check_diffs WHERE check_id = ?1 AND kind = ?2");
    q.text(1, check).integer(2, kind);
    q.row();
    return static_cast<uint64_t>(q.num(0));
}

ErasureCounts SqliteIdentityStore::erase_expired(int64_t now_ms) {
    ErasureCounts n;
    sql::Tx tx(db_);
    {
        // Versions superseded longer ago than the history period (current versions are not in history).
        Stmt d(db_, "DELETE FROM history WHERE superseded_ms < ?1");
        d.integer(1, now_ms - retention_.history_ms);
        d.run();
        n.history = static_cast<uint64_t>(sqlite3_changes(db_));
    }
    {
        // Deleted residents (死亡, 転出 out of this store's area, 職権消除) past their period: all of it.
        Stmt q(db_, "SELECT code FROM residents WHERE removed = 1 AND updated_ms < ?1");
        q.integer(1, now_ms - retention_.removed_ms);
        std::vector<std::string> codes;
        while (q.row()) codes.push_back(q.col(0));
        for (auto& c : codes)
            for (auto* text : {"DELETE FROM history WHERE code = ?1", "DELETE FROM residents WHERE code = ?1"}) {
                Stmt d(db_, text);
                d.text(1, c);
                d.run();
            }
        n.residents = codes.size();
    }
    {
        Stmt d(db_, "DELETE FROM provisions WHERE at_ms < ?1");
        d.integer(1, now_ms - retention_.provisions_ms);
        d.run();
        n.provisions = static_cast<uint64_t>(sqlite3_changes(db_));
    }
    Stmt l(db_, "INSERT INTO erasures (at_ms, history, residents, provisions) VALUES (?1, ?2, ?3, ?4)");
    l.integer(1, now_ms).integer(2, static_cast<int64_t>(n.history)).integer(3, static_cast<int64_t>(n.residents));
    l.integer(4, static_cast<int64_t>(n.provisions));
    l.run();
    tx.commit();
    sql::exec(db_, "PRAGMA wal_checkpoint(TRUNCATE);"); // the overwritten pages leave the WAL too
    return n;
}

namespace {
class SqliteReader final : public ReaderPool::Reader {
public:
    SqliteReader(const std::filesystem::path& file, const StoreOptions& options) {
        if (sqlite3_open_v2(file.c_str(), &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nullptr) != SQLITE_OK) {
            std::string why = db ? sqlite3_errmsg(db) : "out of memory";
            sqlite3_close(db);
            throw std::runtime_error(file.string() + ": " + why);
        }
        sqlite3_busy_timeout(db, 5000);
        std::string pragmas = "PRAGMA cache_size=-" + std::to_string(options.cache_kib) +
                              "; PRAGMA mmap_size=" + std::to_string(options.mmap_bytes) + ";";
        sql::exec(db, pragmas.c_str());
        const char* text = "SELECT code, municipality, my_number, removed, updated_ms, record FROM residents"
                           " WHERE my_number = ?1";
        if (sqlite3_prepare_v3(db, text, -1, SQLITE_PREPARE_PERSISTENT, &by_number, nullptr) != SQLITE_OK)
            sql::fail(db, text);
    }
    ~SqliteReader() override {
        sqlite3_finalize(by_number);
        sqlite3_close(db);
    }
    void lookup(const std::vector<std::string>& numbers, std::vector<std::vector<Resident>>& out, size_t from,
                size_t to) override {
        sql::Tx read(db, sql::Tx::Read); // one snapshot for the slice, not one per key
        for (size_t i = from; i < to; ++i) {
            Stmt q(by_number);
            q.text(1, numbers[i]);
            while (q.row()) out[i].push_back(resident_from(q));
        }
        read.commit();
    }

private:
    sqlite3* db = nullptr;
    sqlite3_stmt* by_number = nullptr;
};
} // namespace

ReaderPool::ReaderPool(std::vector<std::unique_ptr<Reader>> readers) : readers_(std::move(readers)) {
    if (readers_.empty()) throw std::invalid_argument("juki store: a reader pool needs at least one connection");
}

ReaderPool::ReaderPool(const std::filesystem::path& file, size_t connections, StoreOptions options) {
    for (size_t i = 0; i < std::max<size_t>(1, connections); ++i)
        readers_.push_back(std::make_unique<SqliteReader>(file, options));
}

ReaderPool::~ReaderPool() = default;

std::vector<std::vector<Resident>> ReaderPool::by_numbers(const std::vector<std::string>& numbers) {
    std::vector<std::vector<Resident>> out(numbers.size());
    size_t n = numbers.size() < kParallelFrom ? 1 : std::min(readers_.size(), numbers.size());
    if (n <= 1) {
        readers_[0]->lookup(numbers, out, 0, numbers.size());
        return out;
    }
    // Slice i goes to reader i; the calling thread takes the first slice itself.
    std::vector<std::thread> threads;
    std::vector<std::exception_ptr> errors(n);
    auto slice = [&](size_t i) {
        try {
            readers_[i]->lookup(numbers, out, numbers.size() * i / n, numbers.size() * (i + 1) / n);
        } catch (...) {
            errors[i] = std::current_exception();
        }
    };
    for (size_t i = 1; i < n; ++i) threads.emplace_back(slice, i);
    slice(0);
    for (auto& t : threads) t.join();
    for (auto& e : errors)
        if (e) std::rethrow_exception(e);
    return out;
}

std::unique_ptr<Store> open_store(const StoreLocation& where, Retention retention, StoreOptions options) {
    if (where.backend == StoreLocation::Backend::Postgres)
        return std::make_unique<PgIdentityStore>(where.dsn, where.schema, retention, options);
    return std::make_unique<SqliteIdentityStore>(where.file, retention, options);
}

} // namespace renkei::juki
