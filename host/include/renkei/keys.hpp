// A node's key files. A node has three key pairs:
//   curve.key / curve.pub   CurveZMQ (Z85), authenticates and encrypts links between hosts
//   sign.key  / sign.pub    Ed25519 (hex), signs envelopes for non-repudiation
//   seal.key  / seal.pub    X25519 (hex), opens data sealed end to end to this node
// Private files are created 0600 with O_EXCL and refused when group or others can read them.
// node.toml is the public "node card" that goes into the network's trust store.
#pragma once

#include <renkei/crypto.hpp>

#include <filesystem>
#include <string>

namespace renkei {

struct NodeKeys {
    std::string node_id;
    std::string curve_public;   // Z85, 40 characters
    crypto::Secret curve_secret; // Z85 text, 40 characters
    crypto::SigningKey sign;
    crypto::SealKeyPair seal;
};

struct NodeCard {
    std::string node_id;
    std::string curve_public; // Z85
    std::string sign_public;  // hex
    std::string seal_public;  // hex
    std::string to_toml() const;
};

// Writes a fresh key set into `dir` (created 0700). Refuses to overwrite existing key files
// unless `overwrite`. Returns the public card.
NodeCard generate_node_keys(const std::filesystem::path& dir, const std::string& node_id, bool overwrite = false);

// Loads the key set; throws std::runtime_error naming the file and the rule it breaks (missing,
// readable by group or others, malformed).
NodeKeys load_node_keys(const std::filesystem::path& dir);
NodeCard card_of(const NodeKeys& keys);

// The network root key (J-LIS) that signs trust stores: `dir`/root.key (hex seed, 0600) and
// `dir`/root.pub (hex). Returns the public key in hex.
std::string generate_root_key(const std::filesystem::path& dir, bool overwrite = false);
// Loads a root (or any Ed25519 hex-seed) private key file, refusing one readable by others.
crypto::SigningKey load_signing_key(const std::filesystem::path& file);

} // namespace renkei
