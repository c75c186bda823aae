// agency-gateway: an agency's (国の機関等) link to J-LIS for its staff systems, at the agency's
// node (agency:<name>). Each caller (a section's system) is named in the settings with its own
// HMAC-SHA256 secret (a 0600 file), the 別表 purposes it may use and its quotas.
//   Online: POST /v1/query {purpose, keys} signed by the caller -> juki.IdentityQuery to J-LIS ->
//           the answer (juki.IdentityAnswer) as JSON, or J-LIS's refusal.
//   Batch:  a caller's inbox folder takes key files (one key a line: 個人番号, 住民票コード or
//           4情報); the answers are written atomically to answers/, the file moved to processed/
//           (or failed/ with the reason); progress (keys done, rate, time left) in the log and in
//           /metrics, a summary at the end.
// The HTTP server and the batch watcher run on their own threads; handle() only hands J-LIS's
// answers to whoever waits for them. ../README.md lists settings, endpoints, JSON shapes, errors.
#include <juki.capnp.h>

#include <renkei/http/crypto.hpp>
#include <renkei/http/juki_json.hpp>
#include <renkei/http/server.hpp>
#include <renkei/http/settings.hpp>
#include <renkei/http/sqlite.hpp>
#include <renkei/sdk.hpp>
#include <renkei/validate.hpp>

#include <toml++/toml.h>

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <regex>
#include <sstream>
#include <thread>

namespace {

using renkei::sdk::Error;
using namespace renkei::http;
namespace juki = renkei::juki;
namespace schema = renkei::schema;
namespace fs = std::filesystem;

const char* kSchema = R"(
CREATE TABLE IF NOT EXISTS usage (caller TEXT NOT NULL, day TEXT NOT NULL, requests INTEGER NOT NULL,
  keys INTEGER NOT NULL, PRIMARY KEY (caller, day));
CREATE TABLE IF NOT EXISTS seen (nonce TEXT PRIMARY KEY, at_ms INTEGER NOT NULL);
-- A batch file being answered (by its SHA-256): charged to the quota once, and each chunk's
-- answers kept as they come, so a file interrupted by a stop resumes where it stopped instead of
-- asking J-LIS again (every answer is a provision J-LIS records). Dropped once the answers file
-- is written.
CREATE TABLE IF NOT EXISTS batch_files (caller TEXT NOT NULL, digest TEXT NOT NULL, charged_ms INTEGER NOT NULL,
  PRIMARY KEY (caller, digest));
CREATE TABLE IF NOT EXISTS batch_chunks (caller TEXT NOT NULL, digest TEXT NOT NULL, start INTEGER NOT NULL,
  outcomes TEXT NOT NULL, PRIMARY KEY (caller, digest, start));
)";

struct Caller {
    std::string name;
    std::vector<uint8_t> secret;
    std::vector<std::string> purposes; // patterns: exact or "prefix*"
    int64_t keys_per_request = 1000, keys_per_day = 100000, requests_per_day = 10000;
    fs::path batch_dir;                // empty: no batch folder
};

bool matches(const std::string& pattern, const std::string& value) {
    if (!pattern.empty() && pattern.back() == '*') return value.rfind(pattern.substr(0, pattern.size() - 1), 0) == 0;
    return pattern == value;
}

// The day quotas count in: the calendar day in Japan (UTC+9, no daylight saving).
std::string jst_day(int64_t unix_ms) {
    time_t t = static_cast<time_t>(unix_ms / 1000 + 9 * 3600);
    struct tm tm {};
    gmtime_r(&t, &tm);
    char b[16];
    std::strftime(b, sizeof b, "%Y-%m-%d", &tm);
    return b;
}
int64_t seconds_to_jst_midnight(int64_t unix_ms) {
    int64_t s = unix_ms / 1000 + 9 * 3600;
    return 86400 - s % 86400;
}

// One key of a query with where it came from (its index in the request, or its line in a file).
struct Key {
    size_t origin = 0;
    std::unique_ptr<capnp::MallocMessageBuilder> mb;
    juki::QueryKey::Reader get() { return mb->getRoot<juki::QueryKey>().asReader(); }
};

// The gateway stops while waiting for J-LIS: a batch file stays for the next start.
struct Stopping : std::runtime_error {
    Stopping() : std::runtime_error("the gateway is stopping") {}
};

struct Outcome { // of one key
    std::string status;  // found, notFound, ambiguous, removed; empty when refused
    json person;
    json error;          // when refused
};

// An answer awaited from J-LIS, by envelope id.
struct Pending {
    bool done = false;
    bool fault = false;
    std::vector<uint8_t> payload;
    uint32_t code = 0;
    std::string field, rule, message;
};

class Gateway : public renkei::sdk::Plugin {
public:
    using Plugin::Plugin;

