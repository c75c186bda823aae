#include <renkei/trust_store.hpp>

#include <renkei/config.hpp>

#include <toml++/toml.h>

#include <ctime>
#include <fstream>
#include <sstream>

namespace renkei {
namespace fs = std::filesystem;
namespace {

std::string read_all(const fs::path& p, const char* what) {
    std::ifstream in(p, std::ios::binary);
    if (!in) throw TrustError(p.string() + ": cannot read the " + what);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

int64_t to_unix_ms(const toml::date_time& dt) {
    std::tm tm{};
    tm.tm_year = dt.date.year - 1900;
    tm.tm_mon = dt.date.month - 1;
    tm.tm_mday = dt.date.day;
    tm.tm_hour = dt.time.hour;
    tm.tm_min = dt.time.minute;
    tm.tm_sec = dt.time.second;
    int64_t s = timegm(&tm);
    if (dt.offset) s -= int64_t(dt.offset->minutes) * 60;
    return s * 1000;
}

struct Parser {
    fs::path file;
    std::vector<std::string> problems;

    void problem(const toml::node* n, const std::string& key, const std::string& rule) {
        int64_t line = n ? n->source().begin.line : 0;
        problems.push_back(file.string() + ":" + std::to_string(line) + ": " + key + ": " + rule);
    }

    std::vector<std::string> keys(const toml::table& t, const std::string& prefix, const char* key) {
        std::vector<std::string> out;
        auto* n = t.get(key);
        if (!n) return out;
        if (auto s = n->value<std::string>()) {
            out.push_back(*s);
        } else if (auto* a = n->as_array()) {
            for (auto& e : *a) {
                if (auto s = e.value<std::string>())
                    out.push_back(*s);
                else
                    problem(&e, prefix + key, "must be a string or an array of strings");
            }
        } else {
            problem(n, prefix + key, "must be a string or an array of strings");
        }
        return out;
    }

    int64_t datetime(const toml::table& t, const char* key) {
        auto* n = t.get(key);
        if (!n) {
            problem(&t, std::string("trust.") + key, "required key is missing");
            return 0;
        }
        auto dt = n->value<toml::date_time>();
        if (!dt || !dt->offset) {
            problem(n, std::string("trust.") + key, "must be an offset date-time, e.g. 2027-11-23T00:00:00Z");
            return 0;
        }
        return to_unix_ms(*dt);
    }
};

bool is_hex(const std::string& s, size_t n) {
    return s.size() == n && s.find_first_not_of("0123456789abcdef") == std::string::npos;
}

} // namespace

std::string format_utc_ms(int64_t ms) {
    std::time_t t = ms / 1000;
    std::tm tm{};
    gmtime_r(&t, &tm);
    char b[32];
    std::strftime(b, sizeof b, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return b;
}

std::string sign_trust_store(const fs::path& file, const crypto::SigningKey& root) {
    auto text = read_all(file, "trust store");
    auto sig = crypto::to_hex(root.sign(crypto::view(text)));
    auto sig_file = fs::path(file.string() + ".sig");
    auto tmp = fs::path(sig_file.string() + ".tmp");
    {
        std::ofstream out(tmp, std::ios::trunc);
        out << sig << "\n";
        if (!out.flush()) throw TrustError(tmp.string() + ": cannot write the signature");
    }
    fs::rename(tmp, sig_file);
    return sig;
}

TrustStore load_trust_store(const fs::path& file, const std::string& root_public_hex, int64_t now_ms) {
    auto text = read_all(file, "trust store");
    auto sig_file = fs::path(file.string() + ".sig");
    auto sig_text = read_all(sig_file, "trust store signature (run renkei trust sign)");
    while (!sig_text.empty() && (sig_text.back() == '\n' || sig_text.back() == '\r' || sig_text.back() == ' '))
        sig_text.pop_back();
    crypto::Bytes sig, root_raw;
    try {
        sig = crypto::from_hex(sig_text);
    } catch (const crypto::CryptoError& e) {
        throw TrustError(sig_file.string() + ": not a hex signature: " + e.what());
    }
    try {
        root_raw = crypto::from_hex(root_public_hex);
        if (root_raw.size() != 32) throw crypto::CryptoError("must be 32 bytes");
    } catch (const crypto::CryptoError& e) {
        throw TrustError("node.trust_root: not an Ed25519 public key in hex: " + std::string(e.what()));
    }
    if (!crypto::VerifyKey::from_raw(root_raw).verify(crypto::view(text), sig))
        throw TrustError(file.string() + ": the signature in " + sig_file.string() +
                         " does not verify with the network root key (altered, or signed by another key)");

    TrustStore ts;
    ts.file = file;
    Parser p{file, {}};
    toml::table root;
    try {
        root = toml::parse(text, file.string());
    } catch (const toml::parse_error& e) {
        throw TrustError(file.string() + ":" + std::to_string(e.source().begin.line) + ": TOML syntax: " +
                         std::string(e.description()));
    }
    for (auto& [k, v] : root)
        if (k.str() != "trust" && k.str() != "node" && k.str() != "revoked") p.problem(&v, std::string(k.str()), "unknown key");
    auto* trust = root["trust"].as_table();
    if (!trust) {
        p.problem(nullptr, "trust", "required table is missing");
    } else {
        ts.network = trust->get("network") ? trust->get("network")->value_or(std::string()) : "";
        if (ts.network.empty()) p.problem(trust, "trust.network", "required string is missing");
        auto serial = trust->get("serial") ? trust->get("serial")->value<int64_t>() : std::nullopt;
        if (!serial || *serial < 1)
            p.problem(trust->get("serial") ? trust->get("serial") : trust, "trust.serial", "must be an integer >= 1");
        else
            ts.serial = *serial;
        ts.issued_ms = p.datetime(*trust, "issued_at");
        ts.expires_ms = p.datetime(*trust, "expires_at");
        if (ts.issued_ms && ts.expires_ms && ts.expires_ms <= ts.issued_ms)
            p.problem(trust->get("expires_at"), "trust.expires_at", "must be after issued_at");
    }
    if (auto* revoked = root["revoked"].as_array()) {
        for (size_t i = 0; i < revoked->size(); ++i) {
            auto* t = (*revoked)[i].as_table();
            std::string prefix = "revoked[" + std::to_string(i) + "].";
            if (!t) {
                p.problem(&(*revoked)[i], prefix, "must be a table");
                continue;
            }
            auto key = t->get("key") ? t->get("key")->value_or(std::string()) : "";
            if (key.empty()) {
                p.problem(t, prefix + "key", "required string is missing");
                continue;
            }
            ts.revoked[key] = t->get("reason") ? t->get("reason")->value_or(std::string()) : "";
        }
    }
    auto* nodes = root["node"].as_array();
    if (!nodes || nodes->empty()) p.problem(nullptr, "node", "a trust store lists at least one node");
    for (size_t i = 0; nodes && i < nodes->size(); ++i) {
        auto* t = (*nodes)[i].as_table();
        std::string prefix = "node[" + std::to_string(i) + "].";
        if (!t) {
            p.problem(&(*nodes)[i], prefix, "must be a table");
            continue;
        }
        TrustedNode n;
        n.id = t->get("id") ? t->get("id")->value_or(std::string()) : "";
        if (auto why = node_id_problem(n.id); !why.empty()) p.problem(t->get("id") ? t->get("id") : t, prefix + "id", why);
        for (auto& k : p.keys(*t, prefix, "curve_public")) {
            if (k.size() != 40) p.problem(t->get("curve_public"), prefix + "curve_public", "must be a 40-character Z85 CURVE key");
            else if (!ts.revoked.count(k)) n.curve_public.push_back(k);
        }
        for (auto& k : p.keys(*t, prefix, "sign_public")) {
            if (!is_hex(k, 64)) p.problem(t->get("sign_public"), prefix + "sign_public", "must be 64 lowercase hex characters (Ed25519)");
            else if (!ts.revoked.count(k)) n.sign_public.push_back(k);
        }
        n.seal_public = t->get("seal_public") ? t->get("seal_public")->value_or(std::string()) : "";
        if (!n.seal_public.empty() && !is_hex(n.seal_public, 64))
            p.problem(t->get("seal_public"), prefix + "seal_public", "must be 64 lowercase hex characters (X25519)");
        if (ts.revoked.count(n.seal_public)) n.seal_public.clear();
        if (!n.id.empty() && !ts.nodes.emplace(n.id, n).second)
            p.problem(t->get("id"), prefix + "id", "node '" + n.id + "' is listed twice");
    }
    if (!p.problems.empty()) {
        std::string all;
        for (auto& s : p.problems) all += (all.empty() ? "" : "\n") + s;
        throw TrustError(all);
    }
    if (ts.expired(now_ms))
        throw TrustError(file.string() + ": trust store serial " + std::to_string(ts.serial) + " expired at " +
                         format_utc_ms(ts.expires_ms) + "; the network root must issue a new one");
    return ts;
}

} // namespace renkei
