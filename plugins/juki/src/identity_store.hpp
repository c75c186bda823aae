// The 本人確認情報 store every juki role keeps (市町村CS, 都道府県サーバ, 機構保存本人確認情報ファイル):
// the current record per 住民票コード with its full change history (superseded versions), the answers already given per
// received batch (so redelivery changes nothing), what this node sent and awaits a 更新件数リスト
// for, alarms, provision records (who received whose data, 7 years), CS-to-CS notices received,
// and the erasure log. Two backends behind one interface (`Store`): SQLite (one file, the default)
// and PostgreSQL (pg_store.hpp).
#pragma once

#include "transaction.hpp"

#include <juki.capnp.h>

#include <capnp/message.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

struct sqlite3;
struct sqlite3_stmt;

namespace renkei::juki {

constexpr int64_t kYearMs = 365LL * 24 * 3600 * 1000 + 6LL * 3600 * 1000; // 365.25 days

struct Retention {
    int64_t history_ms = 150 * kYearMs;     // 除票 and superseded versions (J-LIS: 150 years)
    int64_t removed_ms = 150 * kYearMs;     // a deleted resident, counted from the deletion
    int64_t provisions_ms = 7 * kYearMs;    // provision records (刑事訴訟法250条2項4号)
};

// Records as a store keeps them in its `record` column (pack_record), packed back to back: what a
// load's caller prepares on a thread of its own so the writing thread only binds them.
class PackedRecords {
public:
    // Canonicalises and packs `record` after the others.
    void add(IdentityRecord::Reader record);
    size_t size() const { return ends_.size(); }
    kj::ArrayPtr<const uint8_t> operator[](size_t i) const {
        size_t begin = i == 0 ? 0 : ends_[i - 1];
        return kj::arrayPtr(bytes_.data() + begin, ends_[i] - begin);
    }
    void reserve(size_t records, size_t bytes) {
        ends_.reserve(records);
        bytes_.reserve(bytes);
    }

private:
    std::vector<uint8_t> bytes_;
    std::vector<size_t> ends_;
};

struct StoreOptions {
    bool search_indexes = true;             // 個人番号 / 4情報 / municipality indexes (query-answering roles)
    int64_t cache_kib = 32768;              // SQLite page cache
    int64_t mmap_bytes = 1LL << 30;         // memory-mapped I/O (SQLite caps it at 2 GiB)
};

struct Resident {
    std::string code, municipality, my_number;
    bool removed = false;
    int64_t updated_ms = 0;
    std::vector<uint8_t> record; // canonical IdentityRecord bytes (one segment, no table)
};

// What this node sent and awaits a 更新件数リスト for, from one hop ("pref" or "jlis").
struct Expectation {
    std::string batch, stage, to, municipality;
    uint32_t count = 0;
    std::vector<uint8_t> hashes;   // SHA-256 of each sent record, in order
    std::vector<uint8_t> context;  // role-specific (a prefecture: how to answer the CS)
    int64_t sent_ms = 0, deadline_ms = 0, confirmed_ms = 0;
};

struct ProvisionRow {
    int64_t at_ms = 0;
    std::string recipient, affair, subject, outcome, operator_id, detail;
};

struct Alarm {
    int64_t at_ms = 0;
    std::string batch, detail;
};

struct ErasureCounts {
    uint64_t history = 0, residents = 0, provisions = 0;
};

// Where a store lives: a SQLite file (the zero-set-up default: municipalities, prefectures, tests)
// or a schema in a PostgreSQL database (J-LIS's national store for 125 million residents).
struct StoreLocation {
    enum class Backend { Sqlite, Postgres };
    Backend backend = Backend::Sqlite;
    std::filesystem::path file;   // SQLite
    std::string dsn;              // PostgreSQL: a libpq connection string or postgresql:// URI
    std::string schema = "juki";  // PostgreSQL: the schema holding the tables
};

class ReaderPool;

// The store, whichever backend. The plugin sees only this; each backend keeps its own statements
// and layout (the SQLite one is tuned for a single file, the PostgreSQL one for a server).
class Store : public Transactional {
public:
    Store() = default;
    Store(const Store&) = delete;
    Store& operator=(const Store&) = delete;

