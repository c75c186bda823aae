// Encrypted media (電磁的記録媒体): sealed bundles that carry files between nodes on a disk
// instead of a line, e.g. a municipal system's record file to its CS, or a provision batch from
// J-LIS to an agency. The format and its checks are described in docs/media.md.
//
// A bundle is one file (.rkm):
//   preamble   "RKMEDIA1" | u32 header length | header (TOML) | u32 manifest length | manifest (TOML)
//   head sig   Ed25519 of the sender over "renkei-media-v1 head" | SHA-256(preamble)
//   chunks     per file in manifest order: 'C' | flags (bit 0: final) | u32 length | ciphertext | tag
//              AES-256-GCM under the bundle's content key; nonce = u32 file index | u64 chunk index;
//              associated data = bundle id, file and chunk index, final flag, length, SHA-256(preamble)
//   trailer    'E' | Ed25519 of the sender over "renkei-media-v1 body" | SHA-256(everything before it)
// The content key is fresh and random per bundle and travels wrapped (AES-256-GCM) under a key
// derived by HKDF-SHA256 from an ephemeral X25519 agreement with the recipient's sealing key,
// bound to the bundle id, sender and recipient. All integers are big-endian.
//
// Nothing of a refused bundle is ever written where the importer asked: files are decrypted into a
// private staging directory and moved into place (rename, never overwriting) only after every
// chunk, both signatures, every size, record count and SHA-256 checked out.
#pragma once

#include <renkei/crypto.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <stdexcept>
#include <string>
#include <vector>

namespace renkei {

struct HostConfig;

// How the records of a file are counted (what the importer reconciles).
struct RecordCount {
    enum class Kind { lines, fixed };
    Kind kind = Kind::lines;
    uint64_t record_bytes = 0; // fixed: every record is this long

