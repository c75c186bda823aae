// Helpers shared by tests: temporary directories and free loopback ports.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

namespace renkei::test {

// A fresh directory under the system temp dir, removed (recursively) on destruction.
class TempDir {
public:
    TempDir();
    ~TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    const std::filesystem::path& path() const { return path_; }
    std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

private:
    std::filesystem::path path_;
};

// A TCP port on 127.0.0.1 that was free when asked: random, outside the kernel's ephemeral range
// (so no outgoing connection takes it while a test restarts the listener on it).
int free_port();

// Writes `text` to `path` (creating parent directories).
void write_file(const std::filesystem::path& path, const std::string& text);
std::string read_file(const std::filesystem::path& path);

// The first column of the first row `sql` returns from the SQLite file `db`, on a connection of
// its own (WAL lets it read while a host writes); 0 when there is no row. Throws sqlite::Error
// naming the file (no such table, ...).
int64_t sqlite_scalar(const std::filesystem::path& db, const std::string& sql);

// Path of a plugin built in this tree, e.g. plugin_path("adapters/mock-echo", "mock_echo").
std::string plugin_path(const std::string& subdir, const std::string& target);

// The outcome of running the renkei binary.
struct Run {
    int code;           // exit status (-1 when it did not exit normally)
    std::string output; // stdout, and stderr unless stdout_only
};
// Runs the built renkei with `args` (shell words), capturing its output.
Run run_renkei(const std::string& args, bool stdout_only = false);

} // namespace renkei::test