    // "SQLite <file>" or "PostgreSQL <connection without password> schema <name>", for logs.
    virtual std::string describe() const = 0;
    // Read-only connections for answering many lookups at once (J-LIS's batch queries).
    virtual std::unique_ptr<ReaderPool> readers(size_t connections) = 0;
    // The first value of the first row of `sql` (an integer) on the store's connection; for
    // operators' diagnostics and tests. 0 when there is no row.
    virtual int64_t scalar(const std::string& sql) = 0;
    // The schema version the store is at.
    virtual int schema_version() = 0;

    virtual std::optional<Resident> get(const std::string& code) = 0;
    // A hint inside a transaction: get() will be asked for these codes (an update batch's
    // residents). A backend whose every read is a round trip to a server (PostgreSQL) reads them
    // all now and answers get() from that until the code is written or the transaction ends; the
    // default does nothing.
    virtual void prefetch(const std::vector<std::string>& codes) { (void)codes; }
    // Records `record` as the current version of its 住民票コード; the version it replaces joins the
    // history. `replaces` false says the caller knows there is none (a first record: one write less).
    virtual void put(IdentityRecord::Reader record, const std::vector<uint8_t>& canonical, bool removed,
                     int64_t now_ms, bool replaces = true) = 0;
    // An initial load (移行, a benchmark): first versions of residents the store does not hold, in
    // one transaction; refused as a whole (nothing recorded) if any of them is already there.
    // `packed[i]` is records[i] as PackedRecords::add packs it (std::invalid_argument when the
    // counts differ).
    void load(capnp::List<IdentityRecord>::Reader records, const PackedRecords& packed, int64_t now_ms);
    // The same, packing the records here.
    void load(capnp::List<IdentityRecord>::Reader records, int64_t now_ms);
    // Around a large load (`renkei load` into a store that holds fewer residents than the file
    // brings): the search indexes go inside the load's transaction, before the rows, and are built
    // again once it has committed, in a transaction of their own. A sorted build is several times
    // cheaper than as many random inserts. The rows are all in or all out as before; the indexes
    // are derived from them: a reader between the two commits finds the rows by full scans, and a
    // crash between them leaves the indexes to be built when the store next opens (a store that
    // keeps them creates any that are missing). Called inside a transaction, build_search_indexes()
    // builds in it. The default does nothing.
    virtual void drop_search_indexes() {}
    virtual void build_search_indexes() {}
    // 住民票コード変更: the old code's current row goes (its history stays, linked to the new code).
    virtual void retire_code(const std::string& old_code, const std::string& new_code, int64_t now_ms) = 0;
    virtual std::vector<Resident> by_number(const std::string& my_number) = 0;
    // 4情報 search: `name` matches kanji or kana; empty / zero arguments are not conditions.
    virtual std::vector<Resident> by_attributes(const std::string& name, const std::string& birth, int sex,
                                                const std::string& address) = 0;
    // Every current resident of `municipality` (removed ones excluded), in code order, in pages.
    virtual std::vector<Resident> residents_of(const std::string& municipality, const std::string& after_code,
                                               size_t limit) = 0;
    virtual uint64_t count() = 0;
    // min(count(), limit), reading at most `limit` rows: whether a store of 125 million residents
    // holds more than a file brings costs the file's size, not the store's.
    virtual uint64_t count_up_to(uint64_t limit) = 0;

    // Answers already given to (sender, batch).
    virtual std::optional<std::vector<uint8_t>> answer(const std::string& sender, const std::string& batch) = 0;
    virtual void save_answer(const std::string& sender, const std::string& batch, const std::vector<uint8_t>& answer,
                             int64_t now_ms) = 0;

    virtual void expect(const Expectation& e) = 0;
    virtual std::optional<Expectation> expected(const std::string& batch, const std::string& stage) = 0;
    virtual void confirm(const std::string& batch, const std::string& stage, int64_t now_ms) = 0;
    virtual std::vector<Expectation> pending() = 0;
    virtual void alarm(const std::string& batch, const std::string& detail, int64_t now_ms) = 0;
    virtual std::vector<Alarm> alarms() = 0;

    virtual void record_provision(const ProvisionRow& row) = 0;
    virtual std::vector<ProvisionRow> provisions_of(const std::string& subject) = 0;

    virtual void record_notice(const std::string& type, const std::string& from, const std::string& subject,
                               const std::vector<uint8_t>& body, int64_t now_ms) = 0;
    virtual uint64_t notices(const std::string& type) = 0;

