#include <renkei/import_cli.hpp>

#include <renkei/crypto.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <thread>
#include <vector>

namespace renkei {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

struct Fd {
    int fd = -1;
    ~Fd() {
        if (fd >= 0) ::close(fd);
    }
};

// Copies `from` to `to` (created new, 0600, synced) and returns the SHA-256 of the bytes, hex.
std::string copy_and_hash(const fs::path& from, const fs::path& to) {
    Fd in{::open(from.c_str(), O_RDONLY | O_CLOEXEC)};
    if (in.fd < 0) throw std::runtime_error("cannot read " + from.string());
    Fd out{::open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)};
    if (out.fd < 0) throw std::runtime_error("cannot create " + to.string());
    crypto::Sha256 sha;
    std::vector<char> buf(1 << 20);
    for (;;) {
        ssize_t n = ::read(in.fd, buf.data(), buf.size());
        if (n < 0) throw std::runtime_error("read error on " + from.string());
        if (n == 0) break;
        sha.update(buf.data(), static_cast<size_t>(n));
        for (ssize_t done = 0; done < n;) {
            ssize_t w = ::write(out.fd, buf.data() + done, static_cast<size_t>(n - done));
            if (w <= 0) throw std::runtime_error("write error on " + to.string() + " (disk full?)");
            done += w;
        }
    }
    if (::fsync(out.fd) != 0) throw std::runtime_error("cannot sync " + to.string());
    return crypto::to_hex(sha.peek());
}

void sync_dir(const fs::path& dir) {
    Fd d{::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)};
    if (d.fd >= 0) ::fsync(d.fd);
}

// A result file of adapters/legacy-file: "# key: value" header lines, then a tab-separated table.
struct Result {
    fs::path path;
    std::map<std::string, std::string> header;
    std::vector<std::vector<std::string>> rows; // line, residentCode, outcome, by, field, rule, message, jlis
};

Result read_result(const fs::path& path, bool with_rows) {
    Result r;
    r.path = path;
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("# ", 0) == 0) {
            auto colon = line.find(": ");
            if (colon != std::string::npos) r.header[line.substr(2, colon - 2)] = line.substr(colon + 2);
            continue;
        }
        if (!with_rows) break;
        if (line.empty() || line.rfind("line\t", 0) == 0) continue;
        std::vector<std::string> cols;
        std::stringstream s(line);
        std::string c;
        while (std::getline(s, c, '\t')) cols.push_back(c);
        r.rows.push_back(std::move(cols));
    }
    return r;
}

// The result of our file: the same SHA-256 (a file refused before it was hashed: the same name,
// written since we dropped it).
std::optional<Result> find_result(const fs::path& results, const std::string& digest, const std::string& name,
                                  fs::file_time_type since) {
    std::error_code ec;
    if (!fs::is_directory(results, ec)) return std::nullopt;
    for (auto& e : fs::directory_iterator(results, ec)) {
        auto p = e.path();
        if (p.extension() != ".result") continue;
        auto r = read_result(p, false);
        if (r.header["sha256"] == digest) return r;
        if (r.header["sha256"] == "-" && r.header["file"].rfind(name, 0) == 0 && e.last_write_time(ec) >= since) return r;
    }
    return std::nullopt;
}

// The adapter's progress for `name` from its metrics file (Prometheus text).
struct Progress {
    double total = -1, done = -1, rate = -1, left = -1;
    bool reading = false;
};

Progress read_progress(const fs::path& metrics, const std::string& name) {
    Progress p;
    std::ifstream in(metrics);
    std::string line, label = "file=\"" + name + "\"";
    while (std::getline(in, line)) {
        if (line.empty() || line[0] == '#' || line.find(label) == std::string::npos) continue;
        auto space = line.rfind(' ');
        double v = 0;
        try {
            v = std::stod(line.substr(space + 1));
        } catch (...) {
            continue;
        }
        if (line.rfind("renkei_legacy_file_records{", 0) == 0)
            (line.find("state=\"total\"") != std::string::npos ? p.total : p.done) = v;
        else if (line.rfind("renkei_legacy_file_records_per_second{", 0) == 0)
            p.rate = v;
        else if (line.rfind("renkei_legacy_file_seconds_left{", 0) == 0)
            p.left = v;
        else if (line.rfind("renkei_legacy_file_reading{", 0) == 0)
            p.reading = true;
    }
    return p;
}

std::string duration(double s) {
    char b[32];
    if (s < 120) std::snprintf(b, sizeof b, "%.1f s", s);
    else if (s < 7200) std::snprintf(b, sizeof b, "%d min %02d s", static_cast<int>(s) / 60, static_cast<int>(s) % 60);
    else std::snprintf(b, sizeof b, "%d h %02d min", static_cast<int>(s) / 3600, static_cast<int>(s) / 60 % 60);
    return b;
}

std::string progress_text(const Progress& p, const std::string& status, double elapsed) {
    char b[256];
    if (p.total >= 0 && p.done >= 0) {
        std::snprintf(b, sizeof b, "%.0f/%.0f records (%.0f%%), %.0f records/s, %s left", p.done, p.total,
                      p.total > 0 ? 100.0 * p.done / p.total : 100.0, p.rate > 0 ? p.rate : 0.0,
                      p.left >= 0 ? ("about " + duration(p.left)).c_str() : "unknown time");
        return b;
    }
    if (status == "recorded") return "recorded by the CS; waiting for J-LIS's answers (" + duration(elapsed) + ")";
    if (p.reading) return "the adapter is reading the file (" + duration(elapsed) + ")";
    return "waiting for the adapter to take the file (" + duration(elapsed) + ")";
}

} // namespace

