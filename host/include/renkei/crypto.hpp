// The host's cryptography on OpenSSL 3: Ed25519 signatures, sealing to a recipient (X25519 +
// HKDF-SHA256 + AES-256-GCM), SHA-256 and hex. Private key material is wiped on destruction and
// never appears in an error message.
#pragma once

#include <openssl/evp.h>

#include <cstdint>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace renkei::crypto {

using Bytes = std::vector<uint8_t>;
using View = std::span<const uint8_t>;

class CryptoError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

inline View view(std::string_view s) { return {reinterpret_cast<const uint8_t*>(s.data()), s.size()}; }

// Private bytes that are wiped (OPENSSL_cleanse) when they go away.
class Secret {
public:
    Secret() = default;
    explicit Secret(Bytes b) : bytes_(std::move(b)) {}
    Secret(const Secret&) = default;
    Secret& operator=(const Secret&) = default;
    Secret(Secret&&) = default;
    Secret& operator=(Secret&&) = default;
    ~Secret();
    View view() const { return bytes_; }
    size_t size() const { return bytes_.size(); }

private:
    Bytes bytes_;
};

struct PkeyDeleter {
    void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyDeleter>;

// An Ed25519 public key. verify() is thread-safe.
class VerifyKey {
public:
    static VerifyKey from_raw(View public_key); // 32 bytes
    bool verify(View data, View signature) const;
    const Bytes& raw() const { return raw_; }

private:
    std::shared_ptr<EVP_PKEY> key_;
    Bytes raw_;
};

// An Ed25519 private key. sign() is thread-safe (a fresh EVP_MD_CTX per call).
class SigningKey {
public:
    static SigningKey generate();
    static SigningKey from_seed(View seed); // 32 bytes
    Bytes sign(View data) const;            // 64 bytes
    VerifyKey verify_key() const;
    const Bytes& public_raw() const { return public_; }
    const Secret& seed() const { return seed_; }

private:
    std::shared_ptr<EVP_PKEY> key_;
    Secret seed_;
    Bytes public_;
};

// An X25519 key pair for sealing.
struct SealKeyPair {
    Secret private_key; // 32 bytes
    Bytes public_key;   // 32 bytes
    static SealKeyPair generate();
    static SealKeyPair from_private(View private_key);
};

// Seals `plaintext` so that only the holder of the X25519 private key for `recipient_public` can
// open it. Format: 0x01 | ephemeral public (32) | nonce (12) | ciphertext | tag (16).
// `aad` is bound to the result (both sides must pass the same).
Bytes seal(View recipient_public, View plaintext, View aad = {});
// Opens a sealed box; throws CryptoError when it was altered, truncated or sealed to another key.
Bytes open(const SealKeyPair& own, View sealed, View aad = {});

Bytes sha256(View data);
// The SHA-256 implementation, fetched from the provider once per process.
const EVP_MD* sha256_md();

// SHA-256 over data given in pieces (a file streamed in chunks).
class Sha256 {
public:
    Sha256();
    ~Sha256();
    Sha256(const Sha256&) = delete;
    Sha256& operator=(const Sha256&) = delete;
    void update(const void* p, size_t n);
    void update(View v) { update(v.data(), v.size()); }
    // The digest so far; the running state is kept (a copy is finalised).
    Bytes peek() const;
    // Writes the digest and starts over (one object hashes many short inputs without reallocating).
    void finish(uint8_t out[32]);

private:
    EVP_MD_CTX* ctx_;
};
Bytes random_bytes(size_t n);
std::string to_hex(View bytes);
void to_hex(View bytes, char* out); // writes 2 * bytes.size() characters
Bytes from_hex(std::string_view hex); // throws CryptoError naming the problem

} // namespace renkei::crypto
