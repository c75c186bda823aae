#include <renkei/audit_log.hpp>

#include <charconv>

#include <renkei/crypto.hpp>
#include <renkei/log.hpp>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/hmac.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>

namespace renkei {
namespace fs = std::filesystem;
namespace {

const std::string kGenesis(64, '0');
const char* const kLockName = "audit.lock";
constexpr size_t kFields = 14; // seq time event id type from to purpose operator outcome detail subject prev hash

// Appends `s` to `out` with tab, newline, carriage return and backslash escaped.
void append_escaped(std::string& out, std::string_view s) {
    // One pass over the bytes (find_first_of with a set calls memchr on the set for every byte).
    auto special = [](char c) { return c == '\\' || c == '\t' || c == '\n' || c == '\r'; };
    if (std::none_of(s.begin(), s.end(), special)) {
        out += s;
        return;
    }
    for (char c : s) {
        if (c == '\\') out += "\\\\";
        else if (c == '\t') out += "\\t";
        else if (c == '\n') out += "\\n";
        else if (c == '\r') out += "\\r";
        else out.push_back(c);
    }
}

std::vector<std::string> split(const std::string& line) {
    std::vector<std::string> out(1);
    for (char c : line) {
        if (c == '\t') out.emplace_back();
        else out.back().push_back(c);
    }
    return out;
}

// Appends a record's fields after its sequence number and before the hashes: time, event,
// message id, type, from, to, purpose, operator, outcome, detail (escaped) and `subject_hmac`.
void format_fields(std::string& out, const AuditFields& r, std::string_view subject_hmac) {
    char number[24];
    out.append(number, std::to_chars(number, number + sizeof number, r.time_ms).ptr);
    for (std::string_view f : {r.event, r.message_id, r.type, r.from, r.to, r.purpose, r.operator_id, r.outcome, r.detail}) {
        out += '\t';
        append_escaped(out, f);
    }
    out += '\t';
    out += subject_hmac;
}

// SHA-256(prev || "\t" || body), written in hex into `hex`; `h` is reused across records.
void chain_hash(crypto::Sha256& h, std::string_view prev, std::string_view body, char hex[64]) {
    h.update(prev.data(), prev.size());
    h.update("\t", 1);
    h.update(body.data(), body.size());
    uint8_t d[32];
    h.finish(d);
    crypto::to_hex({d, sizeof d}, hex);
}

std::string file_name(uint64_t first_seq) {
    char buf[48];
    snprintf(buf, sizeof buf, "audit-%020llu.log", static_cast<unsigned long long>(first_seq));
    return buf;
}

// The log files in sequence order.
std::vector<fs::path> log_files(const fs::path& dir) {
    std::vector<fs::path> files;
    std::error_code ec;
    for (auto& e : fs::directory_iterator(dir, ec)) {
        auto n = e.path().filename().string();
        if (n.rfind("audit-", 0) == 0 && n.size() > 4 && n.substr(n.size() - 4) == ".log") files.push_back(e.path());
    }
    std::sort(files.begin(), files.end());
    return files;
}

struct Anchor {
    uint64_t seq = 1;
    std::string prev = kGenesis;
};

Anchor read_anchor(const fs::path& dir) {
    Anchor a;
    std::ifstream in(dir / "anchor");
    if (in) in >> a.seq >> a.prev;
    return a;
}

std::vector<uint8_t> load_or_create_key(const fs::path& path) {
    std::ifstream in(path);
    std::string hex;
    if (in && std::getline(in, hex)) return crypto::from_hex(hex);
    fs::create_directories(path.parent_path());
    auto key = crypto::random_bytes(32);
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) throw std::runtime_error(path.string() + ": cannot create the audit key");
    std::string text = crypto::to_hex(key) + "\n";
    bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
    ::close(fd);
    if (!ok) throw std::runtime_error(path.string() + ": cannot write the audit key");
    return key;
}

// An exclusive (or shared) flock on <dir>/audit.lock for as long as it lives.
class DirLock {
public:
    DirLock(int fd, int op) : fd_(fd) {
        while (::flock(fd_, op) != 0) {
            if (errno == EINTR) continue;
            throw std::runtime_error(std::string("cannot lock the audit directory: ") + strerror(errno));
        }
    }
    ~DirLock() { ::flock(fd_, LOCK_UN); }
    DirLock(const DirLock&) = delete;
    DirLock& operator=(const DirLock&) = delete;

private:
    int fd_;
};

} // namespace

