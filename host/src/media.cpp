#include <renkei/media.hpp>

#include <renkei/audit_log.hpp>
#include <renkei/config.hpp>
#include <renkei/deadletter_cli.hpp> // iso8601_utc
#include <renkei/keys.hpp>
#include <renkei/sqlite.hpp>
#include <renkei/trust_store.hpp>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/kdf.h>

#include <toml++/toml.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <set>
#include <sstream>

namespace renkei {
namespace fs = std::filesystem;
using crypto::Bytes;
using crypto::View;

namespace {

constexpr char kMagic[8] = {'R', 'K', 'M', 'E', 'D', 'I', 'A', '1'};
constexpr int kVersion = 1;
constexpr uint32_t kMaxHeader = 64u << 10;
constexpr uint32_t kMaxManifest = 16u << 20;
constexpr uint64_t kMinChunk = 4u << 10, kMaxChunk = 64u << 20;
constexpr size_t kKey = 32, kNonce = 12, kTag = 16, kSig = 64;
constexpr uint8_t kChunkFrame = 'C', kEndFrame = 'E', kFinal = 0x01;
const std::string kHeadLabel = "renkei-media-v1 head";
const std::string kBodyLabel = "renkei-media-v1 body";
const std::string kWrapLabel = "renkei-media-v1 key";
const std::string kScheme = "X25519-HKDF-SHA256/AES-256-GCM";

[[noreturn]] void fail(MediaFailure f, const std::string& message, const std::optional<BundleInfo>& info = std::nullopt) {
    throw MediaError(f, message, info);
}

std::string errno_text() { return std::strerror(errno); }

void put32(Bytes& b, uint32_t v) {
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<uint8_t>(v >> s));
}
void put64(Bytes& b, uint64_t v) {
    for (int s = 56; s >= 0; s -= 8) b.push_back(static_cast<uint8_t>(v >> s));
}
uint32_t get32(const uint8_t* p) {
    return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | uint32_t(p[3]);
}
void append(Bytes& b, std::string_view s) { b.insert(b.end(), s.begin(), s.end()); }
void append(Bytes& b, View v) { b.insert(b.end(), v.begin(), v.end()); }

// ---------------------------------------------------------------------------------------------
// Primitives, all through OpenSSL 3 EVP.

using crypto::Sha256;

// AES-256-GCM with one key and a nonce per call.
class Gcm {
public:
    Gcm(View key, bool encrypt) {
        if (!ctx_ || key.size() != kKey ||
            (encrypt ? EVP_EncryptInit_ex(ctx_, EVP_aes_256_gcm(), nullptr, key.data(), nullptr)
                     : EVP_DecryptInit_ex(ctx_, EVP_aes_256_gcm(), nullptr, key.data(), nullptr)) != 1)
            throw crypto::CryptoError("AES-256-GCM unavailable");
    }
    ~Gcm() { EVP_CIPHER_CTX_free(ctx_); }
    Gcm(const Gcm&) = delete;
    Gcm& operator=(const Gcm&) = delete;

    // out receives in.size() bytes and then the 16-byte tag.
    void seal(View nonce, View aad, View in, uint8_t* out) {
        int len = 0, fin = 0;
        if (EVP_EncryptInit_ex(ctx_, nullptr, nullptr, nullptr, nonce.data()) != 1 ||
            EVP_EncryptUpdate(ctx_, nullptr, &len, aad.data(), static_cast<int>(aad.size())) != 1 ||
            (!in.empty() && EVP_EncryptUpdate(ctx_, out, &len, in.data(), static_cast<int>(in.size())) != 1) ||
            EVP_EncryptFinal_ex(ctx_, out + in.size(), &fin) != 1 ||
            EVP_CIPHER_CTX_ctrl(ctx_, EVP_CTRL_GCM_GET_TAG, kTag, out + in.size()) != 1)
            throw crypto::CryptoError("AES-256-GCM encryption failed");
    }
    // `in` is ciphertext then tag; false when it does not authenticate (out is wiped then).
    bool open(View nonce, View aad, View in, uint8_t* out) {
        if (in.size() < kTag) return false;
        size_t n = in.size() - kTag;
        int len = 0, fin = 0;
        bool ok = EVP_DecryptInit_ex(ctx_, nullptr, nullptr, nullptr, nonce.data()) == 1 &&
                  EVP_DecryptUpdate(ctx_, nullptr, &len, aad.data(), static_cast<int>(aad.size())) == 1 &&
                  (n == 0 || EVP_DecryptUpdate(ctx_, out, &len, in.data(), static_cast<int>(n)) == 1) &&
                  EVP_CIPHER_CTX_ctrl(ctx_, EVP_CTRL_GCM_SET_TAG, kTag, const_cast<uint8_t*>(in.data() + n)) == 1 &&
                  EVP_DecryptFinal_ex(ctx_, out + n, &fin) == 1;
        if (!ok && n > 0) OPENSSL_cleanse(out, n);
        return ok;
    }

private:
    EVP_CIPHER_CTX* ctx_ = EVP_CIPHER_CTX_new();
};

crypto::Secret x25519(View own_private, View peer_public) {
    crypto::Pkey own(EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nullptr, own_private.data(), own_private.size()));
    crypto::Pkey peer(EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, nullptr, peer_public.data(), peer_public.size()));
    if (!own || !peer) throw crypto::CryptoError("invalid X25519 key");
    EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new(own.get(), nullptr);
    size_t n = kKey;
    Bytes secret(n);
    bool ok = ctx && EVP_PKEY_derive_init(ctx) == 1 && EVP_PKEY_derive_set_peer(ctx, peer.get()) == 1 &&
              EVP_PKEY_derive(ctx, secret.data(), &n) == 1 && n == kKey;
    EVP_PKEY_CTX_free(ctx);
    if (!ok) throw crypto::CryptoError("X25519 key agreement failed");
    return crypto::Secret(std::move(secret));
}

crypto::Secret hkdf_sha256(const crypto::Secret& ikm, View salt, View info) {
    EVP_KDF* kdf = EVP_KDF_fetch(nullptr, "HKDF", nullptr);
    EVP_KDF_CTX* kctx = EVP_KDF_CTX_new(kdf);
    EVP_KDF_free(kdf);
    if (kctx == nullptr) throw crypto::CryptoError("HKDF unavailable");
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, const_cast<char*>("SHA256"), 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, const_cast<uint8_t*>(ikm.view().data()), ikm.size()),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, const_cast<uint8_t*>(salt.data()), salt.size()),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, const_cast<uint8_t*>(info.data()), info.size()),
        OSSL_PARAM_construct_end()};
    Bytes key(kKey);
    int rc = EVP_KDF_derive(kctx, key.data(), key.size(), params);
    EVP_KDF_CTX_free(kctx);
    if (rc != 1) throw crypto::CryptoError("HKDF failed");
    return crypto::Secret(std::move(key));
}

// What the key-wrapping key and the wrapped key are bound to.
Bytes wrap_context(const std::string& bundle_id, const std::string& sender, const std::string& recipient) {
    Bytes b;
    append(b, kWrapLabel);
    b.push_back(0);
    append(b, bundle_id);
    b.push_back(0);
    append(b, sender);
    b.push_back(0);
    append(b, recipient);
    return b;
}

crypto::Secret wrapping_key(const crypto::Secret& shared, View ephemeral_public, View recipient_public, View context) {
    Bytes salt(ephemeral_public.begin(), ephemeral_public.end());
    append(salt, recipient_public);
    return hkdf_sha256(shared, salt, context);
}

Bytes chunk_nonce(uint32_t file_index, uint64_t chunk_index) {
    Bytes n;
    put32(n, file_index);
    put64(n, chunk_index);
    return n;
}

Bytes chunk_aad(View bundle_id, uint32_t file_index, uint64_t chunk_index, bool final, uint32_t length, View head_digest) {
    Bytes a;
    append(a, std::string_view("RKM1"));
    append(a, bundle_id);
    put32(a, file_index);
    put64(a, chunk_index);
    a.push_back(final ? kFinal : 0);
    put32(a, length);
    append(a, head_digest);
    return a;
}

Bytes signed_message(const std::string& label, View digest) {
    Bytes m;
    append(m, label);
    m.push_back(0);
    append(m, digest);
    return m;
}

// ---------------------------------------------------------------------------------------------
// Files.

class Fd {
public:
    Fd() = default;
    explicit Fd(int fd) : fd_(fd) {}
    ~Fd() { reset(); }
    Fd(Fd&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
    Fd& operator=(Fd&& o) noexcept {
        if (this != &o) {
            reset();
            fd_ = o.fd_;
            o.fd_ = -1;
        }
        return *this;
    }
    int get() const { return fd_; }
    explicit operator bool() const { return fd_ >= 0; }
    void reset() {
        if (fd_ >= 0) ::close(fd_);
        fd_ = -1;
    }

private:
    int fd_ = -1;
};

// Reads up to n bytes (fewer only at end of file).
size_t read_some(int fd, uint8_t* p, size_t n, const fs::path& what) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = ::read(fd, p + got, n - got);
        if (r < 0) {
            if (errno == EINTR) continue;
            fail(MediaFailure::io, what.string() + ": cannot read: " + errno_text());
        }
        if (r == 0) break;
        got += static_cast<size_t>(r);
    }
    return got;
}