    // Consistency check bookkeeping (national role): codes seen per check, chunks received.
    virtual bool chunk_seen(const std::string& check, uint32_t chunk) = 0; // records the chunk; true if it was already in
    virtual void mark_seen(const std::string& check, const std::string& code) = 0;
    virtual uint32_t chunks(const std::string& check) = 0;
    // Current residents of `municipality` not seen in `check`, in code order from `after_code`.
    virtual std::vector<std::string> unseen(const std::string& check, const std::string& municipality,
                                            const std::string& after_code, size_t limit) = 0;
    virtual void forget_check(const std::string& check) = 0;
    virtual void set_total(const std::string& check, uint32_t chunks) = 0;
    virtual std::optional<uint32_t> total(const std::string& check) = 0;
    virtual uint64_t seen(const std::string& check) = 0;
    virtual void add_difference(const std::string& check, const std::string& code, int kind, const std::string& fields,
                                const std::string& registered_at) = 0;
    struct StoredDifference {
        std::string code;
        int kind = 0;
        std::string fields, registered_at;
    };
    virtual std::vector<StoredDifference> differences(const std::string& check, size_t limit) = 0;
    virtual uint64_t difference_count(const std::string& check, int kind) = 0;

    // Erases what outlived its retention period (see the backend for what erasure means on disk).
    virtual ErasureCounts erase_expired(int64_t now_ms) = 0;

protected:
    // The backend's load(), with a packed record for each record.
    virtual void load_packed(capnp::List<IdentityRecord>::Reader records, const PackedRecords& packed,
                             int64_t now_ms) = 0;
};

// Opens (creating, migrating) the store at `where`.
std::unique_ptr<Store> open_store(const StoreLocation& where, Retention retention = {}, StoreOptions options = {});

// The SQLite backend: one file (WAL); secure_delete so erased data is overwritten in the file.
class SqliteIdentityStore final : public Store {
public:
    SqliteIdentityStore(const std::filesystem::path& file, Retention retention = {}, StoreOptions options = {});
    ~SqliteIdentityStore() override;

    sqlite3* db() { return db_; } // for sql::Stmt in tests and tools

    std::string describe() const override { return "SQLite " + file_.string(); }
    std::unique_ptr<ReaderPool> readers(size_t connections) override;
    int64_t scalar(const std::string& sql) override;
    int schema_version() override;

    std::optional<Resident> get(const std::string& code) override;
    void put(IdentityRecord::Reader record, const std::vector<uint8_t>& canonical, bool removed, int64_t now_ms,
             bool replaces = true) override;
    void drop_search_indexes() override;
    void build_search_indexes() override;
    void retire_code(const std::string& old_code, const std::string& new_code, int64_t now_ms) override;
    std::vector<Resident> by_number(const std::string& my_number) override;
    std::vector<Resident> by_attributes(const std::string& name, const std::string& birth, int sex,
                                        const std::string& address) override;
    std::vector<Resident> residents_of(const std::string& municipality, const std::string& after_code,
                                       size_t limit) override;
    uint64_t count() override;
    uint64_t count_up_to(uint64_t limit) override;

    std::optional<std::vector<uint8_t>> answer(const std::string& sender, const std::string& batch) override;
    void save_answer(const std::string& sender, const std::string& batch, const std::vector<uint8_t>& answer,
                     int64_t now_ms) override;

    void expect(const Expectation& e) override;
    std::optional<Expectation> expected(const std::string& batch, const std::string& stage) override;
    void confirm(const std::string& batch, const std::string& stage, int64_t now_ms) override;
    std::vector<Expectation> pending() override;
    void alarm(const std::string& batch, const std::string& detail, int64_t now_ms) override;
    std::vector<Alarm> alarms() override;

    void record_provision(const ProvisionRow& row) override;
    std::vector<ProvisionRow> provisions_of(const std::string& subject) override;

    void record_notice(const std::string& type, const std::string& from, const std::string& subject,
                       const std::vector<uint8_t>& body, int64_t now_ms) override;
    uint64_t notices(const std::string& type) override;

    bool chunk_seen(const std::string& check, uint32_t chunk) override;
    void mark_seen(const std::string& check, const std::string& code) override;
    uint32_t chunks(const std::string& check) override;
    std::vector<std::string> unseen(const std::string& check, const std::string& municipality,
                                    const std::string& after_code, size_t limit) override;
    void forget_check(const std::string& check) override;
    void set_total(const std::string& check, uint32_t chunks) override;
    std::optional<uint32_t> total(const std::string& check) override;
    uint64_t seen(const std::string& check) override;
    void add_difference(const std::string& check, const std::string& code, int kind, const std::string& fields,
                        const std::string& registered_at) override;
    std::vector<StoredDifference> differences(const std::string& check, size_t limit) override;
    uint64_t difference_count(const std::string& check, int kind) override;

