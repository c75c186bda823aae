// The PostgreSQL backend of the juki store (J-LIS's national file for 125 million residents): the
// same tables as the SQLite backend in one schema of a database (default `juki`), every statement
// prepared once per connection, records as bytea, versioned migrations in `schema_version`.
//
// Erasure: PostgreSQL has no secure_delete. erase_expired deletes the rows in one transaction; the
// deleted tuples stay in the table's pages (and in the WAL, in WAL archives and base backups) until
// VACUUM marks their space reusable and later writes overwrite it. VACUUM does not zero anything,
// and VACUUM FULL writes a new copy of the table and unlinks the old files without overwriting
// them. What remains on disk is covered only by the operator's storage encryption (an encrypted
// volume under the data directory, the WAL archive and the backups) and by backup retention no
// longer than the erasure periods. See plugins/juki/README.md.
#pragma once

#include "identity_store.hpp"
#include "numbers.hpp"

#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace renkei::juki {

namespace pg {
class Conn;
}

// True if `name` may name the store's schema: [a-z_][a-z0-9_]*, at most 63 characters.
bool valid_schema_name(const std::string& name);

class PgIdentityStore final : public Store {
public:
    // Connects to `dsn` (libpq keyword string or postgresql:// URI), creates or migrates `schema`.
    PgIdentityStore(const std::string& dsn, const std::string& schema = "juki", Retention retention = {},
                    StoreOptions options = {});
    ~PgIdentityStore() override;

    // The schema version this build writes; a schema at a newer version is refused.
    static constexpr int kSchemaVersion = 1;

    std::string describe() const override;
    std::unique_ptr<ReaderPool> readers(size_t connections) override;
    int64_t scalar(const std::string& sql) override;
    int schema_version() override;

    std::optional<Resident> get(const std::string& code) override;
    void prefetch(const std::vector<std::string>& codes) override;
    void put(IdentityRecord::Reader record, const std::vector<uint8_t>& canonical, bool removed, int64_t now_ms,
             bool replaces = true) override;
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
    std::string dsn_, schema_;
    Retention retention_;
    StoreOptions options_;
    std::unique_ptr<pg::Conn> c_;
    int depth_ = 0; // open transactions and savepoints
    // prefetch(): code -> its current version (nullopt: none), read in the open transaction; a
    // code leaves it when written, and all of it when the transaction ends.
    std::unordered_map<std::string, std::optional<Resident>> prefetched_;
};

// J-LIS's 個人番号 registry in a PostgreSQL schema of its own (default `juki_numbers`): the same
// tables, answers and numbers as the SQLite NumberRegistry, versioned like the store.
class PgNumberRegistry final : public Numbers {
public:
    PgNumberRegistry(const std::string& dsn, const std::string& schema, std::vector<uint8_t> secret);
    ~PgNumberRegistry() override;

    static constexpr int kSchemaVersion = 1;

    Assignment assign(const std::string& request_id, const std::string& resident_code, bool change,
                      const std::string& reason, int64_t now_ms) override;
    std::vector<std::string> history(const std::string& resident_code) override;
    std::optional<std::string> current(const std::string& resident_code) override;
    void prefetch(const std::vector<std::string>& resident_codes) override;
    std::optional<std::string> holder(const std::string& my_number) override;
    void change_code(const std::string& old_code, const std::string& new_code, int64_t now_ms) override;
    std::string describe() const override;
    int schema_version();

protected:
    bool tx_begin(TxKind kind) override;
    void tx_commit(bool nested) override;
    void tx_rollback(bool nested) noexcept override;

private:
    std::string dsn_, schema_;
    std::unique_ptr<pg::Conn> c_;
    int depth_ = 0;
    // prefetch(): code -> its current number (nullopt: none), as the store's prefetched_.
    std::unordered_map<std::string, std::optional<std::string>> prefetched_;
};

} // namespace renkei::juki