void write_all(int fd, const uint8_t* p, size_t n, const fs::path& what) {
    while (n > 0) {
        ssize_t w = ::write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            fail(MediaFailure::io, what.string() + ": cannot write: " + errno_text());
        }
        p += w;
        n -= static_cast<size_t>(w);
    }
}

void sync_fd(int fd, const fs::path& what) {
    if (::fsync(fd) != 0) fail(MediaFailure::io, what.string() + ": cannot sync: " + errno_text());
}

void sync_dir(const fs::path& dir) {
    Fd d(::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!d || ::fsync(d.get()) != 0) fail(MediaFailure::io, dir.string() + ": cannot sync the directory: " + errno_text());
}

Fd open_read(const fs::path& p) {
    Fd fd(::open(p.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) fail(MediaFailure::io, p.string() + ": cannot open: " + errno_text());
    struct stat st{};
    if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) fail(MediaFailure::io, p.string() + ": not a regular file");
    return fd;
}

// Moves `from` to `to` unless `to` exists (then false). Same file system.
bool rename_no_replace(const fs::path& from, const fs::path& to) {
    if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) == 0) return true;
    if (errno == EEXIST) return false;
    if (errno == EINVAL || errno == ENOSYS) { // a file system without it: link() refuses an existing name too
        if (::link(from.c_str(), to.c_str()) == 0) {
            ::unlink(from.c_str());
            return true;
        }
        if (errno == EEXIST) return false;
    }
    fail(MediaFailure::io, to.string() + ": cannot move " + from.string() + " there: " + errno_text());
}

// A temporary file beside `target` (same directory, so the final rename is atomic); removed
// unless released.
class TempFile {
public:
    explicit TempFile(const fs::path& target) {
        auto dir = target.parent_path();
        std::string pattern = (dir / ("." + target.filename().string() + ".tmp-XXXXXX")).string();
        std::vector<char> buf(pattern.begin(), pattern.end());
        buf.push_back('\0');
        int fd = ::mkostemp(buf.data(), O_CLOEXEC); // 0600
        if (fd < 0) fail(MediaFailure::io, target.string() + ": cannot create a temporary file beside it: " + errno_text());
        fd_ = Fd(fd);
        path_ = buf.data();
    }
    ~TempFile() {
        fd_.reset();
        if (!path_.empty()) ::unlink(path_.c_str());
    }
    int fd() const { return fd_.get(); }
    const fs::path& path() const { return path_; }
    // Renames it to `target` (never over an existing file).
    void publish(const fs::path& target) {
        sync_fd(fd_.get(), path_);
        fd_.reset();
        if (!rename_no_replace(path_, target)) fail(MediaFailure::exists, target.string() + ": already exists (never overwritten)");
        path_.clear();
        sync_dir(target.parent_path());
    }

private:
    Fd fd_;
    fs::path path_;
};

// Writes through a buffer.
class Writer {
public:
    Writer(int fd, fs::path what, Sha256* transcript = nullptr)
        : fd_(fd), what_(std::move(what)), transcript_(transcript) {
        buf_.reserve(1u << 20);
    }
    void write(View v) {
        if (transcript_) transcript_->update(v);
        if (buf_.size() + v.size() > buf_.capacity()) flush();
        if (v.size() >= buf_.capacity()) {
            write_all(fd_, v.data(), v.size(), what_);
            written_ += v.size();
            return;
        }
        buf_.insert(buf_.end(), v.begin(), v.end());
        written_ += v.size();
    }
    void flush() {
        write_all(fd_, buf_.data(), buf_.size(), what_);
        buf_.clear();
    }
    uint64_t written() const { return written_; }

private:
    int fd_;
    fs::path what_;
    Sha256* transcript_;
    Bytes buf_;
    uint64_t written_ = 0;
};

// Reads a bundle from the start, hashing everything it consumes into the transcript.
class Reader {
public:
    explicit Reader(const fs::path& p) : path_(p), fd_(open_read(p)) { buf_.resize(1u << 20); }
    uint64_t offset() const { return offset_; }
    const fs::path& path() const { return path_; }

    // Exactly n bytes into out, or a "truncated" refusal naming `what`.
    void need(uint8_t* out, size_t n, const std::string& what) {
        size_t got = take(out, n);
        if (got < n)
            fail(MediaFailure::truncated, path_.string() + ": truncated at byte " + std::to_string(offset_) + ": " + what +
                                              " is cut short (" + std::to_string(got) + " of " + std::to_string(n) +
                                              " bytes)", info_);
    }
    Bytes need(size_t n, const std::string& what) {
        Bytes b(n);
        need(b.data(), n, what);
        return b;
    }
    // One byte, or nullopt at end of file.
    std::optional<uint8_t> byte() {
        uint8_t b;
        return take(&b, 1) == 1 ? std::optional<uint8_t>(b) : std::nullopt;
    }
    // Bytes left after what was consumed (reads to the end, not hashed).
    uint64_t rest() {
        hashing_ = false;
        uint64_t n = 0;
        uint8_t tmp[4096];
        while (size_t got = take(tmp, sizeof tmp)) n += got;
        return n;
    }
    Bytes transcript() const { return transcript_.peek(); }
    void set_info(const BundleInfo& info) { info_ = info; }
    const std::optional<BundleInfo>& info() const { return info_; }

private:
    size_t take(uint8_t* out, size_t n) {
        size_t got = 0;
        while (got < n) {
            if (pos_ == end_) {
                pos_ = 0;
                end_ = read_some(fd_.get(), buf_.data(), buf_.size(), path_);
                if (end_ == 0) break;
            }
            size_t k = std::min(n - got, end_ - pos_);
            std::memcpy(out + got, buf_.data() + pos_, k);
            if (hashing_) transcript_.update(buf_.data() + pos_, k);
            pos_ += k;
            got += k;
        }
        offset_ += got;
        return got;
    }

    fs::path path_;
    Fd fd_;
    Bytes buf_;
    size_t pos_ = 0, end_ = 0;
    uint64_t offset_ = 0;
    bool hashing_ = true;
    Sha256 transcript_;
    std::optional<BundleInfo> info_;
};

// ---------------------------------------------------------------------------------------------
// Records and names.

class RecordCounter {
public:
    explicit RecordCounter(RecordCount rule) : rule_(rule) {}
    void update(const uint8_t* p, size_t n) {
        if (n == 0) return;
        if (rule_.kind == RecordCount::Kind::lines) lines_ += static_cast<uint64_t>(std::count(p, p + n, '\n'));
        last_ = p[n - 1];
        bytes_ += n;
    }
    // The count, or nullopt when the bytes are no whole number of fixed-length records.
    std::optional<uint64_t> records() const {
        if (rule_.kind == RecordCount::Kind::fixed) {
            if (bytes_ % rule_.record_bytes != 0) return std::nullopt;
            return bytes_ / rule_.record_bytes;
        }
        return lines_ + (bytes_ > 0 && last_ != '\n' ? 1 : 0);
    }
    uint64_t bytes() const { return bytes_; }

private:
    RecordCount rule_;
    uint64_t lines_ = 0, bytes_ = 0;
    uint8_t last_ = '\n';
};

