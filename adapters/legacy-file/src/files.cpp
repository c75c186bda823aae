#include "files.hpp"

#include <openssl/evp.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <stdexcept>
#include <sys/stat.h>
#include <unistd.h>

namespace renkei::legacy_file {
namespace {

[[noreturn]] void io_error(const std::string& what, const std::filesystem::path& path) {
    throw std::runtime_error(what + " " + path.string() + ": " + std::strerror(errno));
}

FileIdentity identity_of(const struct stat& st) {
    FileIdentity f;
    f.dev = st.st_dev;
    f.ino = st.st_ino;
    f.size = static_cast<uint64_t>(st.st_size);
    f.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
    f.ctime_ns = static_cast<int64_t>(st.st_ctim.tv_sec) * 1000000000 + st.st_ctim.tv_nsec;
    return f;
}

std::string differs(const FileIdentity& a, const FileIdentity& b) {
    if (a.dev != b.dev || a.ino != b.ino) return "another file now has its name (inode changed)";
    if (a.size != b.size) return "its size changed from " + std::to_string(a.size) + " to " + std::to_string(b.size) + " bytes";
    if (a.mtime_ns != b.mtime_ns) return "it was modified (mtime changed)";
    if (a.ctime_ns != b.ctime_ns) return "it was changed (ctime changed)";
    return {};
}

void fsync_dir(const std::filesystem::path& dir) {
    int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) io_error("cannot open directory", dir);
    int rc = ::fsync(fd);
    ::close(fd);
    if (rc != 0) io_error("cannot fsync directory", dir);
}

struct Fd {
    int fd = -1;
    ~Fd() {
        if (fd >= 0) ::close(fd);
    }
};

} // namespace

std::string sha256_hex(const void* data, size_t size) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (EVP_Digest(data, size, md, &n, EVP_sha256(), nullptr) != 1) throw std::runtime_error("SHA-256 failed");
    static const char* hexd = "0123456789abcdef";
    std::string out;
    for (unsigned i = 0; i < n; ++i) {
        out += hexd[md[i] >> 4];
        out += hexd[md[i] & 15];
    }
    return out;
}

StableRead read_stable(const std::filesystem::path& path, uint64_t max_bytes, int64_t settle_ms,
                       const std::function<bool(int64_t)>& wait) {
    StableRead r;
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
        if (errno == ENOENT) return r.outcome = StableRead::vanished, r;
        io_error("cannot stat", path);
    }
    auto before = identity_of(st);
    r.size = before.size;
    if (before.size > max_bytes) {
        r.outcome = StableRead::too_big;
        r.detail = std::to_string(before.size) + " bytes";
        return r;
    }
    Fd f;
    f.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (f.fd < 0) {
        if (errno == ENOENT) return r.outcome = StableRead::vanished, r;
        io_error("cannot open", path);
    }
    if (::fstat(f.fd, &st) != 0) io_error("cannot fstat", path);
    if (auto d = differs(before, identity_of(st)); !d.empty()) {
        r.outcome = StableRead::replaced;
        r.detail = d + " as it was opened";
        return r;
    }
    std::string bytes;
    bytes.reserve(static_cast<size_t>(before.size) + 4096); // the read that proves the end grows it in place
    bytes.resize(static_cast<size_t>(before.size));
    size_t got = 0;
    while (true) {
        if (got == bytes.size()) bytes.resize(bytes.size() + 4096); // one more read proves the end
        ssize_t n = ::read(f.fd, bytes.data() + got, bytes.size() - got);
        if (n < 0) {
            if (errno == EINTR) continue;
            io_error("cannot read", path);
        }
        if (n == 0) break;
        got += static_cast<size_t>(n);
        if (got > max_bytes) {
            r.outcome = StableRead::too_big;
            r.detail = "more than " + std::to_string(max_bytes) + " bytes (it grew while being read)";
            return r;
        }
    }
    bytes.resize(got);
    if (got != before.size) {
        r.outcome = StableRead::replaced;
        r.detail = "it had " + std::to_string(before.size) + " bytes when found and " + std::to_string(got) + " when read";
        return r;
    }
    r.digest = sha256_hex(bytes.data(), bytes.size());
    if (settle_ms > 0 && !wait(settle_ms)) return r.outcome = StableRead::vanished, r; // stopping: try again later
    if (::fstat(f.fd, &st) != 0) io_error("cannot fstat", path);
    if (auto d = differs(before, identity_of(st)); !d.empty()) {
        r.outcome = StableRead::replaced;
        r.detail = d + " while it was read";
        return r;
    }
    if (::stat(path.c_str(), &st) != 0) {
        r.outcome = StableRead::replaced;
        r.detail = "it was removed or renamed while it was read";
        return r;
    }
    if (auto d = differs(before, identity_of(st)); !d.empty()) {
        r.outcome = StableRead::replaced;
        r.detail = d + " while it was read";
        return r;
    }
    r.bytes = std::move(bytes);
    return r;
}

