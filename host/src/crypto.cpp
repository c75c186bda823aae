#include <renkei/crypto.hpp>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>

#include <cstring>

namespace renkei::crypto {
namespace {

constexpr uint8_t kSealVersion = 1;
constexpr size_t kKey = 32, kNonce = 12, kTag = 16;

struct MdCtx {
    EVP_MD_CTX* p = EVP_MD_CTX_new();
    ~MdCtx() { EVP_MD_CTX_free(p); }
};
struct CipherCtx {
    EVP_CIPHER_CTX* p = EVP_CIPHER_CTX_new();
    ~CipherCtx() { EVP_CIPHER_CTX_free(p); }
};
struct PkeyCtx {
    EVP_PKEY_CTX* p;
    explicit PkeyCtx(EVP_PKEY_CTX* c) : p(c) {}
    ~PkeyCtx() { EVP_PKEY_CTX_free(p); }
};

std::shared_ptr<EVP_PKEY> shared(EVP_PKEY* p, const char* what) {
    if (p == nullptr) throw CryptoError(std::string(what) + ": invalid key");
    return std::shared_ptr<EVP_PKEY>(p, EVP_PKEY_free);
}

Bytes raw_public(EVP_PKEY* k) {
    size_t n = kKey;
    Bytes out(n);
    if (EVP_PKEY_get_raw_public_key(k, out.data(), &n) != 1 || n != kKey)
        throw CryptoError("cannot read public key");
    return out;
}

Secret raw_private(EVP_PKEY* k) {
    size_t n = kKey;
    Bytes out(n);
    if (EVP_PKEY_get_raw_private_key(k, out.data(), &n) != 1 || n != kKey)
        throw CryptoError("cannot read private key");
    return Secret(std::move(out));
}

Secret x25519(EVP_PKEY* own, View peer_public) {
    Pkey peer(EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, nullptr, peer_public.data(), peer_public.size()));
    if (!peer) throw CryptoError("recipient sealing key is not a valid X25519 public key");
    PkeyCtx ctx(EVP_PKEY_CTX_new(own, nullptr));
    size_t n = kKey;
    Bytes shared_secret(n);
    if (!ctx.p || EVP_PKEY_derive_init(ctx.p) != 1 || EVP_PKEY_derive_set_peer(ctx.p, peer.get()) != 1 ||
        EVP_PKEY_derive(ctx.p, shared_secret.data(), &n) != 1)
        throw CryptoError("X25519 key agreement failed");
    return Secret(std::move(shared_secret));
}

// HKDF-SHA256(ikm = shared secret, salt = ephemeral || recipient public keys, info = label).
Secret hkdf(const Secret& ikm, View salt) {
    EVP_KDF* kdf = EVP_KDF_fetch(nullptr, "HKDF", nullptr);
    EVP_KDF_CTX* kctx = EVP_KDF_CTX_new(kdf);
    EVP_KDF_free(kdf);
    if (kctx == nullptr) throw CryptoError("HKDF unavailable");
    static const char info[] = "renkei seal v1";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, const_cast<char*>("SHA256"), 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, const_cast<uint8_t*>(ikm.view().data()), ikm.size()),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, const_cast<uint8_t*>(salt.data()), salt.size()),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, const_cast<char*>(info), sizeof info - 1),
        OSSL_PARAM_construct_end()};
    Bytes key(kKey);
    int rc = EVP_KDF_derive(kctx, key.data(), key.size(), params);
    EVP_KDF_CTX_free(kctx);
    if (rc != 1) throw CryptoError("HKDF failed");
    return Secret(std::move(key));
}

} // namespace

Secret::~Secret() {
    if (!bytes_.empty()) OPENSSL_cleanse(bytes_.data(), bytes_.size());
}

VerifyKey VerifyKey::from_raw(View pub) {
    if (pub.size() != kKey) throw CryptoError("Ed25519 public key must be 32 bytes, got " + std::to_string(pub.size()));
    VerifyKey k;
    k.key_ = shared(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, pub.data(), pub.size()), "Ed25519 public key");
    k.raw_.assign(pub.begin(), pub.end());
    return k;
}

bool VerifyKey::verify(View data, View sig) const {
    if (!key_ || sig.size() != 64) return false;
    MdCtx ctx;
    if (!ctx.p || EVP_DigestVerifyInit(ctx.p, nullptr, nullptr, nullptr, key_.get()) != 1) return false;
    return EVP_DigestVerify(ctx.p, sig.data(), sig.size(), data.data(), data.size()) == 1;
}