bool valid_utf8(std::string_view s) {
    size_t i = 0;
    while (i < s.size()) {
        auto b0 = static_cast<unsigned char>(s[i]);
        size_t len = b0 < 0x80 ? 1 : (b0 >> 5) == 0x6 ? 2 : (b0 >> 4) == 0xE ? 3 : (b0 >> 3) == 0x1E ? 4 : 0;
        if (len == 0 || i + len > s.size()) return false;
        uint32_t cp = len == 1 ? b0 : len == 2 ? (b0 & 0x1F) : len == 3 ? (b0 & 0x0F) : (b0 & 0x07);
        for (size_t k = 1; k < len; ++k) {
            auto b = static_cast<unsigned char>(s[i + k]);
            if ((b & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (b & 0x3F);
        }
        static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < kMin[len] || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) return false;
        i += len;
    }
    return true;
}

// Empty when `name` may name a file in a bundle, otherwise the rule it breaks.
std::string name_problem(const std::string& name) {
    if (name.empty()) return "is empty";
    if (name.size() > 255) return "is longer than 255 bytes";
    if (name == "." || name == ".." || name[0] == '.') return "starts with '.' (no hidden files, no directories)";
    for (unsigned char c : name) {
        if (c == '/' || c == '\\') return "contains a path separator (only a plain file name is allowed)";
        if (c < 0x20 || c == 0x7F) return "contains a control character";
    }
    if (!valid_utf8(name)) return "is not valid UTF-8";
    return {};
}

bool is_hex(const std::string& s, size_t len) {
    return s.size() == len && s.find_first_not_of("0123456789abcdef") == std::string::npos;
}

// ---------------------------------------------------------------------------------------------
// Header and manifest (TOML).

struct Head {
    BundleInfo info;
    Bytes ephemeral_public, wrapped_key, digest; // digest: SHA-256 of the preamble
    std::string manifest;                        // parsed only once its signature is checked (or for inspect)
};

std::string to_toml(const toml::table& t) {
    std::ostringstream out;
    out << t << '\n';
    return out.str();
}

std::string header_text(const Head& h) {
    const BundleInfo& i = h.info;
    toml::table seal{{"scheme", kScheme},
                     {"recipient_public", i.recipient_seal_public},
                     {"ephemeral_public", crypto::to_hex(h.ephemeral_public)},
                     {"wrapped_key", crypto::to_hex(h.wrapped_key)}};
    toml::table t{{"format", "renkei-media"},
                  {"version", kVersion},
                  {"bundle_id", i.bundle_id},
                  {"sender", i.sender},
                  {"recipient", i.recipient},
                  {"created", i.created},
                  {"sender_sign_public", i.sender_sign_public},
                  {"cipher", "AES-256-GCM"},
                  {"chunk_bytes", static_cast<int64_t>(i.chunk_bytes)},
                  {"seal", std::move(seal)}};
    return to_toml(t);
}

std::string manifest_text(const BundleInfo& i) {
    toml::array files;
    for (auto& f : i.files)
        files.push_back(toml::table{{"name", f.name},
                                    {"bytes", static_cast<int64_t>(f.bytes)},
                                    {"records", static_cast<int64_t>(f.records)},
                                    {"count", f.count.to_string()},
                                    {"sha256", f.sha256}});
    toml::table t{{"files", static_cast<int64_t>(i.files.size())},
                  {"bytes", static_cast<int64_t>(i.total_bytes())},
                  {"records", static_cast<int64_t>(i.total_records())},
                  {"file", std::move(files)}};
    return to_toml(t);
}

// Field access that names the section, the key and the rule.
class Fields {
public:
    Fields(const toml::table& t, std::string where, const fs::path& file) : t_(t), where_(std::move(where)), file_(file) {}
    [[noreturn]] void bad(const std::string& key, const std::string& rule) const {
        fail(MediaFailure::malformed, file_.string() + ": " + where_ + key + ": " + rule);
    }
    std::string str(const std::string& key) const {
        auto v = t_[key].value<std::string>();
        if (!v) bad(key, "missing, or not a string");
        return *v;
    }
    uint64_t u64(const std::string& key) const {
        auto v = t_[key].value<int64_t>();
        if (!v || *v < 0) bad(key, "missing, or not a non-negative integer");
        return static_cast<uint64_t>(*v);
    }
    std::string hex(const std::string& key, size_t bytes) const {
        auto s = str(key);
        if (!is_hex(s, bytes * 2)) bad(key, "must be " + std::to_string(bytes * 2) + " lowercase hex digits");
        return s;
    }

private:
    const toml::table& t_;
    std::string where_;
    const fs::path& file_;
};

toml::table parse_toml(const std::string& text, const std::string& what, const fs::path& file) {
    try {
        return toml::parse(text, file.string());
    } catch (const toml::parse_error& e) {
        fail(MediaFailure::malformed, file.string() + ": the " + what + " does not parse: " + std::string(e.description()) +
                                          " (line " + std::to_string(e.source().begin.line) + " of the " + what + ")");
    }
}

Head parse_header(const std::string& text, const fs::path& file) {
    auto t = parse_toml(text, "header", file);
    Fields f(t, "header.", file);
    if (f.str("format") != "renkei-media") f.bad("format", "must be \"renkei-media\"");
    auto version = f.u64("version");
    if (version != kVersion) f.bad("version", "format version " + std::to_string(version) + " is not supported (this renkei reads 1)");
    if (f.str("cipher") != "AES-256-GCM") f.bad("cipher", "must be \"AES-256-GCM\"");
    Head h;
    h.info.version = kVersion;
    h.info.bundle_id = f.hex("bundle_id", 16);
    h.info.sender = f.str("sender");
    if (auto why = node_id_problem(h.info.sender); !why.empty()) f.bad("sender", why);
    h.info.recipient = f.str("recipient");
    if (auto why = node_id_problem(h.info.recipient); !why.empty()) f.bad("recipient", why);
    h.info.created = f.str("created");
    h.info.sender_sign_public = f.hex("sender_sign_public", 32);
    h.info.chunk_bytes = f.u64("chunk_bytes");
    if (h.info.chunk_bytes < kMinChunk || h.info.chunk_bytes > kMaxChunk)
        f.bad("chunk_bytes", "must be between " + std::to_string(kMinChunk) + " and " + std::to_string(kMaxChunk));
    auto* seal = t["seal"].as_table();
    if (!seal) f.bad("seal", "missing, or not a table");
    Fields s(*seal, "header.seal.", file);
    if (s.str("scheme") != kScheme) s.bad("scheme", "must be \"" + kScheme + "\"");
    h.info.recipient_seal_public = s.hex("recipient_public", kKey);
    h.ephemeral_public = crypto::from_hex(s.hex("ephemeral_public", kKey));
    h.wrapped_key = crypto::from_hex(s.hex("wrapped_key", kNonce + kKey + kTag));
    return h;
}

void parse_manifest(const std::string& text, const fs::path& file, BundleInfo& info) {
    auto t = parse_toml(text, "manifest", file);
    Fields f(t, "manifest.", file);
    auto count = f.u64("files");
    auto* arr = t["file"].as_array();
    if (!arr) f.bad("file", "missing, or not an array of tables");
    if (arr->size() != count || count == 0)
        f.bad("files", "says " + std::to_string(count) + " but " + std::to_string(arr->size()) +
                           " [[file]] entries follow (at least one is needed)");
    std::set<std::string> names;
    for (size_t i = 0; i < arr->size(); ++i) {
        auto* ft = (*arr)[i].as_table();
        std::string where = "manifest.file[" + std::to_string(i) + "].";
        if (!ft) fail(MediaFailure::malformed, file.string() + ": " + where + ": must be a table");
        Fields g(*ft, where, file);
        ManifestFile m;
        m.name = g.str("name");
        if (auto why = name_problem(m.name); !why.empty()) g.bad("name", "'" + m.name + "' " + why);
        if (!names.insert(m.name).second) g.bad("name", "'" + m.name + "' appears twice");
        m.bytes = g.u64("bytes");
        m.records = g.u64("records");
        try {
            m.count = RecordCount::parse(g.str("count"));
        } catch (const std::invalid_argument& e) {
            g.bad("count", e.what());
        }
        m.sha256 = g.hex("sha256", 32);
        info.files.push_back(std::move(m));
    }
    if (f.u64("bytes") != info.total_bytes()) f.bad("bytes", "is not the sum of the files' bytes");
    if (f.u64("records") != info.total_records()) f.bad("records", "is not the sum of the files' records");
}

// Reads the preamble (magic, header, manifest) and parses the header; the manifest is parsed by
// read_manifest(), after its signature was checked where that is wanted.
Head read_head(Reader& r) {
    const auto& path = r.path();
    uint8_t magic[sizeof kMagic];
    size_t got = 0;
    for (; got < sizeof magic; ++got) {
        auto b = r.byte();
        if (!b) break;
        magic[got] = *b;
    }
    if (got < sizeof magic || std::memcmp(magic, kMagic, sizeof magic) != 0)
        fail(MediaFailure::malformed, path.string() + ": not a renkei media bundle (no RKMEDIA1 signature at the start)");
    auto len = r.need(4, "the header length");
    uint32_t header_len = get32(len.data());
    if (header_len == 0 || header_len > kMaxHeader)
        fail(MediaFailure::malformed, path.string() + ": header length " + std::to_string(header_len) + " is out of range (1 to " +
                                          std::to_string(kMaxHeader) + ")");
    auto header = r.need(header_len, "the header");
    len = r.need(4, "the manifest length");
    uint32_t manifest_len = get32(len.data());
    if (manifest_len == 0 || manifest_len > kMaxManifest)
        fail(MediaFailure::malformed, path.string() + ": manifest length " + std::to_string(manifest_len) +
                                          " is out of range (1 to " + std::to_string(kMaxManifest) + ")");
    auto manifest = r.need(manifest_len, "the manifest");
    Bytes digest = r.transcript();
    auto as_text = [](const Bytes& b) { return std::string(b.begin(), b.end()); };
    std::string header_str = as_text(header), manifest_str = as_text(manifest);
    if (!valid_utf8(header_str)) fail(MediaFailure::malformed, path.string() + ": the header is not UTF-8 text");
    Head h = parse_header(header_str, path);
    h.digest = std::move(digest);
    h.manifest = std::move(manifest_str);
    r.set_info(h.info);
    return h;
}

void read_manifest(Reader& r, Head& h) {
    if (!valid_utf8(h.manifest)) fail(MediaFailure::malformed, r.path().string() + ": the manifest is not UTF-8 text", h.info);
    try {
        parse_manifest(h.manifest, r.path(), h.info);
    } catch (const MediaError& e) {
        throw MediaError(e.failure(), e.what(), h.info);
    }
    r.set_info(h.info);
}

// The sender's key that signed, if the identity trusts it for the sender.
crypto::VerifyKey trusted_signer(const MediaIdentity& me, const BundleInfo& info, const fs::path& path) {
    auto it = me.parties.find(info.sender);
    if (it == me.parties.end() || it->second.sign_public.empty())
        fail(MediaFailure::untrusted_sender,
             path.string() + ": the sender " + info.sender + " is not a node " + me.node_id +
                 " trusts (not in its trust store or [[peer]] list); refused",
             info);
    auto key = crypto::from_hex(info.sender_sign_public);
    for (auto& k : it->second.sign_public)
        if (k == key) return crypto::VerifyKey::from_raw(key);
    fail(MediaFailure::untrusted_sender,
         path.string() + ": signed with key " + info.sender_sign_public + ", which is not trusted for " + info.sender +
             " (forged, rotated out or revoked); refused",
         info);
}

void check_head_signature(Reader& r, const Head& h, const crypto::VerifyKey& signer) {
    auto sig = r.need(kSig, "the header signature");
    if (!signer.verify(signed_message(kHeadLabel, h.digest), sig))
        fail(MediaFailure::altered,
             r.path().string() + ": the header or manifest was altered: the signature of " + h.info.sender +
                 " over them does not verify",
             h.info);
}

// Walks the chunks of every file and the trailer. With `gcm`, each chunk is decrypted and handed
// to `sink(file index, plaintext)`; without, only the structure and sizes are checked.
template <class Sink>
void walk_body(Reader& r, const Head& h, const crypto::VerifyKey& signer, Gcm* gcm, Sink sink) {
    const auto& path = r.path().string();
    const BundleInfo& info = h.info;
    Bytes bundle_id = crypto::from_hex(info.bundle_id);
    Bytes frame(info.chunk_bytes + kTag), plain(info.chunk_bytes);
    for (uint32_t fi = 0; fi < info.files.size(); ++fi) {
        const ManifestFile& mf = info.files[fi];
        uint64_t total = 0;
        for (uint64_t ci = 0;; ++ci) {
            std::string where = "chunk " + std::to_string(ci) + " of " + mf.name;
            auto type = r.byte();
            if (!type)
                fail(MediaFailure::truncated,
                     path + ": truncated at byte " + std::to_string(r.offset()) + ": " + mf.name +
                         " ends without its final chunk (" + std::to_string(total) + " of " + std::to_string(mf.bytes) +
                         " bytes)",
                     info);
            if (*type == kEndFrame)
                fail(MediaFailure::truncated,
                     path + ": the trailer comes at byte " + std::to_string(r.offset() - 1) + " before the final chunk of " +
                         mf.name + " (chunks were cut out)",
                     info);
            if (*type != kChunkFrame)
                fail(MediaFailure::altered,
                     path + ": altered at byte " + std::to_string(r.offset() - 1) + ": no chunk frame where " + where +
                         " should start",
                     info);
            uint8_t fl[5];
            r.need(fl, sizeof fl, where + "'s frame");
            bool final = fl[0] & kFinal;
            uint32_t length = get32(fl + 1);
            if ((fl[0] & ~kFinal) != 0 || length > info.chunk_bytes || (!final && length != info.chunk_bytes) ||
                (final && length == 0 && ci > 0))
                fail(MediaFailure::altered,
                     path + ": altered at byte " + std::to_string(r.offset() - 5) + ": " + where +
                         " has an impossible frame (flags " + std::to_string(fl[0]) + ", length " + std::to_string(length) + ")",
                     info);
            r.need(frame.data(), length + kTag, where);
            if (gcm) {
                auto aad = chunk_aad(bundle_id, fi, ci, final, length, h.digest);
                if (!gcm->open(chunk_nonce(fi, ci), aad, View(frame.data(), length + kTag), plain.data()))
                    fail(MediaFailure::altered,
                         path + ": altered: " + where + " (ending at byte " + std::to_string(r.offset()) +
                             ") does not authenticate",
                         info);
            }
            // Checked after the chunk authenticated: then only the sender can have made it so.
            if (total + length > mf.bytes)
                fail(MediaFailure::mismatch,
                     path + ": " + mf.name + " is longer than the " + std::to_string(mf.bytes) + " bytes the manifest says",
                     info);
            if (gcm) sink(fi, View(plain.data(), length));
            total += length;
            if (final) break;
        }
        if (total != mf.bytes)
            fail(MediaFailure::mismatch,
                 path + ": " + mf.name + " holds " + std::to_string(total) + " bytes but the manifest says " +
                     std::to_string(mf.bytes),
                 info);
    }
    auto type = r.byte();
    if (!type)
        fail(MediaFailure::truncated, path + ": truncated at byte " + std::to_string(r.offset()) + ": the trailer is missing",
             info);
    if (*type != kEndFrame)
        fail(MediaFailure::altered,
             path + ": altered at byte " + std::to_string(r.offset() - 1) +
                 ": more data where the trailer should follow the last file",
             info);
    Bytes digest = r.transcript();
    auto sig = r.need(kSig, "the trailer signature");
    if (!signer.verify(signed_message(kBodyLabel, digest), sig))
        fail(MediaFailure::altered,
             path + ": altered: the signature of " + info.sender + " over the whole bundle does not verify", info);
    if (auto extra = r.rest(); extra > 0)
        fail(MediaFailure::altered, path + ": altered: " + std::to_string(extra) + " unexpected byte(s) after the trailer",
             info);
}

crypto::Secret unwrap_content_key(const MediaIdentity& me, const Head& h, const fs::path& path) {
    const BundleInfo& info = h.info;
    auto ctx = wrap_context(info.bundle_id, info.sender, info.recipient);
    auto kek = wrapping_key(x25519(me.seal.private_key.view(), h.ephemeral_public), h.ephemeral_public,
                            me.seal.public_key, ctx);
    Gcm gcm(kek.view(), false);
    View w(h.wrapped_key);
    Bytes key(kKey);
    if (!gcm.open(w.subspan(0, kNonce), ctx, w.subspan(kNonce), key.data()))
        fail(MediaFailure::altered, path.string() + ": the content key does not open with this node's sealing key", info);
    return crypto::Secret(std::move(key));
}

void check_recipient(const MediaIdentity& me, const BundleInfo& info, const fs::path& path) {
    if (info.recipient != me.node_id)
        fail(MediaFailure::wrong_recipient,
             path.string() + ": sealed to " + info.recipient + ", not to this node " + me.node_id + "; refused", info);
    if (info.recipient_seal_public != crypto::to_hex(me.seal.public_key))
        fail(MediaFailure::wrong_recipient,
             path.string() + ": sealed to the sealing key " + info.recipient_seal_public + ", which " + me.node_id +
                 " does not hold (its key was rotated?); refused",
             info);
}

// A staging directory inside the output directory, removed with what it holds unless released.
class Staging {
public:
    explicit Staging(const fs::path& out_dir) {
        std::string pattern = (out_dir / ".renkei-import-XXXXXX").string();
        std::vector<char> buf(pattern.begin(), pattern.end());
        buf.push_back('\0');
        if (::mkdtemp(buf.data()) == nullptr)
            fail(MediaFailure::io, out_dir.string() + ": cannot create a staging directory: " + errno_text());
        dir_ = buf.data();
    }
    ~Staging() {
        std::error_code ec;
        if (!dir_.empty()) fs::remove_all(dir_, ec);
    }
    const fs::path& dir() const { return dir_; }

private:
    fs::path dir_;
};

std::string now_iso(int64_t now_ms) { return iso8601_utc(now_ms); }

int64_t wall_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

} // namespace

