// `renkei load`: a municipality's record file, delivered on media (a municipal merger, a move to a
// new 住民記録システム, an initial load), read with its vendor profile and loaded straight into a
// juki store (J-LIS's 機構保存本人確認情報ファイル, a prefecture's or a CS's) without the message
// path: the same parser and checks as the legacy-file adapter and the juki plugin, one transaction
// for the whole file, a result file, and one audit record with the counts (seed-004c: "imported
// unedited by a tool; received count vs imported count confirmed by both sides").
#pragma once

#include <cstdint>
#include <filesystem>
#include <iosfwd>
#include <string>
#include <vector>

namespace renkei::legacy_file {

struct LoadOptions {
    std::filesystem::path config_file;              // the node's configuration (the store, the audit trail)
    std::vector<std::filesystem::path> plugin_dirs; // as for `renkei host`
    std::string plugin = "juki";                    // the juki plugin instance whose store takes the records
    std::string operator_id, purpose;               // both required: they go into the audit record
    std::filesystem::path profile;                  // the vendor profile
    std::filesystem::path gaiji_table;              // default: the profile's
    std::string municipality;                       // whose file it is (全国地方公共団体コード, 6 digits)
    std::filesystem::path file;                     // the record file
    std::filesystem::path result;                   // default <file>.result; never overwritten
    uint64_t max_bytes = 1ull << 30;                // a bigger file is refused unread
    bool dry_run = false;                           // check every record and write the result; record nothing
    size_t chunk = 10000;                           // records checked and written together
    // A file of at least this many lines, and at least as many as the store holds residents, has
    // the store's search indexes built after its rows rather than row by row.
    size_t rebuild_from = 10000;
    double progress_interval_s = 1;                 // between progress lines on `err`
    std::filesystem::path metrics_file;             // Prometheus text, rewritten with each line and at the end
};

// Exit codes of `renkei load`.
constexpr int kLoadDone = 0;        // loaded; rejected records (if any) are in the result file
constexpr int kLoadFailed = 1;      // nothing loaded: why is in the result file, on `err` and audited
constexpr int kLoadCannotStart = 2; // bad options, configuration or store; nothing loaded or audited
constexpr int kLoadNoResult = 3;    // loaded, but the result file could not be written (the audit record says so)

int run_load(const LoadOptions& options, std::ostream& out, std::ostream& err);

} // namespace renkei::legacy_file
