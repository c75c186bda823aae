// The network's trust store: which node ids exist and which public keys each may use, signed by
// the network root key (J-LIS) and valid until it expires. Every host loads the same file; a
// host refuses to start on a store that is unsigned, signed by another key, expired or older
// than the one it runs with, and reloads it on SIGHUP (key rotation and revocation without a
// restart).
//
// trust.toml:
//   [trust]
//   network = "renkei-demo"
//   serial = 7                              # grows with every edition; never goes back
//   issued_at = 2026-11-23T00:00:00Z
//   expires_at = 2027-11-23T00:00:00Z
//   [[node]]                                # as written by `renkei keygen` (node.toml)
//   id = "pref:13"
//   curve_public = "…" | ["old", "new"]     # a list while a key is being rotated
//   sign_public = "…" | ["old", "new"]
//   seal_public = "…"
//   [[revoked]]
//   key = "…"                               # a CURVE (Z85) or signing (hex) key, refused everywhere
//   reason = "…"
// trust.toml.sig holds the hex Ed25519 signature of the root key over the exact bytes of
// trust.toml (`renkei trust sign`).
#pragma once

#include <renkei/crypto.hpp>

#include <cstdint>
#include <filesystem>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace renkei {

class TrustError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

struct TrustedNode {
    std::string id;
    std::vector<std::string> curve_public; // Z85; revoked keys already removed
    std::vector<std::string> sign_public;  // hex; revoked keys already removed
    std::string seal_public;               // hex, may be empty
};

struct TrustStore {
    std::filesystem::path file;
    std::string network;
    int64_t serial = 0;
    int64_t issued_ms = 0, expires_ms = 0;
    std::map<std::string, TrustedNode> nodes;
    std::map<std::string, std::string> revoked; // key -> reason

    bool expired(int64_t now_ms) const { return now_ms >= expires_ms; }
    const TrustedNode* node(const std::string& id) const {
        auto it = nodes.find(id);
        return it == nodes.end() ? nullptr : &it->second;
    }
};

// Reads `file` and `file`.sig, checks the signature with `root_public_hex`, parses and validates
// (every problem named by file, line and key), and refuses a store that has expired at `now_ms`.
TrustStore load_trust_store(const std::filesystem::path& file, const std::string& root_public_hex, int64_t now_ms);

// Signs `file` with the root key, writing `file`.sig. Returns the signature (hex).
std::string sign_trust_store(const std::filesystem::path& file, const crypto::SigningKey& root);

// "2026-11-23T00:00:00Z" for log lines and errors.
std::string format_utc_ms(int64_t ms);

} // namespace renkei