// -------------------------------------------------------------------------------------------------

RecordCount RecordCount::parse(const std::string& text) {
    if (text == "lines") return {};
    if (text.rfind("fixed:", 0) == 0) {
        auto digits = text.substr(6);
        if (!digits.empty() && digits.size() <= 7 && digits.find_first_not_of("0123456789") == std::string::npos) {
            uint64_t n = std::stoull(digits);
            if (n >= 1 && n <= (1u << 20)) return {Kind::fixed, n};
        }
    }
    throw std::invalid_argument("'" + text + "' is not a record count: use \"lines\" or \"fixed:N\" (N bytes per record, 1 to 1048576)");
}

std::string RecordCount::to_string() const {
    return kind == Kind::lines ? "lines" : "fixed:" + std::to_string(record_bytes);
}

const char* to_string(MediaFailure f) {
    switch (f) {
    case MediaFailure::malformed: return "malformed";
    case MediaFailure::altered: return "altered";
    case MediaFailure::truncated: return "truncated";
    case MediaFailure::wrong_recipient: return "wrong recipient";
    case MediaFailure::untrusted_sender: return "untrusted sender";
    case MediaFailure::mismatch: return "mismatch";
    case MediaFailure::io: return "i/o";
    case MediaFailure::exists: return "exists";
    case MediaFailure::already_imported: return "already imported";
    case MediaFailure::bad_input: return "bad input";
    }
    return "?";
}