    void start() override {
        national_ = host().config_or("national", "jlis:juki");
        auto store = host().config("store");
        if (!store || store->empty())
            throw Error(RENKEI_ERR_INVALID, "settings.store: required (quota and replay SQLite file)", "settings.store");
        answer_timeout_ms_ = integer_setting(host(), "answer_timeout_ms", 30000, 100, 600000);
        skew_s_ = integer_setting(host(), "clock_skew_seconds", 300, 1, 3600);
        batch_chunk_ = static_cast<size_t>(integer_setting(host(), "batch_chunk", 1000, 1, 10000));
        batch_poll_ms_ = integer_setting(host(), "batch_poll_ms", 1000, 10, 60000);
        max_batch_bytes_ = integer_setting(host(), "max_batch_bytes", 64 << 20, 1, 1LL << 34);
        read_callers();
        db_ = std::make_unique<sql::Db>(*store);
        db_->exec(kSchema);
        // Answers kept for a batch interrupted more than a day ago are stale: such a file is asked again.
        db_->exec("DELETE FROM batch_chunks WHERE (caller, digest) IN (SELECT caller, digest FROM batch_files WHERE charged_ms < " +
                  std::to_string(host().now_unix_ms() - 86400000) + "); DELETE FROM batch_files WHERE charged_ms < " +
                  std::to_string(host().now_unix_ms() - 86400000));
        ServerOptions o;
        o.listen = host().config_or("listen", "127.0.0.1:8471");
        o.allow_non_loopback = bool_setting(host(), "allow_non_loopback", false);
        o.max_body_bytes = static_cast<size_t>(integer_setting(host(), "max_body_bytes", 1 << 20, 256, 1LL << 30));
        o.threads = static_cast<int>(integer_setting(host(), "threads", 8, 1, 64));
        try {
            server_ = std::make_unique<Server>(o);
        } catch (const std::invalid_argument& e) {
            throw Error(RENKEI_ERR_INVALID, e.what(), "settings.listen", "http.listen");
        }
        routes();
        server_->start();
        bool batches = false;
        for (auto& [name, c] : callers_)
            if (!c.batch_dir.empty()) {
                for (auto d : {"inbox", "processed", "failed", "answers"}) fs::create_directories(c.batch_dir / d);
                batches = true;
            }
        if (batches) watcher_ = std::thread([this] { watch(); });
        host().info("agency-gateway on http://" + server_->address() + ":" + std::to_string(server_->port()) + " for " +
                    std::to_string(callers_.size()) + " callers");
    }

    void stop() override {
        {
            std::lock_guard lock(m_);
            stopping_ = true;
        }
        cv_.notify_all();
        if (watcher_.joinable()) watcher_.join();
        if (server_) server_->stop();
    }

    void handle(const renkei::sdk::Message& m) override {
        const std::string t = m.type();
        if (t != "juki.IdentityAnswer" && t != "juki.IdentityQuery.Fault")
            throw Error(RENKEI_ERR_UNSUPPORTED, "agency-gateway does not handle " + t, "type");
        auto corr = m.envelope().getCorrelationId();
        std::string id = hex(corr.begin(), corr.size());
        std::lock_guard lock(m_);
        auto it = pending_.find(id);
        if (it == pending_.end()) {
            // Nobody waits any more (timed out, or the gateway restarted): nothing to hand it to.
            host().warn("agency-gateway: " + t + " for a query nobody waits for (" + id + ")");
            return;
        }
        auto& p = it->second;
        p.done = true;
        if (t == "juki.IdentityAnswer") {
            auto b = m.payload();
            p.payload.assign(b.begin(), b.end());
        } else {
            auto f = m.envelope().getFault();
            p.fault = true;
            p.code = f.getCode();
            p.field = f.getField();
            p.rule = f.getRule();
            p.message = f.getMessage();
        }
        cv_.notify_all();
    }

private:
    // ------------------------------------------------------------------ callers and quotas

    void read_callers() {
        auto text = host().config("callers");
        if (!text) throw Error(RENKEI_ERR_INVALID, "settings.callers: at least one caller is required", "settings.callers");
        toml::table t;
        try {
            t = toml::parse(*text);
        } catch (const toml::parse_error& e) {
            throw Error(RENKEI_ERR_INVALID, "settings.callers: must be a table of callers", "settings.callers");
        }
        static const std::regex kName("[A-Za-z0-9_-]{1,64}");
        for (auto& [k, v] : t) {
            std::string name(k.str());
            std::string at = "settings.callers." + name;
            auto* c = v.as_table();
            if (!c || !std::regex_match(name, kName))
                throw Error(RENKEI_ERR_INVALID, at + ": a caller is a table named by 1..64 of A-Z a-z 0-9 _ -", at);
            Caller caller;
            caller.name = name;
            for (auto& [key, val] : *c) {
                std::string f = at + "." + std::string(key.str());
                if (key == "secret_file") {
                    auto s = val.value<std::string>();
                    if (!s) throw Error(RENKEI_ERR_INVALID, f + ": must be a path", f);
                    caller.secret = secret_file(*s, f, 32);
                } else if (key == "purposes") {
                    auto* a = val.as_array();
                    if (!a || a->empty()) throw Error(RENKEI_ERR_INVALID, f + ": must list at least one purpose", f);
                    for (auto& p : *a) {
                        auto s = p.value<std::string>();
                        if (!s || s->empty()) throw Error(RENKEI_ERR_INVALID, f + ": purposes are non-empty strings", f);
                        caller.purposes.push_back(*s);
                    }
                } else if (key == "keys_per_request" || key == "keys_per_day" || key == "requests_per_day") {
                    auto n = val.value<int64_t>();
                    if (!n || *n < 1) throw Error(RENKEI_ERR_INVALID, f + ": must be a whole number >= 1", f, "settings.range");
                    (key == "keys_per_request" ? caller.keys_per_request
                                               : key == "keys_per_day" ? caller.keys_per_day : caller.requests_per_day) = *n;
                } else if (key == "batch_dir") {
                    auto s = val.value<std::string>();
                    if (!s || s->empty()) throw Error(RENKEI_ERR_INVALID, f + ": must be a folder", f);
                    caller.batch_dir = *s;
                } else {
                    throw Error(RENKEI_ERR_INVALID, f + ": unknown setting (secret_file, purposes, keys_per_request, "
                                                        "keys_per_day, requests_per_day, batch_dir)", f);
                }
            }
            if (caller.secret.empty()) throw Error(RENKEI_ERR_INVALID, at + ".secret_file: required", at + ".secret_file");
            if (caller.purposes.empty()) throw Error(RENKEI_ERR_INVALID, at + ".purposes: required", at + ".purposes");
            callers_[name] = std::move(caller);
        }
        if (callers_.empty()) throw Error(RENKEI_ERR_INVALID, "settings.callers: at least one caller is required", "settings.callers");
    }