    ErasureCounts erase_expired(int64_t now_ms) override;

protected:
    void load_packed(capnp::List<IdentityRecord>::Reader records, const PackedRecords& packed, int64_t now_ms) override;
    bool tx_begin(TxKind kind) override;
    void tx_commit(bool nested) override;
    void tx_rollback(bool nested) noexcept override;

private:
    void supersede(const std::string& code, int64_t now_ms);
    sqlite3_stmt* cached(const char* text); // prepared once, reset by sql::Stmt after each use
    void end_bulk() noexcept;               // the checkpoint after each commit again

    sqlite3* db_ = nullptr;
    std::filesystem::path file_;
    Retention retention_;
    StoreOptions options_;
    std::map<const char*, sqlite3_stmt*> statements_;
    std::string autocheckpoint_;            // the PRAGMA that sets it as the store runs
    bool bulk_ = false;                     // search indexes dropped by a load: no checkpoint at its commit
};

// Code written before the store had backends names the SQLite one so.
using IdentityStore = SqliteIdentityStore;

// Read-only connections to a store for answering many lookups at once (a batch query at J-LIS):
// each thread reads through its own connection, so a batch of keys uses every core while the
// plugin's own connection keeps writing. SQLite: WAL readers never block each other or the writer.
// PostgreSQL: one server connection (one backend process) per reader, each reading a snapshot.
class ReaderPool {
public:
    // One connection of a pool: reads the keys numbers[from, to) into out[from, to).
    class Reader {
    public:
        virtual ~Reader() = default;
        virtual void lookup(const std::vector<std::string>& numbers, std::vector<std::vector<Resident>>& out,
                            size_t from, size_t to) = 0;
    };
    explicit ReaderPool(std::vector<std::unique_ptr<Reader>> readers);
    // SQLite readers on `file`.
    ReaderPool(const std::filesystem::path& file, size_t connections, StoreOptions options = {});
    ~ReaderPool();
    ReaderPool(const ReaderPool&) = delete;
    ReaderPool& operator=(const ReaderPool&) = delete;

    size_t size() const { return readers_.size(); }
    // The current residents holding each 個人番号, in the order of `numbers`. Batches of fewer than
    // `kParallelFrom` keys are read on the calling thread.
    std::vector<std::vector<Resident>> by_numbers(const std::vector<std::string>& numbers);
    static constexpr size_t kParallelFrom = 256;

private:
    std::vector<std::unique_ptr<Reader>> readers_;
};

// SHA-256 helpers for the 更新件数リスト.
std::vector<uint8_t> sha256(const void* data, size_t size);
// SHA-256 over the concatenation of the 32-byte hashes in `hashes` at positions not in `skip`.
std::vector<uint8_t> digest_of(const std::vector<uint8_t>& hashes, const std::vector<uint32_t>& skip);
std::vector<uint8_t> canonical_bytes(IdentityRecord::Reader record);
// How a record is kept in a store's `record` column: its canonical bytes packed (Cap'n Proto's
// packing, with the one-segment table in front). Packing drops the zero bytes of the pointers and
// the short texts' padding: a typical record takes about 256 bytes instead of 440, so a row and
// everything that copies it (the WAL, the checkpoint, the page cache) is a third smaller.
// `out` is overwritten; a loop passes the same buffer for every record.
void pack_record(const void* canonical, size_t size, std::vector<uint8_t>& out);
// A `record` column's bytes back as canonical bytes. A row written before records were packed
// holds them canonical, and is returned as it is: canonical bytes start with a zero byte (the root
// pointer's offset is 0), packed ones never do (their first tag byte marks the segment's size).
// Throws std::runtime_error naming `code` when the bytes cannot be unpacked.
std::vector<uint8_t> unpack_record(std::vector<uint8_t> stored, const std::string& code);
// Reads canonical bytes written by canonical_bytes (copies into aligned words).
class RecordReader {
public:
    explicit RecordReader(const std::vector<uint8_t>& canonical);
    IdentityRecord::Reader get();

private:
    kj::Array<capnp::word> words_;
    kj::Own<capnp::MessageReader> reader_;
};

std::string date_text(schema::Date::Reader d); // "YYYY-MM-DD", "" for year 0

} // namespace renkei::juki
