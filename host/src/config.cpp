#include <renkei/config.hpp>

#include <cstdio>
#include <map>

#include <renkei/validate.hpp>

#include <zmq.h>

#include <algorithm>
#include <set>
#include <sstream>

namespace renkei {
namespace fs = std::filesystem;

std::string ConfigIssue::to_string() const {
    std::ostringstream out;
    out << file;
    if (line > 0) out << ':' << line;
    out << ": " << (key.empty() ? std::string("(file)") : key) << ": " << message;
    return out.str();
}

ConfigError::ConfigError(std::vector<ConfigIssue> issues)
    : std::runtime_error([&] {
          std::string s = "invalid configuration:";
          for (auto& i : issues) s += "\n  " + i.to_string();
          return s;
      }()),
      issues_(std::move(issues)) {}

namespace {

bool is_digits(const std::string& s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

const std::set<std::string>& node_kinds() {
    static const std::set<std::string> kinds{"muni", "pref", "jlis", "ipn", "agency", "vendor", "wallet"};
    return kinds;
}

bool name_ok(const std::string& s) {
    return !s.empty() && s.size() <= 64 && std::all_of(s.begin(), s.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    });
}

class Checker {
public:
    Checker(fs::path file) : file_(std::move(file)) {}

    void issue(const toml::node* node, const std::string& key, const std::string& message) {
        int64_t line = node != nullptr ? static_cast<int64_t>(node->source().begin.line) : 0;
        issues_.push_back({file_.string(), line, key, message});
    }
    void issue_at(int64_t line, const std::string& key, const std::string& message) {
        issues_.push_back({file_.string(), line, key, message});
    }

    // Flags keys of `table` not in `allowed`: a typo must not silently change behaviour.
    void only_keys(const toml::table& table, const std::string& prefix,
                   std::initializer_list<std::string_view> allowed) {
        for (auto&& [k, v] : table) {
            if (std::find(allowed.begin(), allowed.end(), k.str()) == allowed.end())
                issue(&v, prefix + std::string(k.str()), "unknown key");
        }
    }

    std::string string(const toml::table& t, const std::string& prefix, std::string_view key,
                       bool required, const toml::node* parent = nullptr) {
        const toml::node* n = t.get(key);
        if (n == nullptr) {
            if (required) issue(parent, prefix + std::string(key), "required key is missing");
            return {};
        }
        if (auto s = n->value<std::string>()) return *s;
        issue(n, prefix + std::string(key), "must be a string");
        return {};
    }

    std::vector<std::string> strings(const toml::table& t, const std::string& prefix,
                                     std::string_view key) {
        std::vector<std::string> out;
        const toml::node* n = t.get(key);
        if (n == nullptr) return out;
        auto* arr = n->as_array();
        if (arr == nullptr) {
            issue(n, prefix + std::string(key), "must be an array of strings");
            return out;
        }
        for (auto& e : *arr) {
            if (auto s = e.value<std::string>())
                out.push_back(*s);
            else
                issue(&e, prefix + std::string(key), "must be an array of strings");
        }
        return out;
    }

    fs::path resolve(const fs::path& p) const {
        return p.is_absolute() ? p : (file_.parent_path() / p).lexically_normal();
    }