uint64_t BundleInfo::total_bytes() const {
    uint64_t n = 0;
    for (auto& f : files) n += f.bytes;
    return n;
}

uint64_t BundleInfo::total_records() const {
    uint64_t n = 0;
    for (auto& f : files) n += f.records;
    return n;
}

std::string BundleInfo::summary() const {
    return std::to_string(files.size()) + " file(s), " + std::to_string(total_records()) + " record(s), " +
           std::to_string(total_bytes()) + " byte(s)";
}

MediaIdentity media_identity_from_config(const HostConfig& cfg, int64_t now_ms) {
    if (!fs::exists(cfg.keys_dir / "node.toml"))
        throw std::runtime_error(cfg.keys_dir.string() + ": no keys for " + cfg.node_id + " (run renkei keygen --dir " +
                                 cfg.keys_dir.string() + " --node " + cfg.node_id + ")");
    auto keys = load_node_keys(cfg.keys_dir);
    if (keys.node_id != cfg.node_id)
        throw std::runtime_error(cfg.keys_dir.string() + ": keys belong to " + keys.node_id + ", not to " + cfg.node_id);
    MediaIdentity me{cfg.node_id, keys.sign, keys.seal, {}};
    auto raw = [](const std::string& hex) { return crypto::from_hex(hex); };
    if (!cfg.trust_store.empty()) {
        // Any node of the network: media go to parties that are no link neighbours (agencies).
        auto ts = load_trust_store(cfg.trust_store, cfg.trust_root, now_ms);
        for (auto& [id, n] : ts.nodes) {
            MediaIdentity::Party p;
            for (auto& k : n.sign_public) p.sign_public.push_back(raw(k));
            if (!n.seal_public.empty()) p.seal_public = raw(n.seal_public);
            me.parties[id] = std::move(p);
        }
        auto self = me.parties.find(cfg.node_id);
        if (self == me.parties.end() ||
            std::find(self->second.sign_public.begin(), self->second.sign_public.end(), keys.sign.public_raw()) ==
                self->second.sign_public.end())
            throw std::runtime_error(cfg.trust_store.string() + ": does not list " + cfg.node_id +
                                     " with the signing key in " + cfg.keys_dir.string() + " (rotated or revoked?)");
    } else {
        me.parties[cfg.node_id] = {{keys.sign.public_raw()}, keys.seal.public_key};
        for (auto& peer : cfg.peers) {
            MediaIdentity::Party p;
            if (!peer.sign_public.empty()) p.sign_public.push_back(raw(peer.sign_public));
            if (!peer.seal_public.empty()) p.seal_public = raw(peer.seal_public);
            me.parties[peer.node] = std::move(p);
        }
    }
    return me;
}

BundleInfo export_bundle(const MediaIdentity& me, const ExportOptions& o,
                         const std::function<void(const BundleInfo&)>& before_publish) {
    auto bad = [](const std::string& m) { fail(MediaFailure::bad_input, m); };
    auto party = me.parties.find(o.recipient);
    if (party == me.parties.end() || party->second.seal_public.size() != kKey)
        bad("no trusted sealing key for " + o.recipient + " (not in the trust store or [[peer]] list, or it has no seal_public)");
    if (o.files.empty()) bad("no files to export");
    if (o.chunk_bytes < kMinChunk || o.chunk_bytes > kMaxChunk)
        bad("chunk size " + std::to_string(o.chunk_bytes) + " is out of range (" + std::to_string(kMinChunk) + " to " +
            std::to_string(kMaxChunk) + ")");
    std::error_code ec;
    if (fs::exists(fs::symlink_status(o.out, ec)))
        fail(MediaFailure::exists, o.out.string() + ": already exists (never overwritten)");

    Head h;
    BundleInfo& info = h.info;
    info.version = kVersion;
    info.bundle_id = crypto::to_hex(crypto::random_bytes(16));
    info.sender = me.node_id;
    info.recipient = o.recipient;
    info.created = now_iso(o.now_ms ? o.now_ms : wall_ms());
    info.sender_sign_public = crypto::to_hex(me.sign.public_raw());
    info.recipient_seal_public = crypto::to_hex(party->second.seal_public);
    info.chunk_bytes = o.chunk_bytes;

    // Pass 1: sizes, counts and digests for the manifest.
    std::set<std::string> names;
    Bytes buf(o.chunk_bytes);
    for (auto& f : o.files) {
        ManifestFile m;
        m.name = f.path.filename().string();
        if (auto why = name_problem(m.name); !why.empty()) bad(f.path.string() + ": the file name '" + m.name + "' " + why);
        if (!names.insert(m.name).second) bad(f.path.string() + ": another file is also named '" + m.name + "'");
        m.count = f.count;
        Fd fd = open_read(f.path);
        Sha256 sha;
        RecordCounter counter(f.count);
        while (size_t n = read_some(fd.get(), buf.data(), buf.size(), f.path)) {
            sha.update(buf.data(), n);
            counter.update(buf.data(), n);
        }
        auto records = counter.records();
        if (!records)
            bad(f.path.string() + ": " + std::to_string(counter.bytes()) + " bytes is not a whole number of " +
                std::to_string(f.count.record_bytes) + "-byte records");
        m.bytes = counter.bytes();
        m.records = *records;
        m.sha256 = crypto::to_hex(sha.peek());
        info.files.push_back(std::move(m));
    }
    std::vector<ManifestFile> read_files = info.files; // what pass 2 must find again
    if (o.edit_manifest) o.edit_manifest(info.files);

    // The content key, wrapped to the recipient.
    crypto::Secret content_key(crypto::random_bytes(kKey));
    auto eph = crypto::SealKeyPair::generate();
    h.ephemeral_public = eph.public_key;
    auto ctx = wrap_context(info.bundle_id, info.sender, info.recipient);
    auto kek = wrapping_key(x25519(eph.private_key.view(), party->second.seal_public), eph.public_key,
                            party->second.seal_public, ctx);
    {
        Gcm wrap(kek.view(), true);
        Bytes nonce = crypto::random_bytes(kNonce);
        h.wrapped_key = nonce;
        h.wrapped_key.resize(kNonce + kKey + kTag);
        wrap.seal(nonce, ctx, content_key.view(), h.wrapped_key.data() + kNonce);
    }

    std::string header = header_text(h), manifest = manifest_text(info);
    Bytes preamble(kMagic, kMagic + sizeof kMagic);
    put32(preamble, static_cast<uint32_t>(header.size()));
    append(preamble, header);
    put32(preamble, static_cast<uint32_t>(manifest.size()));
    append(preamble, manifest);
    if (header.size() > kMaxHeader || manifest.size() > kMaxManifest) bad("too many files for one bundle (manifest too large)");
    h.digest = crypto::sha256(preamble);

    TempFile tmp(o.out);
    Sha256 transcript;
    Writer w(tmp.fd(), tmp.path(), &transcript);
    w.write(preamble);
    w.write(me.sign.sign(signed_message(kHeadLabel, h.digest)));

    // Pass 2: encrypt, checking each file is still what pass 1 read.
    Gcm gcm(content_key.view(), true);
    Bytes bundle_id = crypto::from_hex(info.bundle_id), out(o.chunk_bytes + kTag);
    for (uint32_t fi = 0; fi < o.files.size(); ++fi) {
        const auto& path = o.files[fi].path;
        const ManifestFile& m = read_files[fi];
        Fd fd = open_read(path);
        Sha256 sha;
        uint64_t done = 0;
        for (uint64_t ci = 0;; ++ci) {
            size_t want = static_cast<size_t>(std::min<uint64_t>(o.chunk_bytes, m.bytes - done));
            size_t n = read_some(fd.get(), buf.data(), want, path);
            if (n < want) bad(path.string() + ": changed while it was being exported (now shorter); nothing was written");
            done += n;
            bool final = done == m.bytes;
            sha.update(buf.data(), n);
            auto aad = chunk_aad(bundle_id, fi, ci, final, static_cast<uint32_t>(n), h.digest);
            gcm.seal(chunk_nonce(fi, ci), aad, View(buf.data(), n), out.data());
            uint8_t frame[6] = {kChunkFrame, static_cast<uint8_t>(final ? kFinal : 0)};
            frame[2] = static_cast<uint8_t>(n >> 24);
            frame[3] = static_cast<uint8_t>(n >> 16);
            frame[4] = static_cast<uint8_t>(n >> 8);
            frame[5] = static_cast<uint8_t>(n);
            w.write(View(frame, sizeof frame));
            w.write(View(out.data(), n + kTag));
            if (final) break;
        }
        uint8_t extra;
        if (read_some(fd.get(), &extra, 1, path) != 0 || crypto::to_hex(sha.peek()) != m.sha256)
            bad(path.string() + ": changed while it was being exported; nothing was written");
    }
    uint8_t end = kEndFrame;
    w.write(View(&end, 1));
    w.flush();
    Bytes sig = me.sign.sign(signed_message(kBodyLabel, transcript.peek()));
    write_all(tmp.fd(), sig.data(), sig.size(), tmp.path());
    sync_fd(tmp.fd(), tmp.path());
    if (before_publish) before_publish(info);
    tmp.publish(o.out);
    return info;
}