int run_import_command(const ImportCliOptions& o, std::ostream& out, std::ostream& err) {
    std::error_code ec;
    if (!fs::is_regular_file(o.file, ec)) {
        err << "import: file: " << o.file.string() << " is not a readable file\n";
        return 2;
    }
    fs::path inbox = o.dir / "inbox", results = o.dir / "results";
    if (!fs::is_directory(inbox, ec)) {
        err << "import: --dir: " << o.dir.string()
            << " has no inbox/ (give the legacy-file adapter's `dir` setting; the adapter creates it when it starts)\n";
        return 2;
    }
    std::string name = o.name.empty() ? o.file.filename().string() : o.name;
    auto ends = [&](const char* s) { return name.size() >= strlen(s) && name.compare(name.size() - strlen(s), strlen(s), s) == 0; };
    if (name.empty() || name[0] == '.' || name.find('/') != std::string::npos || ends(".tmp") || ends(".part")) {
        err << "import: name: '" << name << "' would be ignored by the adapter (no leading '.', no '/', not *.tmp or *.part)\n";
        return 2;
    }
    if (fs::exists(inbox / name, ec)) {
        err << "import: name: " << (inbox / name).string() << " is already waiting in the inbox; give another --name\n";
        return 2;
    }
    fs::path metrics = o.metrics_file.empty() ? o.dir / "legacy-file.prom" : o.metrics_file;

    // Copied in under a name the adapter ignores, synced, then renamed in: it sees all or nothing.
    auto since = fs::file_time_type::clock::now() - std::chrono::seconds(1);
    fs::path part = inbox / ("." + name + ".part");
    std::string digest;
    try {
        digest = copy_and_hash(o.file, part);
        fs::rename(part, inbox / name);
        sync_dir(inbox);
    } catch (const std::exception& e) {
        fs::remove(part, ec);
        err << "import: " << e.what() << "\n";
        return 2;
    }
    auto size = fs::file_size(inbox / name, ec);
    out << "import: " << name << " (" << size << " bytes, sha256 " << digest.substr(0, 16) << "...) is in "
        << inbox.string() << "\n";
    out.flush();

    auto t0 = Clock::now();
    auto last_line = t0 - std::chrono::hours(1);
    std::string shown;
    std::optional<Result> result;
    std::string status;
    for (;;) {
        result = find_result(results, digest, name, since);
        status = result ? result->header["status"] : "";
        if (status == "failed" || status == "complete" || (status == "recorded" && !o.wait_for_jlis)) break;
        double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
        if (elapsed > o.timeout_s) break;
        auto text = progress_text(read_progress(metrics, name), status, elapsed);
        if (o.terminal) {
            if (text != shown) {
                out << "\r" << text << std::string(shown.size() > text.size() ? shown.size() - text.size() : 0, ' ');
                out.flush();
                shown = text;
            }
        } else if (Clock::now() - last_line >= std::chrono::duration<double>(o.interval_s)) {
            out << text << "\n";
            out.flush();
            last_line = Clock::now();
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    if (o.terminal && !shown.empty()) out << "\r" << std::string(shown.size(), ' ') << "\r";
    double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();

    if (!result || status.empty() || (status != "failed" && status != "complete" && status != "recorded")) {
        out << name << ": no result after " << duration(elapsed) << "; the adapter carries on, its result will be in "
            << results.string() << "\n";
        return 1;
    }
    auto full = read_result(result->path, true);
    auto& h = full.header;
    fs::path moved = (status == "failed" ? o.dir / "failed" : o.dir / "processed") / full.path.stem();
    if (status == "failed") {
        out << name << ": refused whole after " << duration(elapsed) << ": " << h["error"];
        if (!h["at"].empty()) out << " (" << h["at"] << ")";
        out << "\n  nothing of it was sent; result: " << full.path.string() << "\n  the file: " << moved.string() << "\n";
        return 1;
    }
    size_t rejected = 0;
    for (auto& r : full.rows)
        if (r.size() >= 8 && (r[2] == "rejected" || r[7] == "rejected")) ++rejected;
    double records = 0;
    try {
        records = std::stod(h["records"]);
    } catch (...) {
    }
    char rate[64];
    std::snprintf(rate, sizeof rate, "%.0f records/s", elapsed > 0 ? records / elapsed : 0.0);
    out << name << ": " << (status == "complete" ? "complete (J-LIS answered every record)" : "recorded by the CS")
        << " in " << duration(elapsed) << ", " << rate << "\n  " << h["records"] << "\n";
    if (rejected > 0) {
        out << "  rejected records (" << std::min<size_t>(rejected, 10) << " of " << rejected << " shown):\n";
        size_t shown_rows = 0;
        for (auto& r : full.rows) {
            if (r.size() < 8 || (r[2] != "rejected" && r[7] != "rejected")) continue;
            if (shown_rows++ == 10) break;
            out << "    line " << r[0] << " " << r[1] << ": " << (r[2] == "rejected" ? "by " + r[3] : std::string("by J-LIS"))
                << ", " << r[4] << " (" << r[5] << ") " << r[6] << "\n";
        }
    }
    out << "  result: " << full.path.string() << "\n  the file: " << moved.string() << "\n";
    return rejected > 0 ? 3 : 0;
}

} // namespace renkei