AuditLog::AuditLog(fs::path dir, AuditOptions options) : dir_(std::move(dir)), options_(std::move(options)) {
    fs::create_directories(dir_);
    if (options_.key_file.empty()) options_.key_file = dir_.parent_path() / "audit.key";
    auto lock_file = dir_ / kLockName;
    lock_fd_ = ::open(lock_file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lock_fd_ < 0) throw std::runtime_error(lock_file.string() + ": cannot open the audit lock: " + strerror(errno));
    try {
        DirLock lock(lock_fd_, LOCK_EX); // two processes opening at once create one key, cut no live line
        key_ = load_or_create_key(options_.key_file);
        read_tail();
    } catch (...) {
        if (fd_ >= 0) ::close(fd_);
        ::close(lock_fd_);
        throw;
    }
    written_seq_ = queued_seq_ = next_seq_ - 1;
    thread_ = std::thread([this] {
        name_thread("audit-writer");
        writer();
    });
}

AuditLog::~AuditLog() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
        cv_.notify_all();
    }
    if (thread_.joinable()) thread_.join();
    if (fd_ >= 0) ::close(fd_);
    if (lock_fd_ >= 0) ::close(lock_fd_);
}

// Finds where the chain ends; a torn last line (a writer that died mid-write: the lock is held, so
// no live writer is half-way through one) is cut off and reported.
void AuditLog::read_tail() {
    auto anchor = read_anchor(dir_);
    next_seq_ = anchor.seq;
    last_hash_ = anchor.prev;
    current_file_.clear();
    current_size_ = 0;
    auto files = log_files(dir_);
    auto last_record = [](const std::string& content) {
        std::istringstream lines(content);
        std::string line, last;
        while (std::getline(lines, line))
            if (!line.empty()) last = line;
        return split(last);
    };
    if (!files.empty()) {
        current_file_ = files.back();
        std::ifstream in(current_file_, std::ios::binary);
        std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        size_t good = content.rfind('\n');
        good = good == std::string::npos ? 0 : good + 1;
        if (good < content.size()) {
            logger("audit")->warn("{}: cut a torn last record ({} bytes) left by a crash", current_file_.string(),
                                  content.size() - good);
            fs::resize_file(current_file_, good);
            content.resize(good);
        }
        auto f = last_record(content);
        if (f.size() != kFields && content.empty() && files.size() > 1) {
            // Empty newest file: continue from the one before it.
            std::ifstream prev(files[files.size() - 2], std::ios::binary);
            f = last_record(std::string((std::istreambuf_iterator<char>(prev)), std::istreambuf_iterator<char>()));
        }
        if (f.size() == kFields) {
            next_seq_ = std::stoull(f[0]) + 1;
            last_hash_ = f[13];
        }
        current_size_ = content.size();
    }
    if (current_file_.empty() || current_size_ >= options_.max_file_bytes) {
        current_file_ = dir_ / file_name(next_seq_);
        current_size_ = 0;
    }
    open_current();
}

void AuditLog::open_current() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = ::open(current_file_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd_ < 0) throw std::runtime_error(current_file_.string() + ": cannot open the audit log: " + strerror(errno));
}

// Whether another process wrote since this one last did. Every writer keeps the protocol (append
// or start a file only under the lock), so the tail moved iff the file this one writes grew or
// lost its name, or a file starting at the sequence number this one would write next exists
// beside it (another writer rotated, or opened a new file when the newest was full).
bool AuditLog::tail_moved() const {
    struct stat st{};
    if (::fstat(fd_, &st) != 0 || st.st_nlink == 0 || static_cast<uint64_t>(st.st_size) != current_size_) return true;
    auto next = dir_ / file_name(next_seq_);
    std::error_code ec;
    return next != current_file_ && fs::exists(next, ec);
}

std::string AuditLog::hmac(std::string_view value) const {
    unsigned char out[32];
    unsigned int n = 0;
    HMAC(EVP_sha256(), key_.data(), static_cast<int>(key_.size()), reinterpret_cast<const unsigned char*>(value.data()),
         value.size(), out, &n);
    return crypto::to_hex({out, n});
}