BundleInfo read_bundle_info(const fs::path& bundle) {
    Reader r(bundle);
    Head h = read_head(r);
    read_manifest(r, h);
    return h.info;
}

BundleInfo verify_bundle(const MediaIdentity& me, const fs::path& bundle) {
    Reader r(bundle);
    Head h = read_head(r);
    auto signer = trusted_signer(me, h.info, bundle);
    check_head_signature(r, h, signer);
    read_manifest(r, h);
    walk_body(r, h, signer, nullptr, [](uint32_t, View) {});
    return h.info;
}

// -------------------------------------------------------------------------------------------------
// The import ledger.

namespace {

// Rule media.import_once, applied to what the ledger holds about the bundle (oldest first).
void check_import_once(const std::vector<ImportLedgerEntry>& earlier, bool reimport, const BundleInfo& info,
                       const fs::path& bundle) {
    std::string field = bundle.string() + ": bundle_id " + info.bundle_id + ": ";
    if (earlier.empty()) {
        if (reimport)
            fail(MediaFailure::bad_input,
                 field + "--reimport given, but this node has no import of it on record; import it without --reimport", info);
        return;
    }
    if (reimport) return;
    const ImportLedgerEntry& last = earlier.back();
    std::string why = last.finished_ms
                          ? "already imported at " + iso8601_utc(*last.finished_ms) + " by " + last.operator_id + " into " +
                                last.out_dir
                          : "an import begun at " + iso8601_utc(last.started_ms) + " by " + last.operator_id + " into " +
                                last.out_dir + " has not finished (it is still running, or it was interrupted after " +
                                "its files began to be moved into place: check that directory)";
    if (earlier.size() > 1) why += " (" + std::to_string(earlier.size()) + " imports on record)";
    fail(MediaFailure::already_imported,
         field + why + "; rule media.import_once: a node imports a bundle once (to import it again, e.g. into a " +
             "destination restored from a backup, give --reimport with --operator and --purpose)",
         info);
}

} // namespace

struct ImportLedger::Db {
    sqlite::Database db;
    explicit Db(const fs::path& path) : db(path, sqlite::OpenOptions{sqlite::Durability::power_loss}) {
        // At most one plain import per bundle, whatever the code above it does; re-imports are
        // further rows.
        db.exec("CREATE TABLE IF NOT EXISTS media_imports ("
                " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
                " bundle_id TEXT NOT NULL CHECK (length(bundle_id) = 32),"
                " sender TEXT NOT NULL,"
                " out_dir TEXT NOT NULL,"
                " operator TEXT NOT NULL,"
                " purpose TEXT NOT NULL,"
                " reimport INTEGER NOT NULL CHECK (reimport IN (0, 1)),"
                " started_ms INTEGER NOT NULL,"
                " finished_ms INTEGER);"
                "CREATE INDEX IF NOT EXISTS media_imports_by_bundle ON media_imports (bundle_id);"
                "CREATE UNIQUE INDEX IF NOT EXISTS media_imports_once ON media_imports (bundle_id) WHERE reimport = 0;",
                "create media import ledger");
    }
    std::vector<ImportLedgerEntry> select(const std::string& bundle_id) {
        auto st = db.prepare("SELECT seq, bundle_id, sender, out_dir, operator, purpose, reimport, started_ms, finished_ms"
                             " FROM media_imports WHERE bundle_id = ?1 ORDER BY seq",
                             "look up imports of a bundle");
        st.bind_text(1, bundle_id);
        std::vector<ImportLedgerEntry> out;
        while (st.step()) {
            ImportLedgerEntry e;
            e.seq = st.column_int64(0);
            e.bundle_id = st.column_text(1);
            e.sender = st.column_text(2);
            e.out_dir = st.column_text(3);
            e.operator_id = st.column_text(4);
            e.purpose = st.column_text(5);
            e.reimport = st.column_int64(6) != 0;
            e.started_ms = st.column_int64(7);
            if (!st.column_is_null(8)) e.finished_ms = st.column_int64(8);
            out.push_back(std::move(e));
        }
        return out;
    }
};

ImportLedger::ImportLedger(const fs::path& path) : path_(path), db_(std::make_unique<Db>(path)) {}
ImportLedger::~ImportLedger() = default;

std::vector<ImportLedgerEntry> ImportLedger::imports_of(const std::string& bundle_id) { return db_->select(bundle_id); }