    // "lines" (LF-terminated lines; a last line without LF counts too) or "fixed:N" (N bytes each,
    // 1 <= N <= 1 MiB). Throws std::invalid_argument naming the rule.
    static RecordCount parse(const std::string& text);
    std::string to_string() const;
};

// Why a bundle was refused, for callers that act on it (tests, the CLI's exit code).
enum class MediaFailure {
    malformed,          // not a bundle, or a header / manifest that does not parse
    altered,            // a signature or a GCM tag does not verify
    truncated,          // the stream ends early (a chunk, a file's final chunk, the trailer)
    wrong_recipient,    // sealed to another node or another sealing key
    untrusted_sender,   // the sender is unknown, or signed with a key not trusted for it
    mismatch,           // size, record count or SHA-256 differs from the manifest
    io,                 // a file cannot be read or written
    exists,             // the output is already there (never overwritten)
    already_imported,   // this node imported the bundle before (rule media.import_once)
    bad_input,          // the exporter's files or options break a rule
};
const char* to_string(MediaFailure f);

struct ManifestFile {
    std::string name;    // a plain file name, no directories
    uint64_t bytes = 0;
    uint64_t records = 0;
    RecordCount count;
    std::string sha256;  // hex, of the plaintext
};

// What a bundle says about itself (header and manifest), readable without the key.
struct BundleInfo {
    int version = 0;
    std::string bundle_id; // 32 hex digits
    std::string sender, recipient;
    std::string created;   // ISO 8601 UTC
    std::string sender_sign_public;    // hex: the key that signed it
    std::string recipient_seal_public; // hex: the key it is sealed to
    uint64_t chunk_bytes = 0;
    std::vector<ManifestFile> files;
    uint64_t total_bytes() const;
    uint64_t total_records() const;
    std::string summary() const; // "2 file(s), 1234 record(s), 56789 byte(s)"
};

class MediaError : public std::runtime_error {
public:
    MediaError(MediaFailure failure, const std::string& message, std::optional<BundleInfo> info = std::nullopt)
        : std::runtime_error(message), failure_(failure), info_(std::move(info)) {}
    MediaFailure failure() const { return failure_; }
    // What was read of the bundle before it was refused (for the audit record), if anything.
    const std::optional<BundleInfo>& info() const { return info_; }

private:
    MediaFailure failure_;
    std::optional<BundleInfo> info_;
};

// This node's keys and whom it trusts: what sealing, signing and checking a bundle need.
struct MediaIdentity {
    std::string node_id;
    crypto::SigningKey sign;
    crypto::SealKeyPair seal;
    struct Party {
        std::vector<crypto::Bytes> sign_public; // raw Ed25519 keys trusted for the node (rotation: several)
        crypto::Bytes seal_public;              // raw X25519, may be empty
    };
    std::map<std::string, Party> parties; // node id -> keys (this node included)
};

// Keys from the node's keys_dir, parties from its signed trust store (any node of the network) or,
// without one, from its [[peer]] entries. Throws std::runtime_error naming the file and the rule.
MediaIdentity media_identity_from_config(const HostConfig& config, int64_t now_ms);

struct ExportFile {
    std::filesystem::path path;
    RecordCount count;
};

struct ExportOptions {
    std::string recipient;
    std::filesystem::path out;      // the bundle; refused if it exists
    std::vector<ExportFile> files;  // at least one; their names (last path part) must be distinct
    uint64_t chunk_bytes = 1u << 20; // 4 KiB to 64 MiB
    int64_t now_ms = 0;
    // Tests only: edits the manifest after the files were read and before it is signed, as a
    // faulty or dishonest exporter would (the importer must catch what it then signs).
    std::function<void(std::vector<ManifestFile>&)> edit_manifest;
};

// Writes the sealed bundle (to a temporary file beside `out`, then renamed), reading each file
// twice: once for the manifest, once to encrypt, refusing one that changed in between. Throws
// MediaError. `before_publish`, when given, runs after the bundle is complete and synced and
// before it appears under its name (the CLI writes the audit record there).
BundleInfo export_bundle(const MediaIdentity& me, const ExportOptions& options,
                         const std::function<void(const BundleInfo&)>& before_publish = {});

// Reads the header and manifest only (no key needed, nothing verified). Throws MediaError.
BundleInfo read_bundle_info(const std::filesystem::path& bundle);

// Checks both signatures and the chunk structure against the sender's trusted keys without the
// content key (any node that trusts the sender can, e.g. before copying it to a medium). Throws
// MediaError.
BundleInfo verify_bundle(const MediaIdentity& me, const std::filesystem::path& bundle);

// One import of a bundle as the node's import ledger holds it.
struct ImportLedgerEntry {
    int64_t seq = 0;                  // the ledger's own order
    std::string bundle_id, sender;
    std::string out_dir;              // absolute
    std::string operator_id, purpose;
    bool reimport = false;            // done with --reimport (the bundle was imported before)
    int64_t started_ms = 0;           // claimed, just before its files were moved into place
    std::optional<int64_t> finished_ms; // nullopt: never finished (a crash, or a directory sync
                                        // that failed, after the claim); its files may be in out_dir
};

// The bundles a node has imported (<data_dir>/media-imports.db, SQLite, synchronous=FULL), so
// that `renkei media import` refuses the same bundle twice (rule media.import_once) whatever the
// directory. Only ids, senders, directories, times, operators and purposes: no record content.
// Several processes may use it at once (each claim takes the database's write lock).
class ImportLedger {
public:
    // Opens (creating) the database file. Throws sqlite::Error naming the file.
    explicit ImportLedger(const std::filesystem::path& path);
    ~ImportLedger();
    ImportLedger(const ImportLedger&) = delete;
    ImportLedger& operator=(const ImportLedger&) = delete;

    // Every recorded import of the bundle (finished or not), oldest first.
    std::vector<ImportLedgerEntry> imports_of(const std::string& bundle_id);

    // Used by import_bundle(). claim(): under the write lock, applies media.import_once to what
    // the ledger holds (throws MediaError: already_imported without `reimport` when the bundle has
    // an entry, bad_input with `reimport` when it has none) and inserts `entry` unfinished;
    // returns its seq and the earlier entries. finish(): marks it finished. release(): removes
    // an unfinished claim whose import put no file into place.
    struct Claim {
        int64_t seq = 0;
        std::vector<ImportLedgerEntry> earlier;
    };
    Claim claim(const ImportLedgerEntry& entry, const BundleInfo& info, const std::filesystem::path& bundle);
    void finish(int64_t seq, int64_t now_ms);
    void release(int64_t seq);

