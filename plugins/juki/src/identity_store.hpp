// The 本人確認情報 store every juki role keeps (市町村CS, 都道府県サーバ, 機構保存本人確認情報ファイル):
// the current record per 住民票コード with its full change history (superseded versions), the answers already given per
// received batch (so redelivery changes nothing), what this node sent and awaits a 更新件数リスト
// for, alarms, provision records (who received whose data, 7 years), CS-to-CS notices received,
// and the erasure log. One SQLite file (WAL); secure_delete so erased data is overwritten.
#pragma once

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

class IdentityStore {
public:
    IdentityStore(const std::filesystem::path& file, Retention retention = {}, StoreOptions options = {});
    ~IdentityStore();
    IdentityStore(const IdentityStore&) = delete;
    IdentityStore& operator=(const IdentityStore&) = delete;

    sqlite3* db() { return db_; } // for sql::Tx around several calls

    std::optional<Resident> get(const std::string& code);
    // Records `record` as the current version of its 住民票コード; the version it replaces joins the
    // history. `replaces` false says the caller knows there is none (a first record: one write less).
    void put(IdentityRecord::Reader record, const std::vector<uint8_t>& canonical, bool removed, int64_t now_ms,
             bool replaces = true);
    // 住民票コード変更: the old code's current row goes (its history stays, linked to the new code).
    void retire_code(const std::string& old_code, const std::string& new_code, int64_t now_ms);
    std::vector<Resident> by_number(const std::string& my_number);
    // 4情報 search: `name` matches kanji or kana; empty / zero arguments are not conditions.
    std::vector<Resident> by_attributes(const std::string& name, const std::string& birth, int sex,
                                        const std::string& address);
    // Every current resident of `municipality` (removed ones excluded), in code order, in pages.
    std::vector<Resident> residents_of(const std::string& municipality, const std::string& after_code, size_t limit);
    uint64_t count();

    // Answers already given to (sender, batch).
    std::optional<std::vector<uint8_t>> answer(const std::string& sender, const std::string& batch);
    void save_answer(const std::string& sender, const std::string& batch, const std::vector<uint8_t>& answer,
                     int64_t now_ms);

    void expect(const Expectation& e);
    std::optional<Expectation> expected(const std::string& batch, const std::string& stage);
    void confirm(const std::string& batch, const std::string& stage, int64_t now_ms);
    std::vector<Expectation> pending();
    void alarm(const std::string& batch, const std::string& detail, int64_t now_ms);
    std::vector<Alarm> alarms();

    void record_provision(const ProvisionRow& row);
    std::vector<ProvisionRow> provisions_of(const std::string& subject);

    void record_notice(const std::string& type, const std::string& from, const std::string& subject,
                       const std::vector<uint8_t>& body, int64_t now_ms);
    uint64_t notices(const std::string& type);

    // Consistency check bookkeeping (national role): codes seen per check, chunks received.
    bool chunk_seen(const std::string& check, uint32_t chunk); // records the chunk; true if it was already in
    void mark_seen(const std::string& check, const std::string& code);
    uint32_t chunks(const std::string& check);
    // Current residents of `municipality` not seen in `check`, in code order from `after_code`.
    std::vector<std::string> unseen(const std::string& check, const std::string& municipality,
                                    const std::string& after_code, size_t limit);
    void forget_check(const std::string& check);
    void set_total(const std::string& check, uint32_t chunks);
    std::optional<uint32_t> total(const std::string& check);
    uint64_t seen(const std::string& check);
    void add_difference(const std::string& check, const std::string& code, int kind, const std::string& fields,
                        const std::string& registered_at);
    struct StoredDifference {
        std::string code;
        int kind = 0;
        std::string fields, registered_at;
    };
    std::vector<StoredDifference> differences(const std::string& check, size_t limit);
    uint64_t difference_count(const std::string& check, int kind);

    ErasureCounts erase_expired(int64_t now_ms);

private:
    void supersede(const std::string& code, int64_t now_ms);
    sqlite3_stmt* cached(const char* text); // prepared once, reset by sql::Stmt after each use

    sqlite3* db_ = nullptr;
    Retention retention_;
    std::map<const char*, sqlite3_stmt*> statements_;
};

// Read-only connections to a store for answering many lookups at once (a batch query at J-LIS):
// each thread reads through its own connection (WAL readers never block each other or the
// writer), so a batch of keys uses every core while the plugin's own connection keeps writing.
class ReaderPool {
public:
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
    struct Reader;
    std::vector<std::unique_ptr<Reader>> readers_;
};

// SHA-256 helpers for the 更新件数リスト.
std::vector<uint8_t> sha256(const void* data, size_t size);
// SHA-256 over the concatenation of the 32-byte hashes in `hashes` at positions not in `skip`.
std::vector<uint8_t> digest_of(const std::vector<uint8_t>& hashes, const std::vector<uint32_t>& skip);
std::vector<uint8_t> canonical_bytes(IdentityRecord::Reader record);
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