SigningKey SigningKey::generate() {
    EVP_PKEY* k = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
    if (k == nullptr) throw CryptoError("Ed25519 key generation failed");
    SigningKey s;
    s.key_ = shared(k, "Ed25519");
    s.seed_ = raw_private(k);
    s.public_ = raw_public(k);
    return s;
}

SigningKey SigningKey::from_seed(View seed) {
    if (seed.size() != kKey) throw CryptoError("Ed25519 private key must be 32 bytes");
    SigningKey s;
    s.key_ = shared(EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, seed.data(), seed.size()), "Ed25519 private key");
    s.seed_ = Secret(Bytes(seed.begin(), seed.end()));
    s.public_ = raw_public(s.key_.get());
    return s;
}

Bytes SigningKey::sign(View data) const {
    MdCtx ctx;
    size_t n = 64;
    Bytes sig(n);
    if (!ctx.p || EVP_DigestSignInit(ctx.p, nullptr, nullptr, nullptr, key_.get()) != 1 ||
        EVP_DigestSign(ctx.p, sig.data(), &n, data.data(), data.size()) != 1 || n != 64)
        throw CryptoError("Ed25519 signing failed");
    return sig;
}

VerifyKey SigningKey::verify_key() const { return VerifyKey::from_raw(public_); }

SealKeyPair SealKeyPair::generate() {
    Pkey k(EVP_PKEY_Q_keygen(nullptr, nullptr, "X25519"));
    if (!k) throw CryptoError("X25519 key generation failed");
    return SealKeyPair{raw_private(k.get()), raw_public(k.get())};
}

SealKeyPair SealKeyPair::from_private(View priv) {
    if (priv.size() != kKey) throw CryptoError("X25519 private key must be 32 bytes");
    Pkey k(EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nullptr, priv.data(), priv.size()));
    if (!k) throw CryptoError("invalid X25519 private key");
    return SealKeyPair{Secret(Bytes(priv.begin(), priv.end())), raw_public(k.get())};
}

Bytes seal(View recipient_public, View plaintext, View aad) {
    if (recipient_public.size() != kKey) throw CryptoError("recipient sealing key must be 32 bytes");
    auto eph = SealKeyPair::generate();
    Pkey eph_key(EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nullptr, eph.private_key.view().data(), kKey));
    Bytes salt(eph.public_key);
    salt.insert(salt.end(), recipient_public.begin(), recipient_public.end());
    Secret key = hkdf(x25519(eph_key.get(), recipient_public), salt);

    Bytes out;
    out.reserve(1 + kKey + kNonce + plaintext.size() + kTag);
    out.push_back(kSealVersion);
    out.insert(out.end(), eph.public_key.begin(), eph.public_key.end());
    Bytes nonce = random_bytes(kNonce);
    out.insert(out.end(), nonce.begin(), nonce.end());
    Bytes header(out.begin(), out.end()); // version and ephemeral key are authenticated too

    CipherCtx c;
    int len = 0;
    size_t at = out.size();
    out.resize(at + plaintext.size() + kTag);
    if (!c.p || EVP_EncryptInit_ex(c.p, EVP_aes_256_gcm(), nullptr, key.view().data(), nonce.data()) != 1 ||
        EVP_EncryptUpdate(c.p, nullptr, &len, header.data(), static_cast<int>(header.size())) != 1 ||
        (aad.size() > 0 && EVP_EncryptUpdate(c.p, nullptr, &len, aad.data(), static_cast<int>(aad.size())) != 1) ||
        EVP_EncryptUpdate(c.p, out.data() + at, &len, plaintext.data(), static_cast<int>(plaintext.size())) != 1)
        throw CryptoError("AES-256-GCM encryption failed");
    int fin = 0;
    if (EVP_EncryptFinal_ex(c.p, out.data() + at + len, &fin) != 1 ||
        EVP_CIPHER_CTX_ctrl(c.p, EVP_CTRL_GCM_GET_TAG, kTag, out.data() + at + plaintext.size()) != 1)
        throw CryptoError("AES-256-GCM encryption failed");
    return out;
}