    void check_purpose(const Caller& c, const std::string& purpose, const std::string& field) {
        if (purpose.empty())
            throw ApiError(400, "purpose.required", field,
                           field + ": required: the 別表 affair the query is for (e.g. juki-beppyo1:5)");
        for (auto& p : c.purposes)
            if (matches(p, purpose)) return;
        throw ApiError(403, "purpose.not_allowed", field,
                       field + ": caller " + c.name + " may not query for " + purpose + " (its purposes: " +
                           [&] {
                               std::string s;
                               for (auto& p : c.purposes) s += (s.empty() ? "" : ", ") + p;
                               return s;
                           }() + ")");
    }

    // Counts a request of `keys` keys against the caller's quotas, or refuses it (429). With
    // `batch_digest`, a batch file already charged (resumed after a stop) is not charged again.
    void charge(const Caller& c, size_t keys, const std::string& batch_digest = {}) {
        auto quota = [&](const char* name, int64_t limit, int64_t used, int64_t retry_after) {
            json extra{{"quota", name}, {"limit", limit}, {"used", used}};
            if (retry_after) extra["retryAfterSeconds"] = retry_after;
            return ApiError(429, std::string("quota.") + name, "keys",
                            std::string("keys: caller ") + c.name + " is over its quota " + name + " (" +
                                std::to_string(limit) + (retry_after ? ", used " + std::to_string(used) + " today" : "") + ")",
                            extra);
        };
        if (static_cast<int64_t>(keys) > c.keys_per_request)
            throw quota("keys_per_request", c.keys_per_request, static_cast<int64_t>(keys), 0);
        auto now = host().now_unix_ms();
        std::string day = jst_day(now);
        std::lock_guard lock(db_m_);
        sql::Tx tx(*db_);
        if (!batch_digest.empty()) {
            sql::Stmt q(*db_, "SELECT 1 FROM batch_files WHERE caller = ?1 AND digest = ?2");
            q.bind(1, c.name).bind(2, batch_digest);
            if (q.step()) return; // charged when it began
        }
        int64_t requests = 0, used = 0;
        {
            sql::Stmt q(*db_, "SELECT requests, keys FROM usage WHERE caller = ?1 AND day = ?2");
            q.bind(1, c.name).bind(2, day);
            if (q.step()) {
                requests = q.integer(0);
                used = q.integer(1);
            }
        }
        if (requests + 1 > c.requests_per_day) throw quota("requests_per_day", c.requests_per_day, requests, seconds_to_jst_midnight(now));
        if (used + static_cast<int64_t>(keys) > c.keys_per_day) throw quota("keys_per_day", c.keys_per_day, used, seconds_to_jst_midnight(now));
        sql::Stmt(*db_, "INSERT INTO usage (caller, day, requests, keys) VALUES (?1, ?2, 1, ?3) ON CONFLICT (caller, day) "
                        "DO UPDATE SET requests = requests + 1, keys = keys + ?3")
            .bind(1, c.name)
            .bind(2, day)
            .bind(3, static_cast<int64_t>(keys))
            .run();
        if (!batch_digest.empty())
            sql::Stmt(*db_, "INSERT INTO batch_files (caller, digest, charged_ms) VALUES (?1, ?2, ?3)")
                .bind(1, c.name)
                .bind(2, batch_digest)
                .bind(3, now)
                .run();
        tx.commit();
    }

