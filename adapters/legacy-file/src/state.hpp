// The adapter's durable progress (one SQLite file, WAL, synchronous FULL): each claimed input file
// by its SHA-256, every record's outcome, and the IdentityUpdate batches built from it with what
// each tier answered. Built batches are stored before the first is sent, so a restart re-sends
// exactly the same batches under the same ids, and the CS answers a batch id it has seen with its
// saved answer: nothing is lost or applied twice. Thread-safe (one mutex).
#pragma once

#include <cstdint>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

struct sqlite3;

namespace renkei::legacy_file {

struct FileRow {
    std::string digest, name, work_path, final_path, phase; // phase: sending | recorded | complete
    uint64_t size = 0;
    uint32_t records = 0, batches = 0;
    int64_t claimed_ms = 0, recorded_ms = 0, complete_ms = 0;
};

struct BatchRow {
    uint32_t chunk = 0;
    std::string batch_id;
    uint32_t count = 0, accepted = 0;
    int64_t sent_ms = 0;
    bool cs = false, jlis = false;
};

struct RecordRow {
    uint64_t line = 0;
    std::string code;
    int64_t chunk = -1; // -1: refused by the adapter, never sent
    uint32_t index = 0;
    std::string outcome; // pending | accepted | rejected
    std::string by;      // who refused: adapter | muni:... | pref:... | jlis:...
    std::string field, rule, message;
    std::string jlis;    // "" | recorded | rejected
};

struct Refused {
    uint32_t index = 0;
    std::string field, rule, message;
};

class State {
public:
    explicit State(const std::filesystem::path& file);
    ~State();
    State(const State&) = delete;
    State& operator=(const State&) = delete;

    std::optional<FileRow> file(const std::string& digest);
    std::vector<FileRow> files(const std::string& phase);
    // Claims a file: its row, every record's row and every batch (flat IdentityUpdate bytes), in
    // one transaction.
    void claim(const FileRow& f, const std::vector<RecordRow>& records,
               const std::vector<std::pair<BatchRow, std::vector<uint8_t>>>& batches);
    std::vector<BatchRow> batches(const std::string& digest);
    std::vector<uint8_t> payload(const std::string& digest, uint32_t chunk);
    void sent(const std::string& digest, uint32_t chunk, int64_t now_ms, const std::vector<uint8_t>& envelope_id);
    // The batch (digest, chunk) a batch id or a sent envelope id names.
    std::optional<std::pair<std::string, uint32_t>> batch_by_id(const std::string& batch_id);
    std::optional<std::pair<std::string, uint32_t>> batch_by_envelope(const std::vector<uint8_t>& envelope_id);

    // The CS's answer (indices into the batch as sent). False if the batch had its answer already.
    bool cs_answer(const std::string& digest, uint32_t chunk, const std::string& by, const std::vector<Refused>& refused);
    // A later tier's list (indices into what the CS forwarded: the records it accepted, in order);
    // `final` marks J-LIS's list, after which every forwarded record is recorded or rejected there.
    bool later_answer(const std::string& digest, uint32_t chunk, const std::string& by, bool final,
                      const std::vector<Refused>& refused);

    void set_phase(const std::string& digest, const std::string& phase, int64_t now_ms,
                   const std::string& final_path = {});
    void drop_payloads(const std::string& digest);
    std::vector<RecordRow> records(const std::string& digest);
    struct Counts {
        uint64_t total = 0, accepted = 0, rejected = 0, jlis_recorded = 0, jlis_rejected = 0;
    };
    Counts counts(const std::string& digest);
    // Records of the file the CS has not answered yet, from the batches alone (not a count over
    // every record row: progress asks for it every few seconds of a long import).
    uint64_t pending(const std::string& digest);
    uint64_t files_with_phase(const std::string& phase);

private:
    static constexpr int kSchemaVersion = 2;
    void exec(const char* sql);
    void migrate(const std::filesystem::path& file); // creates or brings the layout up to kSchemaVersion
    void apply_later(const std::string& digest, uint32_t chunk, const std::string& by, bool final,
                     const std::vector<Refused>& refused); // inside a transaction, under the lock
    static std::string encode(const std::vector<Refused>& refused);
    static std::vector<Refused> decode(const std::string& text);
    sqlite3* db_ = nullptr;
    std::mutex mutex_;
};

} // namespace renkei::legacy_file