Bytes open(const SealKeyPair& own, View sealed, View aad) {
    if (sealed.size() < 1 + kKey + kNonce + kTag) throw CryptoError("sealed data is truncated");
    if (sealed[0] != kSealVersion) throw CryptoError("sealed data has unknown version " + std::to_string(sealed[0]));
    View eph_pub = sealed.subspan(1, kKey);
    View nonce = sealed.subspan(1 + kKey, kNonce);
    View header = sealed.subspan(0, 1 + kKey + kNonce);
    View body = sealed.subspan(1 + kKey + kNonce, sealed.size() - (1 + kKey + kNonce) - kTag);
    View tag = sealed.subspan(sealed.size() - kTag);

    Pkey own_key(EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nullptr, own.private_key.view().data(), kKey));
    if (!own_key) throw CryptoError("own sealing key is invalid");
    Bytes salt(eph_pub.begin(), eph_pub.end());
    salt.insert(salt.end(), own.public_key.begin(), own.public_key.end());
    Secret key = hkdf(x25519(own_key.get(), eph_pub), salt);

    CipherCtx c;
    Bytes out(body.size());
    int len = 0, fin = 0;
    bool ok = c.p && EVP_DecryptInit_ex(c.p, EVP_aes_256_gcm(), nullptr, key.view().data(), nonce.data()) == 1 &&
              EVP_DecryptUpdate(c.p, nullptr, &len, header.data(), static_cast<int>(header.size())) == 1 &&
              (aad.empty() || EVP_DecryptUpdate(c.p, nullptr, &len, aad.data(), static_cast<int>(aad.size())) == 1) &&
              EVP_DecryptUpdate(c.p, out.data(), &len, body.data(), static_cast<int>(body.size())) == 1 &&
              EVP_CIPHER_CTX_ctrl(c.p, EVP_CTRL_GCM_SET_TAG, kTag, const_cast<uint8_t*>(tag.data())) == 1 &&
              EVP_DecryptFinal_ex(c.p, out.data() + len, &fin) == 1;
    if (!ok) {
        OPENSSL_cleanse(out.data(), out.size());
        throw CryptoError("sealed data failed authentication (altered, or sealed to another recipient)");
    }
    return out;
}

const EVP_MD* sha256_md() {
    // Fetched once: EVP_sha256() makes every digest look the algorithm up in the provider again,
    // which costs more than hashing a short input.
    static EVP_MD* md = [] {
        EVP_MD* m = EVP_MD_fetch(nullptr, "SHA256", nullptr);
        if (!m) throw CryptoError("SHA-256 unavailable");
        return m;
    }();
    return md;
}

Bytes sha256(View data) {
    Bytes out(32);
    unsigned int n = 0;
    if (EVP_Digest(data.data(), data.size(), out.data(), &n, sha256_md(), nullptr) != 1)
        throw CryptoError("SHA-256 failed");
    return out;
}

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
    if (!ctx_ || EVP_DigestInit_ex(ctx_, sha256_md(), nullptr) != 1) {
        EVP_MD_CTX_free(ctx_);
        throw CryptoError("SHA-256 unavailable");
    }
}

Sha256::~Sha256() { EVP_MD_CTX_free(ctx_); }

void Sha256::update(const void* p, size_t n) {
    if (n > 0 && EVP_DigestUpdate(ctx_, p, n) != 1) throw CryptoError("SHA-256 failed");
}

void Sha256::finish(uint8_t out[32]) {
    unsigned int n = 0;
    if (EVP_DigestFinal_ex(ctx_, out, &n) != 1 || EVP_DigestInit_ex(ctx_, sha256_md(), nullptr) != 1)
        throw CryptoError("SHA-256 failed");
}

Bytes Sha256::peek() const {
    EVP_MD_CTX* copy = EVP_MD_CTX_new();
    Bytes out(32);
    unsigned int n = 0;
    bool ok = copy && EVP_MD_CTX_copy_ex(copy, ctx_) == 1 && EVP_DigestFinal_ex(copy, out.data(), &n) == 1;
    EVP_MD_CTX_free(copy);
    if (!ok) throw CryptoError("SHA-256 failed");
    return out;
}

Bytes random_bytes(size_t n) {
    Bytes out(n);
    if (n > 0 && RAND_bytes(out.data(), static_cast<int>(n)) != 1) throw CryptoError("RAND_bytes failed");
    return out;
}

void to_hex(View bytes, char* out) {
    static const char d[] = "0123456789abcdef";
    for (uint8_t b : bytes) {
        *out++ = d[b >> 4];
        *out++ = d[b & 15];
    }
}

std::string to_hex(View bytes) {
    // Sized once and written in place: a push_back per digit checked the capacity 64 times for a
    // hash, and ids and hashes are written in hex several times per message.
    std::string s(bytes.size() * 2, '\0');
    to_hex(bytes, s.data());
    return s;
}

Bytes from_hex(std::string_view hex) {
    if (hex.size() % 2 != 0) throw CryptoError("hex text has an odd number of digits");
    auto nibble = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    };
    Bytes out(hex.size() / 2);
    for (size_t i = 0; i < out.size(); ++i) {
        int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) throw CryptoError("hex text has a non-hex character at position " + std::to_string(2 * i + (hi < 0 ? 0 : 1)));
        out[i] = static_cast<uint8_t>(hi << 4 | lo);
    }
    return out;
}

} // namespace renkei::crypto