    // Answers of a chunk of a batch file kept before a stop, if any.
    std::optional<std::vector<Outcome>> saved_chunk(const Caller& c, const std::string& digest, size_t start, size_t n) {
        std::lock_guard lock(db_m_);
        sql::Stmt q(*db_, "SELECT outcomes FROM batch_chunks WHERE caller = ?1 AND digest = ?2 AND start = ?3");
        q.bind(1, c.name).bind(2, digest).bind(3, static_cast<int64_t>(start));
        if (!q.step()) return std::nullopt;
        auto saved = json::parse(q.text(0), nullptr, false);
        if (!saved.is_array() || saved.size() != n) return std::nullopt; // not ours: ask again
        std::vector<Outcome> out;
        for (auto& o : saved) out.push_back(Outcome{o.value("status", ""), o.value("person", json()), o.value("error", json())});
        return out;
    }

    void save_chunk(const Caller& c, const std::string& digest, size_t start, const std::vector<Outcome>& got) {
        json list = json::array();
        for (auto& o : got) list.push_back({{"status", o.status}, {"person", o.person}, {"error", o.error}});
        std::lock_guard lock(db_m_);
        sql::Stmt(*db_, "INSERT OR REPLACE INTO batch_chunks (caller, digest, start, outcomes) VALUES (?1, ?2, ?3, ?4)")
            .bind(1, c.name)
            .bind(2, digest)
            .bind(3, static_cast<int64_t>(start))
            .bind(4, list.dump(-1, ' ', false, json::error_handler_t::replace))
            .run();
    }

    // For a file that failed: its kept answers must not serve a later file with the same bytes.
    void forget_quietly(const Caller& c, const std::string& digest) {
        if (digest.empty()) return;
        try {
            forget_batch(c, digest);
        } catch (const std::exception& e) {
            host().warn(std::string("agency-gateway: could not drop a failed batch's kept answers: ") + e.what());
        }
    }

    void forget_batch(const Caller& c, const std::string& digest) {
        std::lock_guard lock(db_m_);
        sql::Tx tx(*db_);
        for (auto* table : {"batch_chunks", "batch_files"})
            sql::Stmt(*db_, (std::string("DELETE FROM ") + table + " WHERE caller = ?1 AND digest = ?2").c_str())
                .bind(1, c.name)
                .bind(2, digest)
                .run();
        tx.commit();
    }

    // HMAC-SHA256(secret, METHOD \n PATH \n TIMESTAMP \n NONCE \n hex(SHA-256(body))), hex, with
    // the timestamp (Unix seconds) within clock_skew_seconds and each caller's nonce used once.
    const Caller& authenticate(const httplib::Request& req) {
        auto name = req.get_header_value("X-Renkei-Caller");
        auto ts = req.get_header_value("X-Renkei-Timestamp");
        auto nonce = req.get_header_value("X-Renkei-Nonce");
        auto sig = from_hex(req.get_header_value("X-Renkei-Signature"));
        auto it = callers_.find(name);
        if (name.empty() || it == callers_.end())
            throw ApiError(401, "auth.caller", "X-Renkei-Caller", "X-Renkei-Caller: not a caller of this gateway");
        int64_t when = 0;
        try {
            size_t used = 0;
            when = std::stoll(ts, &used);
            if (used != ts.size()) when = 0;
        } catch (const std::exception&) {
        }
        auto now = host().now_unix_ms();
        if (when <= 0 || std::llabs(now / 1000 - when) > skew_s_)
            throw ApiError(401, "auth.timestamp", "X-Renkei-Timestamp",
                           "X-Renkei-Timestamp: must be the Unix time in seconds, within " + std::to_string(skew_s_) +
                               " s of the gateway's clock");
        static const std::regex kNonce("[A-Za-z0-9_-]{16,64}");
        if (!std::regex_match(nonce, kNonce))
            throw ApiError(401, "auth.nonce", "X-Renkei-Nonce", "X-Renkei-Nonce: 16..64 characters of A-Z a-z 0-9 _ -, new for each request");
        std::string target = req.target.empty() ? req.path : req.target;
        std::string signed_text = req.method + "\n" + target + "\n" + ts + "\n" + nonce + "\n" + hex(sha256(req.body));
        if (sig.size() != 32 || !equal(sig, hmac_sha256(it->second.secret, signed_text)))
            throw ApiError(401, "auth.signature", "X-Renkei-Signature",
                           "X-Renkei-Signature: not the HMAC-SHA256 of this request under caller " + name + "'s key");
        std::lock_guard lock(db_m_);
        sql::Tx tx(*db_);
        sql::Stmt(*db_, "DELETE FROM seen WHERE at_ms < ?1").bind(1, now - 2 * skew_s_ * 1000).run();
        sql::Stmt(*db_, "INSERT OR IGNORE INTO seen (nonce, at_ms) VALUES (?1, ?2)").bind(1, name + "/" + nonce).bind(2, now).run();
        if (db_->changes() == 0)
            throw ApiError(401, "auth.replay", "X-Renkei-Nonce", "X-Renkei-Nonce: this nonce was used already (replay)");
        tx.commit();
        return it->second;
    }

    // ------------------------------------------------------------------ queries to J-LIS