    std::vector<ConfigIssue> issues_;
    fs::path file_;
};

std::optional<fs::path> find_plugin(const std::string& name, const std::vector<fs::path>& dirs) {
    const std::string want = name + ".so";
    for (auto& dir : dirs) {
        std::error_code ec;
        if (fs::is_regular_file(dir / want, ec)) return dir / want;
        fs::recursive_directory_iterator it(dir, fs::directory_options::skip_permission_denied, ec);
        for (; !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
            if (it.depth() > 3) {
                it.disable_recursion_pending();
                continue;
            }
            if (it->path().filename() == want && it->is_regular_file(ec)) return it->path();
        }
    }
    return std::nullopt;
}

HostConfig parse(const fs::path& file, const std::vector<fs::path>& extra_dirs,
                 std::vector<ConfigIssue>& issues_out) {
    HostConfig cfg;
    cfg.source = fs::absolute(file);
    Checker c(cfg.source);
    toml::table root;
    try {
        root = toml::parse_file(file.string());
    } catch (const toml::parse_error& e) {
        c.issue_at(e.source().begin.line, "", std::string("TOML syntax: ") + std::string(e.description()));
        issues_out = std::move(c.issues_);
        return cfg;
    } catch (const std::exception& e) {
        c.issue_at(0, "", std::string("cannot read: ") + e.what());
        issues_out = std::move(c.issues_);
        return cfg;
    }
    c.only_keys(root, "", {"node", "admin", "plugin", "peer", "log", "calendar", "hours", "links"});

    // [node]
    if (auto* node = root["node"].as_table()) {
        c.only_keys(*node, "node.", {"id", "data_dir", "keys_dir", "listen", "plugin_dirs", "policy", "trust_store", "trust_root"});
        cfg.node_id = c.string(*node, "node.", "id", true, node);
        if (!cfg.node_id.empty()) {
            if (auto why = node_id_problem(cfg.node_id); !why.empty()) c.issue(node->get("id"), "node.id", why);
        }
        auto data = c.string(*node, "node.", "data_dir", false);
        cfg.data_dir = c.resolve(data.empty() ? fs::path("var") / cfg.node_id : fs::path(data));
        auto keys = c.string(*node, "node.", "keys_dir", false);
        cfg.keys_dir = keys.empty() ? cfg.data_dir / "keys" : c.resolve(keys);
        cfg.listen = c.string(*node, "node.", "listen", false);
        if (!cfg.listen.empty() && cfg.listen.rfind("tcp://", 0) != 0)
            c.issue(node->get("listen"), "node.listen", "must be a tcp:// endpoint");
        for (auto& d : c.strings(*node, "node.", "plugin_dirs")) cfg.plugin_dirs.push_back(c.resolve(d));
        auto policy = c.string(*node, "node.", "policy", false);
        if (!policy.empty()) {
            cfg.policy_file = c.resolve(policy);
            std::error_code ec;
            if (!fs::is_regular_file(cfg.policy_file, ec))
                c.issue(node->get("policy"), "node.policy", "no such file: " + cfg.policy_file.string());
        }
        auto trust = c.string(*node, "node.", "trust_store", false);
        cfg.trust_root = c.string(*node, "node.", "trust_root", false);
        if (!trust.empty()) {
            cfg.trust_store = c.resolve(trust);
            std::error_code ec;
            if (!fs::is_regular_file(cfg.trust_store, ec))
                c.issue(node->get("trust_store"), "node.trust_store", "no such file: " + cfg.trust_store.string());
            if (cfg.trust_root.empty())
                c.issue(node->get("trust_store"), "node.trust_root",
                        "required with trust_store: the network root's Ed25519 public key (hex)");
        }
        if (!cfg.trust_root.empty() && (cfg.trust_root.size() != 64 ||
                                        cfg.trust_root.find_first_not_of("0123456789abcdef") != std::string::npos))
            c.issue(node->get("trust_root"), "node.trust_root", "must be 64 lowercase hex characters (Ed25519)");
    } else {
        c.issue_at(1, "node", "required table [node] is missing");
    }
    for (auto& d : extra_dirs) cfg.plugin_dirs.push_back(d);

    // [calendar] and [[hours]]: the common operating window.
    auto hhmm = [&](const toml::table& t, const char* key, int& out) {
        std::string v = c.string(t, "calendar.", key, false);
        if (v.empty()) return;
        int h = -1, m = -1;
        char extra = 0;
        if (std::sscanf(v.c_str(), "%d:%d%c", &h, &m, &extra) != 2 || h < 0 || h > 24 || m < 0 || m > 59 ||
            (h == 24 && m != 0))
            c.issue(t.get(key), std::string("calendar.") + key, "must be HH:MM (00:00-24:00)");
        else
            out = h * 60 + m;
    };
    if (auto* cal = root["calendar"].as_table()) {
        c.only_keys(*cal, "calendar.", {"utc_offset", "days", "holidays", "open", "close"});
        auto off = c.string(*cal, "calendar.", "utc_offset", false);
        if (!off.empty()) {
            int h = 0, m = 0;
            char sign = 0, extra = 0;
            if (std::sscanf(off.c_str(), "%c%d:%d%c", &sign, &h, &m, &extra) != 3 || (sign != '+' && sign != '-') ||
                h > 14 || m > 59)
                c.issue(cal->get("utc_offset"), "calendar.utc_offset", "must be +HH:MM or -HH:MM, e.g. \"+09:00\"");
            else
                cfg.calendar.utc_offset_minutes = (sign == '-' ? -1 : 1) * (h * 60 + m);
        }
        if (cal->get("days")) {
            static const std::map<std::string, int> names{{"sun", 0}, {"mon", 1}, {"tue", 2}, {"wed", 3},
                                                          {"thu", 4}, {"fri", 5}, {"sat", 6}};
            cfg.calendar.weekdays.clear();
            for (auto& d : c.strings(*cal, "calendar.", "days")) {
                auto it = names.find(d);
                if (it == names.end())
                    c.issue(cal->get("days"), "calendar.days", "'" + d + "' is not one of sun mon tue wed thu fri sat");
                else
                    cfg.calendar.weekdays.insert(it->second);
            }
        }
        for (auto& d : c.strings(*cal, "calendar.", "holidays")) {
            int y = 0, mo = 0, da = 0;
            char extra = 0;
            if (d.size() != 10 || std::sscanf(d.c_str(), "%d-%d-%d%c", &y, &mo, &da, &extra) != 3 || mo < 1 ||
                mo > 12 || da < 1 || da > 31)
                c.issue(cal->get("holidays"), "calendar.holidays", "'" + d + "' is not a YYYY-MM-DD date");
            else
                cfg.calendar.holidays.insert(d);
        }
        hhmm(*cal, "open", cfg.calendar.open_minute);
        hhmm(*cal, "close", cfg.calendar.close_minute);
        if (cfg.calendar.close_minute <= cfg.calendar.open_minute)
            c.issue(cal->get("close"), "calendar.close", "must be after calendar.open");
    }
    if (auto* hours = root["hours"].as_array()) {
        for (size_t i = 0; i < hours->size(); ++i) {
            auto* t = (*hours)[i].as_table();
            std::string prefix = "hours[" + std::to_string(i) + "].";
            if (!t) {
                c.issue(&(*hours)[i], prefix, "must be a table");
                continue;
            }
            c.only_keys(*t, prefix, {"type", "outside"});
            HoursRule r;
            r.type = c.string(*t, prefix, "type", true, t);
            auto outside = c.string(*t, prefix, "outside", false);
            if (outside == "refuse")
                r.queue = false;
            else if (!outside.empty() && outside != "queue")
                c.issue(t->get("outside"), prefix + "outside", "must be \"queue\" (hold until the window opens) or \"refuse\"");
            if (!r.type.empty()) cfg.hours.push_back(r);
        }
    }

    if (auto* admin = root["admin"].as_table()) {
        c.only_keys(*admin, "admin.", {"listen"});
        cfg.admin_listen = c.string(*admin, "admin.", "listen", false);
        auto colon = cfg.admin_listen.rfind(':');
        std::string host = colon == std::string::npos ? "" : cfg.admin_listen.substr(0, colon);
        std::string port = colon == std::string::npos ? "" : cfg.admin_listen.substr(colon + 1);
        if (!cfg.admin_listen.empty() &&
            (!(host == "127.0.0.1" || host == "localhost" || host == "[::1]") || !is_digits(port) ||
             port.size() > 5 || std::stol(port) > 65535))
            c.issue(admin->get("listen"), "admin.listen",
                    "must be a loopback address with a port, e.g. \"127.0.0.1:9100\" (admin HTTP "
                    "is never exposed beyond loopback)");
    }
    if (auto* links = root["links"].as_table()) {
        c.only_keys(*links, "links.",
                    {"in_flight_messages", "in_flight_mib", "memory_dedup_ids", "bundle_kib", "dedup_retention_days"});
        // A whole number from `min` to `max`; anything else is an issue naming the key.
        auto count = [&](const char* key, int64_t min, int64_t max, size_t& out, size_t unit) {
            const toml::node* n = links->get(key);
            if (n == nullptr) return;
            auto v = n->value<int64_t>();
            if (!v || !n->is_integer() || *v < min || *v > max)
                c.issue(n, std::string("links.") + key,
                        "must be a whole number from " + std::to_string(min) + " to " + std::to_string(max));
            else
                out = static_cast<size_t>(*v) * unit;
        };
        count("in_flight_messages", 1, 1 << 24, cfg.links.in_flight_messages, 1);
        count("in_flight_mib", 1, 1 << 16, cfg.links.in_flight_bytes, size_t(1) << 20);
        count("memory_dedup_ids", 1, 1 << 28, cfg.links.memory_dedup_ids, 1);
        count("bundle_kib", 0, 16 << 10, cfg.links.bundle_bytes, size_t(1) << 10); // at most a frame's 16 MiB
        size_t days = 0;
        count("dedup_retention_days", 1, 3650, days, 1);
        if (days) cfg.links.dedup_retention_ms = static_cast<int64_t>(days) * 86'400'000;
    }
    if (auto* log = root["log"].as_table()) {
        c.only_keys(*log, "log.", {"level"});
        auto lvl = c.string(*log, "log.", "level", false);
        static const std::set<std::string> levels{"trace", "debug", "info", "warn", "error", "off"};
        if (!lvl.empty() && !levels.count(lvl))
            c.issue(log->get("level"), "log.level", "must be one of trace, debug, info, warn, error, off");
        if (!lvl.empty()) cfg.log_level = lvl;
    }

    // [[plugin]]
    std::set<std::string> names;
    if (auto* plugins = root.get("plugin")) {
        auto* arr = plugins->as_array();
        if (arr == nullptr) c.issue(plugins, "plugin", "must be an array of tables: [[plugin]]");
        for (size_t i = 0; arr != nullptr && i < arr->size(); ++i) {
            auto* t = (*arr)[i].as_table();
            std::string prefix = "plugin[" + std::to_string(i) + "].";
            if (t == nullptr) {
                c.issue(&(*arr)[i], prefix, "must be a table");
                continue;
            }
            c.only_keys(*t, prefix, {"name", "path", "isolation", "settings"});
            PluginConfig p;
            p.name = c.string(*t, prefix, "name", true, t);
            if (!p.name.empty() && !name_ok(p.name))
                c.issue(t->get("name"), prefix + "name", "must be 1-64 of [a-z0-9_-]");
            if (!p.name.empty() && !names.insert(p.name).second)
                c.issue(t->get("name"), prefix + "name", "duplicate plugin name '" + p.name + "'");
            std::string path = c.string(*t, prefix, "path", true, t);
            if (!path.empty()) {
                if (path.find('/') != std::string::npos) {
                    p.path = c.resolve(path);
                    std::error_code ec;
                    if (!fs::is_regular_file(p.path, ec))
                        c.issue(t->get("path"), prefix + "path", "no such file: " + p.path.string());
                } else if (auto found = find_plugin(path, cfg.plugin_dirs)) {
                    p.path = *found;
                } else {
                    c.issue(t->get("path"), prefix + "path",
                            "plugin '" + path + ".so' not found in node.plugin_dirs or --plugin-dir");
                }
            }
            std::string iso = c.string(*t, prefix, "isolation", false);
            if (iso.empty() || iso == "none" || iso == "in-process")
                p.isolation = Isolation::in_process;
            else if (iso == "process")
                p.isolation = Isolation::process;
            else
                c.issue(t->get("isolation"), prefix + "isolation",
                        "must be \"in-process\" (default) or \"process\"");
            if (auto* s = t->get("settings")) {
                if (auto* st = s->as_table())
                    p.settings = *st;
                else
                    c.issue(s, prefix + "settings", "must be a table");
            }
            cfg.plugins.push_back(std::move(p));
        }
    }

    // [[peer]]
    if (auto* peers = root.get("peer")) {
        auto* arr = peers->as_array();
        if (arr == nullptr) c.issue(peers, "peer", "must be an array of tables: [[peer]]");
        std::set<std::string> seen;
        for (size_t i = 0; arr != nullptr && i < arr->size(); ++i) {
            auto* t = (*arr)[i].as_table();
            std::string prefix = "peer[" + std::to_string(i) + "].";
            if (t == nullptr) {
                c.issue(&(*arr)[i], prefix, "must be a table");
                continue;
            }
            c.only_keys(*t, prefix, {"node", "endpoints", "curve_public", "sign_public", "seal_public", "reaches", "signing", "delivery"});
            PeerConfig p;
            p.node = c.string(*t, prefix, "node", true, t);
            if (!p.node.empty()) {
                if (auto why = node_id_problem(p.node); !why.empty()) c.issue(t->get("node"), prefix + "node", why);
                if (!seen.insert(p.node).second)
                    c.issue(t->get("node"), prefix + "node", "duplicate peer '" + p.node + "'");
            }
            p.endpoints = c.strings(*t, prefix, "endpoints");
            for (auto& e : p.endpoints)
                if (e.rfind("tcp://", 0) != 0)
                    c.issue(t->get("endpoints"), prefix + "endpoints", "'" + e + "' is not a tcp:// endpoint");
            // With a trust store the keys come from it; given here too, they must match it.
            p.curve_public = c.string(*t, prefix, "curve_public", cfg.trust_store.empty(), t);
            // Decoded as ZeroMQ will: a key it cannot read would only fail when the link starts.
            uint8_t curve_raw[32];
            if (!p.curve_public.empty() &&
                (p.curve_public.size() != 40 || zmq_z85_decode(curve_raw, p.curve_public.c_str()) == nullptr))
                c.issue(t->get("curve_public"), prefix + "curve_public", "must be a 40-character Z85 CURVE public key");
            p.sign_public = c.string(*t, prefix, "sign_public", false);
            if (!p.sign_public.empty() && (p.sign_public.size() != 64 ||
                                           p.sign_public.find_first_not_of("0123456789abcdef") != std::string::npos))
                c.issue(t->get("sign_public"), prefix + "sign_public", "must be 64 lowercase hex characters (Ed25519)");
            p.seal_public = c.string(*t, prefix, "seal_public", false);
            if (!p.seal_public.empty() && (p.seal_public.size() != 64 ||
                                           p.seal_public.find_first_not_of("0123456789abcdef") != std::string::npos))
                c.issue(t->get("seal_public"), prefix + "seal_public", "must be 64 lowercase hex characters (X25519)");
            p.reaches = c.strings(*t, prefix, "reaches");
            std::string signing = c.string(*t, prefix, "signing", false);
            if (signing == "batch")
                p.batch_signing = true;
            else if (!signing.empty() && signing != "message")
                c.issue(t->get("signing"), prefix + "signing",
                        "must be \"message\" (one signature per envelope) or \"batch\" (one per Merkle batch)");
            std::string delivery = c.string(*t, prefix, "delivery", false);
            if (delivery == "memory")
                p.memory_delivery = true;
            else if (!delivery.empty() && delivery != "durable")
                c.issue(t->get("delivery"), prefix + "delivery",
                        "must be \"durable\" (outbox and inbox on disk, exactly once across restarts) or \"memory\" "
                        "(kept in memory until acknowledged; a crash loses what was in flight)");
            for (auto& r : p.reaches) {
                auto colon = r.find(':');
                bool prefix_wildcard = r.size() > 2 && r.back() == '*' && colon != std::string::npos &&
                                       node_kinds().count(r.substr(0, colon)) && r.find('*') == r.size() - 1;
                if (r != "*" && !prefix_wildcard && !node_id_problem(r).empty())
                    c.issue(t->get("reaches"), prefix + "reaches",
                            "'" + r + "' is not a node id, \"<kind>:<prefix>*\" (\"muni:*\", \"muni:13*\") or \"*\"");
            }
            cfg.peers.push_back(std::move(p));
        }
    }
    issues_out = std::move(c.issues_);
    return cfg;
}

} // namespace

std::string node_kind(const std::string& node_id) {
    auto colon = node_id.find(':');
    return colon == std::string::npos ? std::string() : node_id.substr(0, colon);
}

std::string node_id_problem(const std::string& id) {
    auto colon = id.find(':');
    if (colon == std::string::npos) return "node id '" + id + "' must look like <kind>:<name>";
    std::string kind = id.substr(0, colon), name = id.substr(colon + 1);
    if (!node_kinds().count(kind))
        return "node kind '" + kind + "' is not one of muni, pref, jlis, ipn, agency, vendor, wallet";
    if (kind == "muni") {
        if (auto v = validate::local_gov_code("node id", name); !v)
            return "muni:<code> needs a 6-digit 全国地方公共団体コード with a valid check digit, got '" + name +
                   "' (" + v.message + ")";
    } else if (kind == "pref") {
        if (name.size() != 2 || !is_digits(name) || std::stoi(name) < 1 || std::stoi(name) > 47)
            return "pref:<code> needs a 2-digit 都道府県コード 01-47, got '" + name + "'";
    } else if (!name_ok(name)) {
        return "node name '" + name + "' must be 1-64 of [a-z0-9_-]";
    }
    return {};
}

std::vector<ConfigIssue> check_config(const fs::path& file, const std::vector<fs::path>& extra) {
    std::vector<ConfigIssue> issues;
    parse(file, extra, issues);
    return issues;
}

HostConfig load_config(const fs::path& file, const std::vector<fs::path>& extra) {
    std::vector<ConfigIssue> issues;
    HostConfig cfg = parse(file, extra, issues);
    if (!issues.empty()) throw ConfigError(std::move(issues));
    return cfg;
}

} // namespace renkei
