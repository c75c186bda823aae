#include <renkei/keys.hpp>

#include <renkei/config.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace renkei {
namespace fs = std::filesystem;
namespace {

void write_file(const fs::path& path, const std::string& text, mode_t mode, bool overwrite) {
    if (overwrite) fs::remove(path);
    // O_EXCL with the final mode: the file is never readable by others, not even briefly.
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) {
        if (errno == EEXIST)
            throw std::runtime_error(path.string() + ": exists; refusing to overwrite a key (use --force)");
        throw std::runtime_error(path.string() + ": cannot create: " + strerror(errno));
    }
    size_t done = 0;
    while (done < text.size()) {
        ssize_t n = ::write(fd, text.data() + done, text.size() - done);
        if (n < 0) {
            ::close(fd);
            throw std::runtime_error(path.string() + ": write failed: " + strerror(errno));
        }
        done += static_cast<size_t>(n);
    }
    if (::fsync(fd) != 0 || ::close(fd) != 0)
        throw std::runtime_error(path.string() + ": cannot flush: " + strerror(errno));
}

std::string read_private(const fs::path& path) {
    struct stat st{};
    if (::stat(path.c_str(), &st) != 0) throw std::runtime_error(path.string() + ": missing private key file");
    if ((st.st_mode & 077) != 0)
        throw std::runtime_error(path.string() + ": private key file is readable by group or others (mode " +
                                 [&] { char b[8]; snprintf(b, sizeof b, "%04o", st.st_mode & 07777); return std::string(b); }() +
                                 "); it must be 0600");
    std::ifstream in(path);
    std::string s;
    std::getline(in, s);
    return s;
}

std::string read_public(const fs::path& path) {
    std::ifstream in(path);
    if (!in) throw std::runtime_error(path.string() + ": missing public key file");
    std::string s;
    std::getline(in, s);
    return s;
}

} // namespace

std::string NodeCard::to_toml() const {
    std::ostringstream out;
    out << "# renkei node card: the public keys of " << node_id << "\n"
        << "[[node]]\n"
        << "id = \"" << node_id << "\"\n"
        << "curve_public = \"" << curve_public << "\"\n"
        << "sign_public = \"" << sign_public << "\"\n"
        << "seal_public = \"" << seal_public << "\"\n";
    return out.str();
}

NodeCard generate_node_keys(const fs::path& dir, const std::string& node_id, bool overwrite) {
    if (auto why = node_id_problem(node_id); !why.empty()) throw std::runtime_error(why);
    fs::create_directories(dir);
    fs::permissions(dir, fs::perms::owner_all, fs::perm_options::replace);

    char curve_pub[41], curve_sec[41];
    if (zmq_curve_keypair(curve_pub, curve_sec) != 0)
        throw std::runtime_error("zmq_curve_keypair failed (libzmq without CURVE?)");
    auto sign = crypto::SigningKey::generate();
    auto seal = crypto::SealKeyPair::generate();

    write_file(dir / "curve.key", std::string(curve_sec) + "\n", 0600, overwrite);
    OPENSSL_cleanse(curve_sec, sizeof curve_sec);
    write_file(dir / "sign.key", crypto::to_hex(sign.seed().view()) + "\n", 0600, overwrite);
    write_file(dir / "seal.key", crypto::to_hex(seal.private_key.view()) + "\n", 0600, overwrite);

    NodeCard card{node_id, curve_pub, crypto::to_hex(sign.public_raw()), crypto::to_hex(seal.public_key)};
    write_file(dir / "curve.pub", card.curve_public + "\n", 0644, overwrite);
    write_file(dir / "sign.pub", card.sign_public + "\n", 0644, overwrite);
    write_file(dir / "seal.pub", card.seal_public + "\n", 0644, overwrite);
    write_file(dir / "node.toml", card.to_toml(), 0644, overwrite);
    return card;
}

NodeKeys load_node_keys(const fs::path& dir) {
    NodeKeys k;
    std::ifstream card(dir / "node.toml");
    if (!card) throw std::runtime_error((dir / "node.toml").string() + ": missing node card");
    for (std::string line; std::getline(card, line);)
        if (line.rfind("id = \"", 0) == 0) k.node_id = line.substr(6, line.size() - 7);

    std::string curve_sec = read_private(dir / "curve.key");
    if (curve_sec.size() != 40) throw std::runtime_error((dir / "curve.key").string() + ": not a 40-character Z85 CURVE key");
    k.curve_secret = crypto::Secret(crypto::Bytes(curve_sec.begin(), curve_sec.end()));
    OPENSSL_cleanse(curve_sec.data(), curve_sec.size());
    k.curve_public = read_public(dir / "curve.pub");
    char secret_z85[41] = {}, derived[41] = {};
    std::memcpy(secret_z85, k.curve_secret.view().data(), 40); // zmq wants NUL-terminated Z85
    int rc = zmq_curve_public(derived, secret_z85);
    OPENSSL_cleanse(secret_z85, sizeof secret_z85);
    if (rc != 0 || k.curve_public != derived)
        throw std::runtime_error((dir / "curve.pub").string() + ": does not match curve.key");

    auto hex_key = [&](const char* name) {
        std::string text = read_private(dir / name);
        try {
            crypto::Secret s(crypto::from_hex(text));
            OPENSSL_cleanse(text.data(), text.size());
            if (s.size() != 32) throw crypto::CryptoError("must be 32 bytes");
            return s;
        } catch (const crypto::CryptoError& e) {
            throw std::runtime_error((dir / name).string() + ": malformed key (" + e.what() + ")");
        }
    };
    k.sign = crypto::SigningKey::from_seed(hex_key("sign.key").view());
    k.seal = crypto::SealKeyPair::from_private(hex_key("seal.key").view());
    if (crypto::to_hex(k.sign.public_raw()) != read_public(dir / "sign.pub"))
        throw std::runtime_error((dir / "sign.pub").string() + ": does not match sign.key");
    if (crypto::to_hex(k.seal.public_key) != read_public(dir / "seal.pub"))
        throw std::runtime_error((dir / "seal.pub").string() + ": does not match seal.key");
    return k;
}

NodeCard card_of(const NodeKeys& k) {
    return NodeCard{k.node_id, k.curve_public, crypto::to_hex(k.sign.public_raw()), crypto::to_hex(k.seal.public_key)};
}

} // namespace renkei

namespace renkei {

std::string generate_root_key(const fs::path& dir, bool overwrite) {
    fs::create_directories(dir);
    fs::permissions(dir, fs::perms::owner_all);
    auto key = crypto::SigningKey::generate();
    std::string pub = crypto::to_hex(key.public_raw());
    write_file(dir / "root.key", crypto::to_hex(key.seed().view()) + "\n", 0600, overwrite);
    write_file(dir / "root.pub", pub + "\n", 0644, overwrite);
    return pub;
}

crypto::SigningKey load_signing_key(const fs::path& file) {
    auto hex = read_private(file);
    try {
        return crypto::SigningKey::from_seed(crypto::from_hex(hex));
    } catch (const crypto::CryptoError& e) {
        throw std::runtime_error(file.string() + ": not an Ed25519 private key (64 hex characters): " + e.what());
    }
}

} // namespace renkei