    // Sends the keys (grouped by the conditions they use: one juki.IdentityQuery per group, as the
    // policy judges conditions per query) and waits for every answer. Outcomes in key order.
    std::vector<Outcome> query(std::vector<Key>& keys, const std::string& purpose, const std::string& operator_id,
                               size_t chunk = SIZE_MAX) {
        std::vector<Outcome> out(keys.size());
        std::map<std::vector<std::string>, std::vector<size_t>> groups;
        for (size_t i = 0; i < keys.size(); ++i) groups[key_conditions(keys[i].get())].push_back(i);
        struct Sent {
            std::string id;
            std::vector<size_t> members;
        };
        std::vector<Sent> sent;
        for (auto& [conditions, members] : groups)
            for (size_t start = 0; start < members.size(); start += chunk) {
                Sent s;
                s.members.assign(members.begin() + static_cast<long>(start),
                                 members.begin() + static_cast<long>(std::min(members.size(), start + chunk)));
                capnp::MallocMessageBuilder payload;
                auto list = payload.initRoot<juki::IdentityQuery>().initKeys(static_cast<unsigned>(s.members.size()));
                for (size_t j = 0; j < s.members.size(); ++j) list.setWithCaveats(static_cast<unsigned>(j), keys[s.members[j]].get());
                auto bytes = capnp::messageToFlatArray(payload);
                auto id = random_bytes(16);
                s.id = hex(id);
                capnp::MallocMessageBuilder mb;
                auto e = mb.initRoot<schema::Envelope>();
                e.setId(kj::arrayPtr(id.data(), id.size()));
                e.setType("juki.IdentityQuery");
                e.setTo(national_);
                e.setPurpose(purpose);
                e.setOperatorId(operator_id);
                auto c = e.initConditions(static_cast<unsigned>(conditions.size()));
                for (size_t j = 0; j < conditions.size(); ++j) c.set(static_cast<unsigned>(j), conditions[j]);
                e.setPayload(bytes.asBytes());
                {
                    std::lock_guard lock(m_);
                    pending_[s.id] = Pending{};
                }
                try {
                    host().send(mb);
                } catch (const Error& err) {
                    forget(sent);
                    std::lock_guard lock(m_);
                    pending_.erase(s.id);
                    throw ApiError(503, "host.send", "", std::string("the host did not accept the query: ") + err.what());
                }
                sent.push_back(std::move(s));
            }
        auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(answer_timeout_ms_);
        for (auto& s : sent) {
            Pending p;
            {
                std::unique_lock lock(m_);
                cv_.wait_until(lock, deadline, [&] { return pending_[s.id].done || stopping_; });
                p = std::move(pending_[s.id]);
                pending_.erase(s.id);
            }
            if (!p.done && stopping_) {
                forget(sent);
                throw Stopping{};
            }
            if (!p.done) {
                forget(sent);
                throw ApiError(504, "jlis.timeout", "", "J-LIS did not answer within " + std::to_string(answer_timeout_ms_) + " ms");
            }
            if (p.fault) {
                int status = p.code == RENKEI_ERR_DENIED ? 403 : 502;
                std::string rule = p.code == RENKEI_ERR_DENIED ? "jlis.refused" : "jlis.fault";
                for (auto i : s.members)
                    out[i].error = error_body(status, rule, p.field, "J-LIS refused the query: " + p.message)["error"];
                continue;
            }
            Parsed<juki::IdentityAnswer> answer(p.payload);
            for (auto r : answer.get().getResults()) {
                if (r.getIndex() >= s.members.size()) continue;
                auto& o = out[s.members[r.getIndex()]];
                o.status = status_text(r.getStatus());
                if (r.getStatus() == juki::QueryResult::Status::FOUND) o.person = person_json(r.getPerson());
            }
            for (auto i : s.members)
                if (o_empty(out[i]))
                    out[i].error = error_body(502, "jlis.no_result", "", "J-LIS's answer has no result for this key")["error"];
        }
        return out;
    }
    static bool o_empty(const Outcome& o) { return o.status.empty() && o.error.is_null(); }

    template <typename T> struct Parsed : renkei::sdk::Flat<T> {
        explicit Parsed(const std::vector<uint8_t>& b) : renkei::sdk::Flat<T>(renkei::sdk::bytes_of(b.data(), b.size()), 64) {}
    };

    template <typename S> void forget(const S& sent) {
        std::lock_guard lock(m_);
        for (auto& s : sent) pending_.erase(s.id);
    }

    // ------------------------------------------------------------------ HTTP

