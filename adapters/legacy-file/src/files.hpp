// File handling with the guarantees the adapter promises: a file is read only while it stays the
// same file (inode, size, mtime, ctime before and after the read and a settle period), results are
// written atomically (temp + fsync + rename + directory fsync), and files move between folders with
// an atomic rename that never replaces an existing file.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>

namespace renkei::legacy_file {

struct FileIdentity {
    uint64_t dev = 0, ino = 0, size = 0;
    int64_t mtime_ns = 0, ctime_ns = 0;
    bool operator==(const FileIdentity&) const = default;
};

struct StableRead {
    enum Outcome { ok, too_big, replaced, vanished } outcome = ok;
    std::string bytes;  // ok only
    std::string digest; // SHA-256 of bytes, hex
    uint64_t size = 0;  // as first seen
    std::string detail; // what changed, for too_big / replaced
};

// Reads `path` whole if it is at most `max_bytes`, then waits `settle_ms` (through `wait`, which
// returns false when the adapter stops) and checks that the path still names the same, unchanged
// file. Throws std::runtime_error on an I/O error.
StableRead read_stable(const std::filesystem::path& path, uint64_t max_bytes, int64_t settle_ms,
                       const std::function<bool(int64_t)>& wait);

std::string sha256_hex(const void* data, size_t size);

// Writes `content` to `path` so that a reader sees the old file or the new one, never a part.
// Without `replace`, an existing `path` is kept and the call throws.
void write_atomic(const std::filesystem::path& path, const std::string& content, bool replace = true);

// `s` as one cell of a tab-separated result line (tabs and line ends become spaces).
std::string tsv_cell(std::string s);

// A result file's column line, and one record's line under it (the layout in README.md), as the
// adapter and `renkei load` write them.
constexpr const char* kResultColumns = "line\tresidentCode\toutcome\tby\tfield\trule\tmessage\tjlis\n";
std::string result_line(size_t line, const std::string& code, const std::string& outcome, const std::string& by,
                        const std::string& field, const std::string& rule, const std::string& message,
                        const std::string& jlis);

// `s` as a Prometheus label value (backslash, quote and line end escaped).
std::string prom_label(const std::string& s);

// Moves `from` into `dir` as `name` (or `name.<suffix>` / `name.<suffix>.<n>` when taken), never
// replacing a file; fsyncs both directories. Returns the new path.
std::filesystem::path move_into(const std::filesystem::path& from, const std::filesystem::path& dir,
                                const std::string& name, const std::string& suffix);

} // namespace renkei::legacy_file