ImportLedger::Claim ImportLedger::claim(const ImportLedgerEntry& e, const BundleInfo& info, const fs::path& bundle) {
    sqlite::Transaction tx(db_->db); // the write lock: another process's claim waits for this one
    Claim c;
    c.earlier = db_->select(e.bundle_id);
    check_import_once(c.earlier, e.reimport, info, bundle);
    auto st = db_->db.prepare("INSERT INTO media_imports (bundle_id, sender, out_dir, operator, purpose, reimport, started_ms)"
                              " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                              "claim a bundle import");
    st.bind_text(1, e.bundle_id).bind_text(2, e.sender).bind_text(3, e.out_dir).bind_text(4, e.operator_id);
    st.bind_text(5, e.purpose).bind(6, e.reimport ? 1 : 0).bind(7, e.started_ms);
    st.run();
    c.seq = db_->db.last_insert_rowid();
    tx.commit();
    return c;
}

void ImportLedger::finish(int64_t seq, int64_t now_ms) {
    auto st = db_->db.prepare("UPDATE media_imports SET finished_ms = ?2 WHERE seq = ?1 AND finished_ms IS NULL",
                              "mark a bundle import finished");
    st.bind(1, seq).bind(2, now_ms);
    st.run();
    if (db_->db.changes() != 1)
        throw sqlite::Error(db_->db.path(), "mark a bundle import finished", "the claim is not in the ledger");
}

void ImportLedger::release(int64_t seq) {
    auto st = db_->db.prepare("DELETE FROM media_imports WHERE seq = ?1 AND finished_ms IS NULL", "release a bundle import claim");
    st.bind(1, seq);
    st.run();
}

ImportResult import_bundle(const MediaIdentity& me, const fs::path& bundle, const fs::path& out_dir,
                           const std::function<void(const BundleInfo&)>& before_publish) {
    ImportOptions o;
    if (before_publish) o.before_publish = [&](const BundleInfo& info, const std::vector<ImportLedgerEntry>&) { before_publish(info); };
    return import_bundle(me, bundle, out_dir, o);
}

ImportResult import_bundle(const MediaIdentity& me, const fs::path& bundle, const fs::path& out_dir,
                           const ImportOptions& opt) {
    Reader r(bundle);
    Head h = read_head(r);
    const BundleInfo& info = h.info;
    auto signer = trusted_signer(me, info, bundle);
    check_head_signature(r, h, signer);
    read_manifest(r, h);
    check_recipient(me, info, bundle);
    if (opt.reimport && (!opt.ledger || opt.operator_id.empty() || opt.purpose.empty()))
        fail(MediaFailure::bad_input,
             bundle.string() + ": --reimport needs the node's import ledger, --operator and --purpose (who imports the "
                               "bundle again, and why)",
             info);
    // A sqlite::Error names the database and the operation; as a MediaError the audit record
    // keeps the bundle id.
    auto ledger = [&](auto&& op) {
        try {
            return op();
        } catch (const sqlite::Error& e) {
            fail(MediaFailure::io, bundle.string() + ": the import ledger: " + e.what(), info);
        }
    };
    // Before anything is written (not even the output directory): a bundle imported before.
    if (opt.ledger) check_import_once(ledger([&] { return opt.ledger->imports_of(info.bundle_id); }), opt.reimport, info, bundle);
    auto key = unwrap_content_key(me, h, bundle);

    std::error_code ec;
    fs::create_directories(out_dir, ec);
    if (ec || !fs::is_directory(out_dir))
        fail(MediaFailure::io, out_dir.string() + ": cannot create the output directory" + (ec ? ": " + ec.message() : ""), info);
    for (auto& f : info.files)
        if (fs::exists(fs::symlink_status(out_dir / f.name, ec)))
            fail(MediaFailure::exists, (out_dir / f.name).string() + ": already exists (never overwritten); nothing was imported",
                 info);

    try {
        Staging staging(out_dir);
        struct Out {
            Fd fd;
            std::unique_ptr<Writer> w;
            std::unique_ptr<Sha256> sha;
            std::unique_ptr<RecordCounter> counter;
        };
        std::vector<Out> outs(info.files.size());
        auto finish = [&](uint32_t fi) {
            Out& o = outs[fi];
            const ManifestFile& m = info.files[fi];
            auto path = staging.dir() / m.name;
            o.w->flush();
            sync_fd(o.fd.get(), path);
            o.fd.reset();
            auto digest = crypto::to_hex(o.sha->peek());
            auto records = o.counter->records();
            if (!records || *records != m.records)
                fail(MediaFailure::mismatch,
                     bundle.string() + ": " + m.name + " holds " +
                         (records ? std::to_string(*records) : "no whole number of") + " record(s) (" + m.count.to_string() +
                         ") but the manifest says " + std::to_string(m.records) + "; refused",
                     info);
            if (digest != m.sha256)
                fail(MediaFailure::mismatch,
                     bundle.string() + ": " + m.name + " has SHA-256 " + digest + " but the manifest says " + m.sha256 +
                         "; refused",
                     info);
        };
        Gcm gcm(key.view(), false);
        int32_t open_file = -1;
        walk_body(r, h, signer, &gcm, [&](uint32_t fi, View plain) {
            if (static_cast<int32_t>(fi) != open_file) {
                if (open_file >= 0) finish(static_cast<uint32_t>(open_file));
                auto path = staging.dir() / info.files[fi].name;
                Out& o = outs[fi];
                o.fd = Fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
                if (!o.fd) fail(MediaFailure::io, path.string() + ": cannot create: " + errno_text(), info);
                o.w = std::make_unique<Writer>(o.fd.get(), path);
                o.sha = std::make_unique<Sha256>();
                o.counter = std::make_unique<RecordCounter>(info.files[fi].count);
                open_file = static_cast<int32_t>(fi);
            }
            Out& o = outs[fi];
            o.w->write(plain);
            o.sha->update(plain);
            o.counter->update(plain.data(), plain.size());
        });
        if (open_file >= 0) finish(static_cast<uint32_t>(open_file));
        sync_dir(staging.dir());

        // Claim the import in the ledger (committed, synced) before any file is moved into place,
        // and mark it finished once all are: a crash in between leaves an unfinished claim, which
        // refuses the bundle again like a finished one (docs/media.md, "The import ledger").
        ImportResult result{info, {}, {}};
        std::optional<int64_t> claimed;
        if (opt.ledger) {
            ImportLedgerEntry e;
            e.bundle_id = info.bundle_id;
            e.sender = info.sender;
            e.out_dir = fs::absolute(out_dir).lexically_normal().string();
            e.operator_id = opt.operator_id;
            e.purpose = opt.purpose;
            e.reimport = opt.reimport;
            e.started_ms = opt.now_ms ? opt.now_ms : wall_ms();
            auto c = ledger([&] { return opt.ledger->claim(e, info, bundle); });
            claimed = c.seq;
            result.earlier = std::move(c.earlier);
        }
        // Only while no file of this import is under its real name.
        auto release = [&] {
            if (!claimed) return;
            try {
                opt.ledger->release(*claimed);
            } catch (const sqlite::Error&) {
                // stays unfinished: the bundle is refused until --reimport, never imported twice
            }
        };
        try {
            if (opt.before_publish) opt.before_publish(info, result.earlier);
        } catch (...) {
            release();
            throw;
        }
        try {
            for (auto& f : info.files) {
                auto target = out_dir / f.name;
                if (!rename_no_replace(staging.dir() / f.name, target))
                    fail(MediaFailure::exists,
                         target.string() + ": appeared meanwhile (never overwritten); nothing was imported", info);
                result.written.push_back(target);
            }
        } catch (...) {
            bool undone = true;
            for (auto& done : result.written) { // put back what was moved
                fs::rename(done, staging.dir() / done.filename(), ec);
                if (ec) undone = false;
            }
            if (undone) release();
            throw;
        }
        // From here the files are in place: a failure leaves the claim unfinished.
        sync_dir(out_dir);
        if (opt.after_move) opt.after_move();
        if (claimed) ledger([&] {
            opt.ledger->finish(*claimed, opt.now_ms ? opt.now_ms : wall_ms());
            return 0;
        });
        return result;
    } catch (const crypto::CryptoError& e) {
        fail(MediaFailure::io, bundle.string() + ": " + e.what(), info);
    }
}

BundleInfo copy_bundle(const MediaIdentity& me, const fs::path& in, const fs::path& out,
                       const std::function<void(const BundleInfo&)>& before_publish) {
    BundleInfo info = verify_bundle(me, in);
    std::error_code ec;
    if (fs::exists(fs::symlink_status(out, ec)))
        fail(MediaFailure::exists, out.string() + ": already exists (never overwritten)", info);
    TempFile tmp(out);
    Sha256 source;
    {
        Fd fd = open_read(in);
        Bytes buf(1u << 20);
        while (size_t n = read_some(fd.get(), buf.data(), buf.size(), in)) {
            source.update(buf.data(), n);
            write_all(tmp.fd(), buf.data(), n, tmp.path());
        }
    }
    sync_fd(tmp.fd(), tmp.path());
    // Read back what the medium holds now, through a fresh descriptor.
    Sha256 copy;
    {
        Fd fd = open_read(tmp.path());
#ifdef POSIX_FADV_DONTNEED
        ::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_DONTNEED); // ask for the device's bytes, not the cache's
#endif
        Bytes buf(1u << 20);
        while (size_t n = read_some(fd.get(), buf.data(), buf.size(), tmp.path())) copy.update(buf.data(), n);
    }
    if (copy.peek() != source.peek())
        fail(MediaFailure::io, out.string() + ": the copy reads back differently from " + in.string() + "; not kept", info);
    if (before_publish) before_publish(info);
    tmp.publish(out);
    return info;
}

EraseResult erase_file(const fs::path& file) {
    EraseResult result;
    Fd fd(::open(file.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) {
        if (errno == ELOOP) fail(MediaFailure::bad_input, file.string() + ": is a symbolic link; erase the file it names instead");
        fail(MediaFailure::io, file.string() + ": cannot open for erasing: " + errno_text());
    }
    struct stat st{};
    if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) fail(MediaFailure::bad_input, file.string() + ": not a regular file");
    if (st.st_nlink > 1)
        fail(MediaFailure::bad_input, file.string() + ": has " + std::to_string(st.st_nlink) +
                                          " hard links; the other names would keep pointing at it, remove them first");
    try {
        result.bundle = read_bundle_info(file);
    } catch (const MediaError&) {
        // not a bundle: erased all the same
    }
    // Random bytes (AES-256-CTR under a throw-away key): no pattern a compressing or
    // deduplicating layer could shortcut.
    Bytes key = crypto::random_bytes(kKey), iv = crypto::random_bytes(16);
    EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
    if (!ctx || EVP_EncryptInit_ex(ctx, EVP_aes_256_ctr(), nullptr, key.data(), iv.data()) != 1) {
        EVP_CIPHER_CTX_free(ctx);
        fail(MediaFailure::io, "AES-256-CTR unavailable");
    }
    Bytes zeros(1u << 20, 0), noise(zeros.size());
    uint64_t size = static_cast<uint64_t>(st.st_size);
    for (uint64_t at = 0; at < size;) {
        size_t n = static_cast<size_t>(std::min<uint64_t>(zeros.size(), size - at));
        int len = 0;
        if (EVP_EncryptUpdate(ctx, noise.data(), &len, zeros.data(), static_cast<int>(n)) != 1) {
            EVP_CIPHER_CTX_free(ctx);
            fail(MediaFailure::io, "AES-256-CTR failed");
        }
        for (size_t done = 0; done < n;) {
            ssize_t w = ::pwrite(fd.get(), noise.data() + done, n - done, static_cast<off_t>(at + done));
            if (w < 0) {
                if (errno == EINTR) continue;
                EVP_CIPHER_CTX_free(ctx);
                fail(MediaFailure::io, file.string() + ": cannot overwrite: " + errno_text());
            }
            done += static_cast<size_t>(w);
        }
        at += n;
    }
    EVP_CIPHER_CTX_free(ctx);
    sync_fd(fd.get(), file);
    fd.reset();
    if (::unlink(file.c_str()) != 0) fail(MediaFailure::io, file.string() + ": overwritten but cannot unlink: " + errno_text());
    sync_dir(file.parent_path());
    result.bytes = size;
    return result;
}

// -------------------------------------------------------------------------------------------------
// The command line.