void write_atomic(const std::filesystem::path& path, const std::string& content, bool replace) {
    auto dir = path.parent_path().empty() ? std::filesystem::path(".") : path.parent_path(); // "name": here
    std::filesystem::create_directories(dir);
    auto tmp = dir / ("." + path.filename().string() + ".tmp-" + std::to_string(::getpid()));
    {
        Fd f;
        f.fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
        if (f.fd < 0) io_error("cannot create", tmp);
        size_t done = 0;
        while (done < content.size()) {
            ssize_t n = ::write(f.fd, content.data() + done, content.size() - done);
            if (n < 0) {
                if (errno == EINTR) continue;
                io_error("cannot write", tmp);
            }
            done += static_cast<size_t>(n);
        }
        if (::fsync(f.fd) != 0) io_error("cannot fsync", tmp);
    }
    if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, path.c_str(), replace ? 0 : RENAME_NOREPLACE) != 0) {
        int e = errno;
        ::unlink(tmp.c_str());
        errno = e;
        io_error(e == EEXIST ? "will not replace" : "cannot rename into", path);
    }
    fsync_dir(dir);
}

std::string tsv_cell(std::string s) {
    for (auto& c : s)
        if (c == '\t' || c == '\n' || c == '\r') c = ' ';
    return s;
}

std::string result_line(size_t line, const std::string& code, const std::string& outcome, const std::string& by,
                        const std::string& field, const std::string& rule, const std::string& message,
                        const std::string& jlis) {
    return std::to_string(line) + "\t" + tsv_cell(code) + "\t" + tsv_cell(outcome) + "\t" + tsv_cell(by) + "\t" +
           tsv_cell(field) + "\t" + tsv_cell(rule) + "\t" + tsv_cell(message) + "\t" + tsv_cell(jlis) + "\n";
}

std::string prom_label(const std::string& s) {
    std::string out;
    for (char c : s) {
        if (c == '\\' || c == '"') out += '\\';
        if (c == '\n') {
            out += "\\n";
            continue;
        }
        out += c;
    }
    return out;
}

std::filesystem::path move_into(const std::filesystem::path& from, const std::filesystem::path& dir,
                                const std::string& name, const std::string& suffix) {
    std::filesystem::create_directories(dir);
    for (int attempt = 0; attempt < 1000; ++attempt) {
        std::string candidate = attempt == 0 ? name : attempt == 1 ? name + "." + suffix : name + "." + suffix + "." + std::to_string(attempt);
        auto to = dir / candidate;
        if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) == 0) {
            fsync_dir(dir);
            if (from.has_parent_path() && from.parent_path() != dir) fsync_dir(from.parent_path());
            return to;
        }
        if (errno != EEXIST) io_error("cannot move " + from.string() + " to", to);
    }
    throw std::runtime_error("cannot move " + from.string() + " into " + dir.string() + ": every name is taken");
}

} // namespace renkei::legacy_file