void AuditLog::append(const AuditRecord& r) {
    append(AuditFields{r.time_ms, r.event, r.message_id, r.type, r.from, r.to, r.purpose, r.operator_id, r.outcome,
                       r.detail, r.subject});
}

void AuditLog::append(const AuditFields& r) {
    // Formatted here, on the appending threads, so the one writer only numbers, chains and writes;
    // into this thread's scratch, so nothing is allocated per record once it has grown.
    thread_local std::string line;
    line.clear();
    format_fields(line, r, r.subject.empty() ? std::string() : hmac(r.subject));
    line += '\n';
    std::lock_guard lock(mutex_);
    pending_ += line;
    ++pending_records_;
    ++queued_seq_;
    // The writer waits for the first record, then gathers for a moment (see writer()); waking it
    // for every record would cost a system call per record.
    if (pending_records_ == 1 || pending_records_ == kFullBatch) cv_.notify_one();
}

void AuditLog::flush() {
    std::unique_lock lock(mutex_);
    uint64_t target = queued_seq_;
    ++flushing_;
    cv_.notify_one(); // write now, without gathering
    flushed_.wait(lock, [&] { return written_seq_ >= target; });
    --flushing_;
}

uint64_t AuditLog::appended() const {
    std::lock_guard lock(mutex_);
    return queued_seq_;
}

// Serialises `batch` onto the chain's tail, writes it and rotates; the directory lock is held.
void AuditLog::write_batch(std::string_view batch, std::string& out) {
    out.clear();
    crypto::Sha256 h;
    for (size_t at = 0, end; at < batch.size(); at = end + 1) {
        end = std::min(batch.find('\n', at), batch.size()); // append() ends every line with one
        const std::string_view fields = batch.substr(at, end - at);
        const size_t start = out.size();
        char number[24];
        out.append(number, std::to_chars(number, number + sizeof number, next_seq_).ptr);
        out += '\t';
        out += fields;
        out += '\t';
        out += last_hash_;
        const size_t body_end = out.size();
        out.resize(body_end + 1 + 64);
        out[body_end] = '\t';
        chain_hash(h, last_hash_, std::string_view(out.data() + start, body_end - start), out.data() + body_end + 1);
        last_hash_.assign(out, body_end + 1, 64);
        out += '\n';
        ++next_seq_;
    }
    size_t done = 0;
    while (done < out.size()) {
        ssize_t n = ::write(fd_, out.data() + done, out.size() - done);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw std::runtime_error(current_file_.string() + ": write failed: " + strerror(errno));
        }
        done += static_cast<size_t>(n);
    }
    if (options_.durable && ::fdatasync(fd_) != 0)
        throw std::runtime_error(current_file_.string() + ": fdatasync failed: " + strerror(errno));
    current_size_ += out.size();
    if (current_size_ >= options_.max_file_bytes) {
        current_file_ = dir_ / file_name(next_seq_);
        current_size_ = 0;
        open_current();
    }
}

void AuditLog::writer() {
    std::string batch;
    size_t records = 0;
    std::string out;
    for (;;) {
        {
            std::unique_lock lock(mutex_);
            cv_.wait(lock, [&] { return stopping_ || !pending_.empty(); });
            if (pending_.empty() && stopping_) return;
            // Group commit: gather what arrives within the linger, so one lock, write and
            // fdatasync carry many records. Nothing waits on this in the message path; flush()
            // and stopping cut it short.
            if (options_.linger_ms > 0)
                cv_.wait_for(lock, std::chrono::milliseconds(options_.linger_ms),
                             [&] { return stopping_ || flushing_ > 0 || pending_records_ >= kFullBatch; });
            batch.swap(pending_);
            records = std::exchange(pending_records_, 0);
        }
        {
            std::lock_guard io(io_mutex_);
            try {
                DirLock dir_lock(lock_fd_, LOCK_EX);
                if (tail_moved()) read_tail(); // another process wrote: chain from its last record
                write_batch(batch, out);
            } catch (const std::exception& e) {
                logger("audit")->critical("{}: {}", dir_.string(), e.what());
                std::abort(); // never run on without the trail
            }
        }
        {
            std::lock_guard lock(mutex_);
            written_seq_ += records;
            flushed_.notify_all();
        }
        batch.clear();
    }
}