namespace {

constexpr int kOk = 0, kRefused = 1, kCannotStart = 2;

std::string operator_problem(const std::string& op) {
    if (op.empty()) return "--operator is required: who does this (it goes into the audit trail)";
    if (op.size() > 128) return "--operator is longer than 128 bytes";
    for (unsigned char c : op)
        if (c < 0x20 || c == 0x7F) return "--operator contains a control character";
    if (!valid_utf8(op)) return "--operator is not valid UTF-8";
    return {};
}

std::string file_details(const BundleInfo& info) {
    std::string d;
    size_t shown = 0;
    for (auto& f : info.files) {
        if (shown == 20) {
            d += "; and " + std::to_string(info.files.size() - shown) + " more";
            break;
        }
        d += "; " + f.name + " records=" + std::to_string(f.records) + " bytes=" + std::to_string(f.bytes) +
             " sha256=" + f.sha256;
        ++shown;
    }
    return d;
}

void print_info(const BundleInfo& info, std::ostream& out) {
    out << "bundle " << info.bundle_id << " (format " << info.version << ")\n"
        << "  sender     " << info.sender << " (signing key " << info.sender_sign_public << ")\n"
        << "  recipient  " << info.recipient << " (sealing key " << info.recipient_seal_public << ")\n"
        << "  created    " << info.created << "\n"
        << "  chunks     " << info.chunk_bytes << " bytes, AES-256-GCM\n"
        << "  contents   " << info.summary() << "\n";
    for (auto& f : info.files)
        out << "    " << f.name << "  " << f.records << " record(s) (" << f.count.to_string() << ")  " << f.bytes
            << " byte(s)  sha256 " << f.sha256 << "\n";
}

// "at T by OP into DIR" for each earlier import of a bundle.
std::string earlier_imports(const std::vector<ImportLedgerEntry>& earlier) {
    std::string d;
    for (auto& e : earlier) {
        if (!d.empty()) d += ", ";
        d += (e.finished_ms ? "at " + iso8601_utc(*e.finished_ms) : "begun at " + iso8601_utc(e.started_ms) + " (unfinished)") +
             " by " + e.operator_id + " into " + e.out_dir;
    }
    return d;
}

struct Session {
    HostConfig config;
    std::optional<MediaIdentity> me;
    std::unique_ptr<AuditLog> audit;
    std::unique_ptr<ImportLedger> ledger;
};

} // namespace

int run_media_command(const MediaCliOptions& o, std::ostream& out, std::ostream& err) {
    // inspect without a configuration: what the bundle says, nothing verified, nothing audited.
    if (o.action == MediaAction::inspect && o.config_file.empty()) {
        try {
            auto info = read_bundle_info(o.in);
            print_info(info, out);
            out << "signatures not checked (give --config and --operator to check them against the trust store)\n";
            return kOk;
        } catch (const MediaError& e) {
            err << "renkei: " << e.what() << "\n";
            return kRefused;
        }
    }
    if (o.config_file.empty()) {
        err << "renkei: --config is required (the node's configuration: its keys, trust store and audit trail)\n";
        return kCannotStart;
    }
    if (auto why = operator_problem(o.operator_id); !why.empty()) {
        err << "renkei: " << why << "\n";
        return kCannotStart;
    }
    if (o.reimport && (o.action != MediaAction::import_ || o.purpose.empty())) {
        err << "renkei: --reimport (import a bundle this node imported before) needs --purpose: why it is imported "
               "again goes into the audit trail\n";
        return kCannotStart;
    }
    std::optional<RecordCount> count;
    if (o.action == MediaAction::export_) {
        try {
            count = RecordCount::parse(o.count);
        } catch (const std::invalid_argument& e) {
            err << "renkei: --count: " << e.what() << "\n";
            return kCannotStart;
        }
    }
    Session s;
    try {
        s.config = load_config(o.config_file, o.plugin_dirs);
    } catch (const ConfigError& e) {
        err << "renkei: " << o.config_file.string() << ":\n";
        for (auto& issue : e.issues()) err << "  " << issue.to_string() << "\n";
        return kCannotStart;
    }
    try {
        if (o.action != MediaAction::erase) s.me = media_identity_from_config(s.config, wall_ms());
        s.audit = std::make_unique<AuditLog>(s.config.data_dir / "audit");
        if (o.action == MediaAction::import_) s.ledger = std::make_unique<ImportLedger>(s.config.data_dir / "media-imports.db");
    } catch (const std::exception& e) {
        err << "renkei: " << e.what() << "\n";
        return kCannotStart;
    }

    const char* type = o.action == MediaAction::export_   ? "media.export"
                       : o.action == MediaAction::import_ ? (o.reimport ? "media.reimport" : "media.import")
                       : o.action == MediaAction::copy    ? "media.copy"
                       : o.action == MediaAction::erase   ? "media.erase"
                                                          : "media.inspect";
    auto record = [&](const std::optional<BundleInfo>& info, const std::string& outcome, const std::string& detail) {
        AuditRecord r;
        r.time_ms = wall_ms();
        r.event = "admin";
        r.type = type;
        r.operator_id = o.operator_id;
        r.purpose = o.purpose;
        r.outcome = outcome;
        r.detail = detail;
        if (info) {
            r.message_id = info->bundle_id;
            r.from = info->sender;
            r.to = info->recipient;
        } else if (o.action == MediaAction::export_) {
            r.from = s.config.node_id;
            r.to = o.to;
        }
        s.audit->append(std::move(r));
        s.audit->flush();
    };
    // Audited before the result appears under its name: no bundle or imported file exists that
    // the trail does not know of.
    std::string detail;
    auto audited = [&](const BundleInfo& info) { record(info, "ok", detail + info.summary() + file_details(info)); };

    try {
        switch (o.action) {
        case MediaAction::export_: {
            ExportOptions e;
            e.recipient = o.to;
            e.out = o.out;
            e.chunk_bytes = o.chunk_bytes;
            for (auto& f : o.files) e.files.push_back({f, *count});
            detail = "bundle " + o.out.string() + ": ";
            auto info = export_bundle(*s.me, e, audited);
            out << "exported bundle " << info.bundle_id << " for " << info.recipient << " to " << o.out.string() << ": "
                << info.summary() << "\n";
            for (auto& f : info.files)
                out << "  " << f.name << "  " << f.records << " record(s)  " << f.bytes << " byte(s)  sha256 " << f.sha256 << "\n";
            return kOk;
        }
        case MediaAction::import_: {
            detail = (o.reimport ? "re-import (--reimport) of bundle " : "bundle ") + o.in.string() + " into " +
                     o.out.string() + ": ";
            ImportOptions io;
            io.ledger = s.ledger.get();
            io.reimport = o.reimport;
            io.operator_id = o.operator_id;
            io.purpose = o.purpose;
            io.before_publish = [&](const BundleInfo& info, const std::vector<ImportLedgerEntry>& earlier) {
                record(info, "ok",
                       detail + (earlier.empty() ? "" : "imported before " + earlier_imports(earlier) + "; ") + info.summary() +
                           file_details(info));
            };
            auto result = import_bundle(*s.me, o.in, o.out, io);
            out << (o.reimport ? "re-imported bundle " : "imported bundle ") << result.info.bundle_id << " from "
                << result.info.sender << " into " << o.out.string() << ": " << result.info.summary()
                << ", counts and digests reconciled\n";
            if (!result.earlier.empty()) out << "  imported before " << earlier_imports(result.earlier) << "\n";
            for (auto& f : result.info.files)
                out << "  " << f.name << "  " << f.records << " record(s) as the manifest says  " << f.bytes
                    << " byte(s)  sha256 ok\n";
            return kOk;
        }
        case MediaAction::copy: {
            detail = "copy " + o.in.string() + " to " + o.out.string() + " (verified, read back): ";
            auto info = copy_bundle(*s.me, o.in, o.out, audited);
            out << "copied bundle " << info.bundle_id << " (" << info.sender << " to " << info.recipient << ") to "
                << o.out.string() << ", signatures verified and the copy read back identical\n";
            return kOk;
        }
        case MediaAction::inspect: {
            detail = "inspect " + o.in.string() + " (signatures verified): ";
            auto info = verify_bundle(*s.me, o.in);
            audited(info);
            print_info(info, out);
            out << "signatures: ok (signed by " << info.sender << "; the structure and sizes are whole)\n";
            return kOk;
        }
        case MediaAction::erase: {
            int failures = 0;
            for (auto& f : o.files) {
                std::optional<BundleInfo> info;
                try {
                    info = read_bundle_info(f);
                } catch (const MediaError&) {
                }
                try {
                    auto r = erase_file(f);
                    record(r.bundle, "ok",
                           "erased " + f.string() + ": " + std::to_string(r.bytes) +
                               " byte(s) overwritten with random data, synced and unlinked" +
                               (r.bundle ? " (bundle: " + r.bundle->summary() + ")" : ""));
                    out << "erased " << f.string() << " (" << r.bytes << " byte(s) overwritten, then removed)"
                        << (r.bundle ? ", bundle " + r.bundle->bundle_id : "") << "\n";
                } catch (const MediaError& e) {
                    ++failures;
                    record(info, e.failure() == MediaFailure::io ? "failed" : "refused", e.what());
                    err << "renkei: " << e.what() << "\n";
                }
            }
            return failures ? kRefused : kOk;
        }
        }
    } catch (const MediaError& e) {
        record(e.info(), e.failure() == MediaFailure::io ? "failed" : "refused",
               detail + std::string(to_string(e.failure())) + ": " + e.what());
        err << "renkei: " << e.what() << "\n";
        return kRefused;
    } catch (const std::exception& e) {
        record(std::nullopt, "failed", detail + e.what());
        err << "renkei: " << e.what() << "\n";
        return kRefused;
    }
    return kRefused;
}

} // namespace renkei