    const std::filesystem::path& path() const { return path_; }

private:
    struct Db;
    std::filesystem::path path_;
    std::unique_ptr<Db> db_;
};

struct ImportOptions {
    // When given: a bundle the ledger already holds is refused (rule media.import_once) before
    // anything is written, and this import is recorded in it (see docs/media.md for the order).
    ImportLedger* ledger = nullptr;
    // Import a bundle the ledger already holds (e.g. into a destination restored from a backup).
    // Needs operator_id and purpose, and a ledger that holds the bundle.
    bool reimport = false;
    std::string operator_id, purpose; // into the ledger
    int64_t now_ms = 0;               // 0: the clock
    // Runs once every check passed and the import is claimed in the ledger, before the files
    // appear under their names (the CLI writes the audit record there). `earlier`: the ledger's
    // earlier imports of the bundle (only a re-import has any). If it throws, the claim is
    // released and nothing is imported.
    std::function<void(const BundleInfo&, const std::vector<ImportLedgerEntry>& earlier)> before_publish;
    // Tests only: runs once the files are in place and synced, before the ledger marks the import
    // finished (a crash there leaves an unfinished claim).
    std::function<void()> after_move;
};

struct ImportResult {
    BundleInfo info;
    std::vector<std::filesystem::path> written; // in manifest order
    std::vector<ImportLedgerEntry> earlier;     // with a ledger: its earlier imports of the bundle
};

// Verifies, decrypts and reconciles the bundle, then moves its files into `out_dir` (created if
// missing). On any refusal nothing is left in `out_dir` (nor in the ledger). Throws MediaError.
ImportResult import_bundle(const MediaIdentity& me, const std::filesystem::path& bundle,
                           const std::filesystem::path& out_dir, const ImportOptions& options);
// The same without a ledger: nothing stops a second import of the bundle (the CLI always has one).
ImportResult import_bundle(const MediaIdentity& me, const std::filesystem::path& bundle,
                           const std::filesystem::path& out_dir,
                           const std::function<void(const BundleInfo&)>& before_publish = {});

// Copies a bundle after verify_bundle(), writing a temporary file beside `out`, syncing it, reading
// it back and comparing SHA-256 before renaming it (never over an existing file). Throws MediaError.
BundleInfo copy_bundle(const MediaIdentity& me, const std::filesystem::path& in, const std::filesystem::path& out,
                       const std::function<void(const BundleInfo&)>& before_publish = {});

struct EraseResult {
    uint64_t bytes = 0;
    std::optional<BundleInfo> bundle; // when the file was a bundle
};

// Overwrites a regular file with random bytes, syncs, then unlinks it and syncs its directory.
// Refuses symbolic links and files with other hard links. On flash media and copy-on-write file
// systems the old blocks may survive; see docs/media.md. Throws MediaError.
EraseResult erase_file(const std::filesystem::path& file);

// `renkei media export|import|inspect|copy|erase`: main.cpp parses the options, this runs them,
// writing every action (done or refused) to the node's audit log.
//
// Exit codes: 0 done; 1 refused or failed (the reason on `err`); 2 could not start (bad options,
// a configuration or key problem).
enum class MediaAction { export_, import_, inspect, copy, erase };

struct MediaCliOptions {
    MediaAction action = MediaAction::inspect;
    std::filesystem::path config_file; // required except for inspect
    std::vector<std::filesystem::path> plugin_dirs;
    std::string operator_id;           // required with a configuration
    std::string purpose;               // optional: the legal basis, into the audit record
    std::string to;                    // export
    std::filesystem::path in, out;     // export: out file; import: in file, out dir; copy: in, out; inspect: in
    std::vector<std::filesystem::path> files; // export, erase
    std::string count = "lines";       // export: how records are counted
    uint64_t chunk_bytes = 1u << 20;   // export
    bool reimport = false;             // import: the bundle was imported here before; needs --purpose
};

int run_media_command(const MediaCliOptions& options, std::ostream& out, std::ostream& err);

} // namespace renkei