    void routes() {
        auto& s = *server_;
        s.get("/healthz", [this](const httplib::Request&, httplib::Response& res) {
            send_json(res, 200, {{"ok", true}, {"node", host().node_id()}, {"callers", callers_.size()}});
        });
        s.get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
            res.set_content(metrics(), "text/plain; version=0.0.4");
        });
        s.post("/v1/query", [this](const httplib::Request& req, httplib::Response& res) { post_query(req, res); });
    }

    void post_query(const httplib::Request& req, httplib::Response& res) {
        const Caller* caller = nullptr;
        try {
            caller = &authenticate(req);
        } catch (const ApiError& e) {
            count(req.get_header_value("X-Renkei-Caller"), e.rule());
            throw;
        }
        try {
            auto j = parse_object(req);
            std::string purpose, operator_id;
            try {
                only_members(j, "", {"purpose", "keys", "operatorId"});
                purpose = string_member(j, "", "purpose");
                operator_id = string_member(j, "", "operatorId");
            } catch (const FieldError& e) {
                throw ApiError(400, e.rule(), e.field(), e.what());
            }
            check_purpose(*caller, purpose, "purpose");
            if (!j.contains("keys") || !j["keys"].is_array() || j["keys"].empty())
                throw ApiError(400, "json.required", "keys", "keys: required, a non-empty array of query keys");
            auto& list = j["keys"];
            if (static_cast<int64_t>(list.size()) > caller->keys_per_request) charge(*caller, list.size());
            std::vector<Key> keys;
            for (size_t i = 0; i < list.size(); ++i) {
                Key k;
                k.origin = i;
                k.mb = std::make_unique<capnp::MallocMessageBuilder>();
                try {
                    read_query_key(list[i], "keys[" + std::to_string(i) + "]", k.mb->initRoot<juki::QueryKey>());
                } catch (const FieldError& e) {
                    throw ApiError(422, e.rule(), e.field(), e.what());
                }
                keys.push_back(std::move(k));
            }
            charge(*caller, keys.size());
            auto outcomes = query(keys, purpose, operator_id.empty() ? caller->name : caller->name + "/" + operator_id);
            json results = json::array();
            for (size_t i = 0; i < outcomes.size(); ++i) {
                // A query J-LIS refused as a whole is the request's answer (one purpose, one caller).
                if (!outcomes[i].error.is_null()) {
                    auto& e = outcomes[i].error;
                    throw ApiError(e["status"].get<int>(), e["rule"], e["field"], e["message"]);
                }
                json r{{"index", i}, {"status", outcomes[i].status}};
                if (!outcomes[i].person.is_null()) r["person"] = outcomes[i].person;
                results.push_back(std::move(r));
            }
            count(caller->name, "ok");
            send_json(res, 200, {{"purpose", purpose}, {"results", results}});
        } catch (const ApiError& e) {
            count(caller->name, e.rule());
            if (e.status() == 429 && e.extra().contains("retryAfterSeconds"))
                res.set_header("Retry-After", std::to_string(e.extra()["retryAfterSeconds"].get<int64_t>()));
            throw;
        }
    }

    void count(const std::string& caller, const std::string& outcome) {
        std::lock_guard lock(metrics_m_);
        ++requests_[{callers_.count(caller) ? caller : "-", outcome}];
    }

    std::string metrics() {
        std::ostringstream o;
        std::lock_guard lock(metrics_m_);
        o << "# HELP renkei_agency_requests_total Online queries by caller and outcome (ok or the error rule).\n"
             "# TYPE renkei_agency_requests_total counter\n";
        for (auto& [k, n] : requests_)
            o << "renkei_agency_requests_total{caller=\"" << k.first << "\",outcome=\"" << k.second << "\"} " << n << "\n";
        o << "# HELP renkei_agency_batch_keys_done Keys answered in the batch file being processed.\n"
             "# TYPE renkei_agency_batch_keys_done gauge\n"
             "renkei_agency_batch_keys_done " << batch_.done << "\n"
             "# TYPE renkei_agency_batch_keys_total gauge\n"
             "renkei_agency_batch_keys_total " << batch_.total << "\n"
             "# HELP renkei_agency_batch_rate Keys per second in the current batch file.\n"
             "# TYPE renkei_agency_batch_rate gauge\n"
             "renkei_agency_batch_rate " << batch_.rate << "\n"
             "# HELP renkei_agency_batch_eta_seconds Estimated seconds left for the current batch file.\n"
             "# TYPE renkei_agency_batch_eta_seconds gauge\n"
             "renkei_agency_batch_eta_seconds " << batch_.eta << "\n"
             "# TYPE renkei_agency_batch_files_total counter\n"
             "renkei_agency_batch_files_total{outcome=\"processed\"} " << batch_.processed << "\n"
             "renkei_agency_batch_files_total{outcome=\"failed\"} " << batch_.failed << "\n"
             "# TYPE renkei_agency_batch_keys_total_done counter\n"
             "renkei_agency_batch_keys_total_done " << batch_.keys_all << "\n";
        return o.str();
    }

    // ------------------------------------------------------------------ batch files

    void watch() {
        for (;;) {
            {
                std::unique_lock lock(m_);
                if (stopping_) return;
            }
            for (auto& [name, c] : callers_) {
                if (c.batch_dir.empty()) continue;
                std::vector<fs::path> files;
                std::error_code ec;
                for (auto& e : fs::directory_iterator(c.batch_dir / "inbox", ec)) {
                    auto f = e.path().filename().string();
                    if (e.is_regular_file() && !f.empty() && f[0] != '.' && f.size() < 200) files.push_back(e.path());
                }
                std::sort(files.begin(), files.end());
                for (auto& f : files) {
                    {
                        std::lock_guard lock(m_);
                        if (stopping_) return;
                    }
                    process(c, f);
                }
            }
            std::unique_lock lock(m_);
            cv_.wait_for(lock, std::chrono::milliseconds(batch_poll_ms_), [&] { return stopping_; });
        }
    }

    static void write_atomically(const fs::path& target, const std::string& text) {
        auto tmp = target.parent_path() / ("." + target.filename().string() + ".tmp");
        int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0) throw std::runtime_error("cannot write " + tmp.string());
        size_t off = 0;
        while (off < text.size()) {
            auto n = ::write(fd, text.data() + off, text.size() - off);
            if (n <= 0) {
                ::close(fd);
                throw std::runtime_error("cannot write " + tmp.string());
            }
            off += static_cast<size_t>(n);
        }
        ::fsync(fd);
        ::close(fd);
        fs::rename(tmp, target);
        int dir = ::open(target.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dir >= 0) {
            ::fsync(dir);
            ::close(dir);
        }
    }

    static fs::path free_name(const fs::path& dir, const std::string& name) {
        auto p = dir / name;
        for (int i = 1; fs::exists(p); ++i) p = dir / (name + "." + std::to_string(i));
        return p;
    }

    void fail_file(const Caller& c, const fs::path& file, const ApiError& e) {
        auto name = file.filename().string();
        write_atomically(free_name(c.batch_dir / "failed", name + ".error.json"), e.body().dump(2) + "\n");
        fs::rename(file, free_name(c.batch_dir / "failed", name));
        host().warn("agency-gateway: batch " + c.name + "/" + name + " failed: " + e.what());
        std::lock_guard lock(metrics_m_);
        ++batch_.failed;
    }

    // One key line: 個人番号 (12 digits), 住民票コード (11 digits), or 4情報 separated by tabs:
    // name, dateOfBirth, sex, address (dateOfBirth and sex, or address, may be empty).
    static json key_of_line(const std::string& line) {
        bool digits = !line.empty() && std::all_of(line.begin(), line.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
        if (digits && line.size() == 12) return {{"myNumber", line}};
        if (digits && line.size() == 11) return {{"residentCode", line}};
        if (digits) return {{"residentCode", line}}; // wrong length: the validator names it
        std::vector<std::string> f;
        std::stringstream ss(line);
        for (std::string x; std::getline(ss, x, '\t');) f.push_back(x);
        json k{{"name", f.size() > 0 ? f[0] : ""}};
        if (f.size() > 1 && !f[1].empty()) k["dateOfBirth"] = f[1];
        if (f.size() > 2 && !f[2].empty()) k["sex"] = f[2];
        if (f.size() > 3 && !f[3].empty()) k["address"] = f[3];
        if (f.size() > 4) k["extra"] = true; // refused as an unknown member: too many columns
        return k;
    }

    void process(const Caller& c, const fs::path& file) {
        auto name = file.filename().string();
        std::string digest; // the file's SHA-256, once read
        auto started = std::chrono::steady_clock::now();
        std::error_code ec;
        auto size = fs::file_size(file, ec);
        if (ec) return; // gone meanwhile
        try {
            if (static_cast<int64_t>(size) > max_batch_bytes_)
                throw ApiError(413, "batch.too_large", "file",
                               "file: " + std::to_string(size) + " bytes, larger than max_batch_bytes " + std::to_string(max_batch_bytes_));
            std::string bytes;
            {
                std::ifstream f(file, std::ios::binary);
                bytes.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
            }
            digest = hex(sha256(bytes)); // the file's identity across a stop
            std::istringstream in(bytes);
            std::string purpose, operator_id;
            std::vector<std::pair<size_t, std::string>> lines; // line number, text
            size_t n = 0;
            for (std::string line; std::getline(in, line);) {
                ++n;
                if (!line.empty() && line.back() == '\r') line.pop_back();
                if (line.empty()) continue;
                if (line.rfind("#purpose ", 0) == 0) {
                    purpose = line.substr(9);
                } else if (line.rfind("#operator ", 0) == 0) {
                    operator_id = line.substr(10);
                } else if (line[0] != '#') {
                    lines.emplace_back(n, line);
                }
            }
            check_purpose(c, purpose, "#purpose");
            std::vector<Key> keys;
            std::map<size_t, json> refused; // line -> error
            std::map<size_t, json> key_json;
            for (auto& [no, text] : lines) {
                auto kj = key_of_line(text);
                key_json[no] = kj;
                Key k;
                k.origin = no;
                k.mb = std::make_unique<capnp::MallocMessageBuilder>();
                try {
                    read_query_key(kj, "line " + std::to_string(no), k.mb->initRoot<juki::QueryKey>());
                } catch (const FieldError& e) {
                    refused[no] = error_body(422, e.rule(), e.field(), e.what())["error"];
                    continue;
                }
                keys.push_back(std::move(k));
            }
            // The whole file is one request against the day's quota (never more keys per query
            // than keys_per_request).
            Caller as_batch = c;
            as_batch.keys_per_request = INT64_MAX;
            charge(as_batch, keys.size(), digest);
            {
                std::lock_guard lock(metrics_m_);
                batch_ = BatchProgress{0, keys.size(), 0, 0, batch_.processed, batch_.failed, batch_.keys_all};
            }
            host().info("agency-gateway: batch " + c.name + "/" + name + ": " + std::to_string(keys.size()) + " keys for " +
                        purpose + (refused.empty() ? "" : ", " + std::to_string(refused.size()) + " lines refused"));
            std::map<size_t, Outcome> outcomes;
            size_t chunk = std::min<size_t>(batch_chunk_, static_cast<size_t>(c.keys_per_request));
            size_t resumed = 0;
            for (size_t start = 0; start < keys.size(); start += chunk) {
                std::vector<Key> part;
                for (size_t i = start; i < std::min(keys.size(), start + chunk); ++i) part.push_back(std::move(keys[i]));
                auto got = saved_chunk(c, digest, start, part.size());
                if (got) {
                    resumed += part.size();
                } else {
                    got = query(part, purpose, operator_id.empty() ? c.name + "/batch" : c.name + "/" + operator_id, chunk);
                    save_chunk(c, digest, start, *got);
                }
                for (size_t i = 0; i < part.size(); ++i) outcomes[part[i].origin] = std::move((*got)[i]);
                progress(c.name + "/" + name, std::min(keys.size(), start + chunk), keys.size(), started);
            }
            std::string text;
            size_t found = 0, not_found = 0, errors = refused.size(), jlis_refused = 0;
            for (auto& [no, kj] : key_json) {
                json line{{"line", no}, {"key", kj}};
                if (refused.count(no)) {
                    line["error"] = refused[no];
                } else {
                    auto& o = outcomes[no];
                    if (!o.error.is_null()) {
                        line["error"] = o.error;
                        ++jlis_refused;
                    } else {
                        line["status"] = o.status;
                        if (!o.person.is_null()) line["person"] = o.person;
                        ++(o.status == "found" ? found : not_found);
                    }
                }
                text += line.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
            }
            double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
            json summary{{"file", name}, {"caller", c.name}, {"purpose", purpose}, {"keys", key_json.size()}, {"found", found},
                         {"notFound", not_found}, {"refusedLines", errors}, {"refusedByJlis", jlis_refused}, {"seconds", secs}};
            if (resumed) summary["answeredBeforeARestart"] = resumed;
            text += json{{"summary", summary}}.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
            write_atomically(free_name(c.batch_dir / "answers", name + ".answers.jsonl"), text);
            forget_batch(c, digest); // before the move: a file that left the inbox never resumes
            fs::rename(file, free_name(c.batch_dir / "processed", name));
            host().info("agency-gateway: batch " + c.name + "/" + name + " done: " + summary.dump());
            std::lock_guard lock(metrics_m_);
            ++batch_.processed;
        } catch (const Stopping&) {
            host().info("agency-gateway: batch " + c.name + "/" + name + " stays in the inbox for the next start");
        } catch (const ApiError& e) {
            forget_quietly(c, digest);
            fail_file(c, file, e);
        } catch (const std::exception& e) {
            forget_quietly(c, digest);
            fail_file(c, file, ApiError(500, "batch.internal", "file", std::string("file: ") + e.what()));
        }
    }

    void progress(const std::string& what, size_t done, size_t total, std::chrono::steady_clock::time_point started) {
        double secs = std::max(1e-3, std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
        double rate = static_cast<double>(done) / secs;
        double eta = rate > 0 ? static_cast<double>(total - done) / rate : 0;
        {
            std::lock_guard lock(metrics_m_);
            batch_.keys_all += done - batch_.done;
            batch_.done = done;
            batch_.total = total;
            batch_.rate = rate;
            batch_.eta = eta;
        }
        char b[160];
        std::snprintf(b, sizeof b, ": %zu/%zu keys (%.0f%%), %.1f keys/s, about %.0f s left", done, total,
                      total ? 100.0 * static_cast<double>(done) / static_cast<double>(total) : 100.0, rate, eta);
        host().info("agency-gateway: batch " + what + b);
    }

    struct BatchProgress {
        size_t done = 0, total = 0;
        double rate = 0, eta = 0;
        uint64_t processed = 0, failed = 0, keys_all = 0;
    };

    std::string national_;
    int64_t answer_timeout_ms_ = 30000, skew_s_ = 300, batch_poll_ms_ = 1000, max_batch_bytes_ = 0;
    size_t batch_chunk_ = 1000;
    std::map<std::string, Caller> callers_;
    std::unique_ptr<sql::Db> db_;
    std::mutex db_m_;
    std::unique_ptr<Server> server_;
    std::thread watcher_;
    std::mutex m_; // pending_, stopping_
    std::condition_variable cv_;
    std::map<std::string, Pending> pending_;
    bool stopping_ = false;
    std::mutex metrics_m_;
    std::map<std::pair<std::string, std::string>, uint64_t> requests_;
    BatchProgress batch_;
};

} // namespace

RENKEI_PLUGIN(Gateway, "agency-gateway", "0.1.0", RENKEI_KIND_ADAPTER, "juki.IdentityAnswer", "juki.IdentityQuery.Fault")