size_t AuditLog::expire_before(int64_t cutoff_ms) {
    flush();
    std::lock_guard io(io_mutex_);
    DirLock dir_lock(lock_fd_, LOCK_EX); // another process may be appending or expiring
    auto files = log_files(dir_);
    size_t removed = 0;
    for (size_t i = 0; i + 1 < files.size(); ++i) {
        if (files[i] == current_file_) break;
        // The newest record of the file decides: all of it must be older than the cutoff.
        std::ifstream in(files[i]);
        std::string line, last;
        while (std::getline(in, line))
            if (!line.empty()) last = line;
        auto f = split(last);
        if (f.size() != kFields || std::stoll(f[1]) >= cutoff_ms) break;
        // Anchor at the first record of the next file before removing this one.
        std::ifstream next(files[i + 1]);
        std::string first;
        std::getline(next, first);
        auto nf = split(first);
        if (nf.size() != kFields) break;
        {
            std::ofstream a(dir_ / "anchor.tmp", std::ios::trunc);
            a << nf[0] << ' ' << nf[12] << '\n';
        }
        fs::rename(dir_ / "anchor.tmp", dir_ / "anchor");
        fs::remove(files[i]);
        ++removed;
    }
    return removed;
}

AuditVerifyResult verify_audit(const fs::path& dir) {
    AuditVerifyResult r;
    crypto::Sha256 hasher;
    if (!fs::is_directory(dir)) {
        r.error = dir.string() + ": not a directory";
        return r;
    }
    // A snapshot under the writers' lock: which files, and how much of each is whole records.
    Anchor anchor;
    std::vector<std::pair<fs::path, uint64_t>> snapshot;
    {
        int lock_fd = ::open((dir / kLockName).c_str(), O_RDONLY | O_CLOEXEC);
        std::optional<DirLock> shared;
        if (lock_fd >= 0) shared.emplace(lock_fd, LOCK_SH); // none yet: no writer has used this directory
        anchor = read_anchor(dir);
        for (auto& file : log_files(dir)) {
            std::error_code ec;
            auto size = fs::file_size(file, ec);
            snapshot.emplace_back(file, ec ? 0 : size);
        }
        shared.reset();
        if (lock_fd >= 0) ::close(lock_fd);
    }
    uint64_t expect_seq = anchor.seq;
    std::string prev = anchor.prev;
    for (auto& entry : snapshot) {
        // Named, not a structured binding: the lambda below captures it (clang before 16 cannot).
        const auto& file = entry.first;
        const auto size = entry.second;
        std::ifstream in(file, std::ios::binary);
        if (!in) {
            r.error = file.string() + ": cannot be read (removed while verifying?)";
            return r;
        }
        std::string content(size, '\0');
        in.read(content.data(), static_cast<std::streamsize>(size));
        content.resize(static_cast<size_t>(in.gcount()));
        std::istringstream lines(content);
        std::string line;
        size_t lineno = 0;
        auto fail = [&](const std::string& why) {
            r.error = file.string() + ":" + std::to_string(lineno) + ": record " + std::to_string(expect_seq) + ": " + why;
            return r;
        };
        while (std::getline(lines, line)) {
            ++lineno;
            auto f = split(line);
            if (f.size() != kFields) return fail("malformed record (" + std::to_string(f.size()) + " fields)");
            uint64_t seq = 0;
            try {
                seq = std::stoull(f[0]);
            } catch (...) {
                return fail("malformed sequence number");
            }
            if (seq != expect_seq)
                return fail("sequence number " + f[0] + " where " + std::to_string(expect_seq) +
                            " was expected (a record was deleted, inserted or reordered)");
            if (f[12] != prev) return fail("does not chain from the previous record (deleted, inserted or reordered)");
            std::string body = line.substr(0, line.size() - f[13].size() - 1);
            char hash[64];
            chain_hash(hasher, prev, body, hash);
            if (std::string_view(hash, sizeof hash) != f[13]) return fail("hash mismatch (the record was edited)");
            prev = f[13];
            ++expect_seq;
            ++r.records;
        }
        if (!content.empty() && content.back() != '\n') {
            r.error = file.string() + ":" + std::to_string(lineno) + ": the last record is truncated";
            return r;
        }
    }
    r.ok = true;
    return r;
}

} // namespace renkei
