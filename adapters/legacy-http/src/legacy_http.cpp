// legacy-http: a municipality's 住民記録システム connected to its CS in the online-message mode,
// over HTTP/JSON on loopback. The municipal system
//   - POSTs 本人確認情報 updates (checked here with the CS's own record rules before they are sent:
//     the answer lists each refused record with its field and rule) and 個人番号 requests;
//   - polls a durable feed with a cursor for what comes back: each tier's 更新件数リスト, 個人番号,
//     notices the CS hands over (転入通知, 記載事項通知, 転出証明書情報), 広域交付 requests to
//     answer, answers to its own 広域交付 requests, faults. An item stays until acknowledged, so a
//     crash of the municipal system loses nothing (pull, as the standardisation rules prefer);
//   - may instead be pushed the feed (push_url), with retry and back-off, polling still working.
// The HTTP server runs on its own threads; handle() only writes the feed. ../README.md lists the
// settings, endpoints, JSON shapes and errors.
#include <juki.capnp.h>
#include <records.hpp>

#include <renkei/http/crypto.hpp>
#include <renkei/http/juki_json.hpp>
#include <renkei/http/server.hpp>
#include <renkei/http/settings.hpp>
#include <renkei/http/sqlite.hpp>
#include <renkei/sdk.hpp>
#include <renkei/validate.hpp>

#include <condition_variable>
#include <mutex>
#include <regex>
#include <thread>

namespace {

using renkei::sdk::Error;
using namespace renkei::http;
namespace juki = renkei::juki;
namespace schema = renkei::schema;

const char* kSchema = R"(
CREATE TABLE IF NOT EXISTS feed (seq INTEGER PRIMARY KEY AUTOINCREMENT, message_id TEXT NOT NULL UNIQUE,
  kind TEXT NOT NULL, at_ms INTEGER NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS batches (batch_id TEXT PRIMARY KEY, digest TEXT NOT NULL, at_ms INTEGER NOT NULL,
  answer TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS batch_results (batch_id TEXT NOT NULL, recorded_by TEXT NOT NULL, body TEXT NOT NULL,
  PRIMARY KEY (batch_id, recorded_by));
CREATE TABLE IF NOT EXISTS sent (envelope_id TEXT PRIMARY KEY, type TEXT NOT NULL, ref TEXT NOT NULL,
  at_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS copy_requests (request_id TEXT PRIMARY KEY, from_node TEXT NOT NULL,
  purpose TEXT NOT NULL, at_ms INTEGER NOT NULL, answered_ms INTEGER);
)";

std::string hex_of(kj::ArrayPtr<const kj::byte> b) { return hex(b.begin(), b.size()); }

template <typename T> struct Parsed : renkei::sdk::Flat<T> {
    explicit Parsed(kj::ArrayPtr<const kj::byte> bytes) : renkei::sdk::Flat<T>(bytes, 64) {}
};

// A 400/422 from a FieldError.
ApiError invalid(const FieldError& e, int status = 422) { return ApiError(status, e.rule(), e.field(), e.what()); }

class LegacyHttp : public renkei::sdk::Plugin {
public:
    using Plugin::Plugin;

    void start() override {
        node_ = host().node_id();
        municipality_ = host().config_or("municipality", node_.rfind("muni:", 0) == 0 ? node_.substr(5) : "");
        if (auto r = renkei::validate::local_gov_code("settings.municipality", municipality_); !r)
            throw Error(RENKEI_ERR_INVALID, r.message, r.field, r.rule);
        national_ = host().config_or("national", "jlis:juki");
        auto store = host().config("store");
        if (!store || store->empty())
            throw Error(RENKEI_ERR_INVALID, "settings.store: required (the feed's SQLite file)", "settings.store");
        max_records_ = static_cast<size_t>(integer_setting(host(), "max_records", 10000, 1, 10000));
        poll_limit_ = static_cast<size_t>(integer_setting(host(), "poll_limit", 1000, 1, 10000));
        if (auto t = host().config("token_file"); t && !t->empty()) {
            auto s = secret_file(*t, "settings.token_file", 16);
            token_.assign(s.begin(), s.end());
        }
        ServerOptions o;
        o.listen = host().config_or("listen", "127.0.0.1:8470");
        o.allow_non_loopback = bool_setting(host(), "allow_non_loopback", false);
        o.max_body_bytes = static_cast<size_t>(integer_setting(host(), "max_body_bytes", 16 << 20, 1024, 1LL << 30));
        o.threads = static_cast<int>(integer_setting(host(), "threads", 8, 1, 64));
        push_url_ = host().config_or("push_url", "");
        push_batch_ = static_cast<size_t>(integer_setting(host(), "push_batch", 100, 1, 10000));
        push_retry_ms_ = integer_setting(host(), "push_retry_ms", 1000, 10, 3600000);
        push_retry_max_ms_ = integer_setting(host(), "push_retry_max_ms", 60000, push_retry_ms_, 86400000);
        if (!push_url_.empty()) parse_push_url(o.allow_non_loopback);
        db_ = std::make_unique<sql::Db>(*store);
        db_->exec(kSchema);
        try {
            server_ = std::make_unique<Server>(o);
        } catch (const std::invalid_argument& e) {
            throw Error(RENKEI_ERR_INVALID, e.what(), "settings.listen", "http.listen");
        }
        routes();
        server_->start();
        if (!push_url_.empty()) pusher_ = std::thread([this] { push_loop(); });
        host().info("legacy-http for " + municipality_ + " on http://" + server_->address() + ":" +
                    std::to_string(server_->port()) + (push_url_.empty() ? "" : ", pushing to " + push_url_));
    }

    void stop() override {
        {
            std::lock_guard lock(push_m_);
            stopping_ = true;
        }
        push_cv_.notify_all();
        if (pusher_.joinable()) pusher_.join();
        if (server_) server_->stop();
    }

    // Only writes the feed (never waits for HTTP): the municipal system polls or is pushed it.
    void handle(const renkei::sdk::Message& m) override {
        const std::string t = m.type();
        auto env = m.envelope();
        std::string id = hex_of(env.getId());
        if (t == "juki.UpdateResult") {
            Parsed<juki::UpdateCountList> p(m.payload());
            auto l = p.get();
            auto body = count_list_json(l);
            std::lock_guard lock(db_m_);
            sql::Tx tx(*db_);
            sql::Stmt(*db_, "INSERT OR REPLACE INTO batch_results (batch_id, recorded_by, body) VALUES (?1, ?2, ?3)")
                .bind(1, std::string(l.getBatchId()))
                .bind(2, std::string(l.getRecordedBy()))
                .bind(3, body.dump())
                .run();
            add(id, "updateResult", body);
            tx.commit();
        } else if (t == "juki.NumberAssigned") {
            Parsed<juki::NumberAssigned> p(m.payload());
            auto a = p.get();
            json body{{"residentCode", a.getResidentCode().cStr()}, {"myNumber", a.getMyNumber().cStr()},
                      {"generation", a.getGeneration()}};
            if (a.getPrevious().size()) body["previous"] = a.getPrevious().cStr();
            std::lock_guard lock(db_m_);
            add(id, "numberAssigned", body);
        } else if (t == "juki.CopyAnswer") {
            Parsed<juki::CopyAnswer> p(m.payload());
            auto a = p.get();
            json items = json::array();
            for (auto i : a.getItems()) items.push_back({{"name", i.getName().cStr()}, {"value", i.getValue().cStr()}});
            json body{{"requestId", hex_of(env.getCorrelationId())}, {"from", m.from()}, {"issued", a.getIssued()},
                      {"items", items}};
            if (a.getRefusal().size()) body["refusal"] = a.getRefusal().cStr();
            if (a.hasPerson() && a.getPerson().getResidentCode().size()) body["person"] = person_json(a.getPerson());
            std::lock_guard lock(db_m_);
            add(id, "copyAnswer", body);
        } else if (t == "juki.Handover") {
            handover(m);
        } else if (t.size() > 6 && t.compare(t.size() - 6, 6, ".Fault") == 0) {
            auto f = env.getFault();
            std::string corr = hex_of(env.getCorrelationId());
            json body{{"requestType", t.substr(0, t.size() - 6)}, {"code", f.getCode()}, {"field", f.getField().cStr()},
                      {"rule", f.getRule().cStr()}, {"message", f.getMessage().cStr()}, {"requestId", corr}};
            std::lock_guard lock(db_m_);
            sql::Stmt q(*db_, "SELECT ref FROM sent WHERE envelope_id = ?1");
            q.bind(1, corr);
            if (q.step()) body["ref"] = q.text(0);
            add(id, "fault", body);
            host().warn("legacy-http: " + t + ": " + std::string(f.getMessage()));
        } else {
            throw Error(RENKEI_ERR_UNSUPPORTED, "legacy-http does not handle " + t, "type");
        }
        push_cv_.notify_all();
    }

private:
    // ------------------------------------------------------------------ the feed

    // Adds an item unless this message is in already (a redelivery). Caller holds db_m_.
    void add(const std::string& message_id, const std::string& kind, const json& body) {
        sql::Stmt(*db_, "INSERT OR IGNORE INTO feed (message_id, kind, at_ms, body) VALUES (?1, ?2, ?3, ?4)")
            .bind(1, message_id)
            .bind(2, kind)
            .bind(3, host().now_unix_ms())
            .bind(4, body.dump(-1, ' ', false, json::error_handler_t::replace))
            .run();
    }

    // What the CS received for the 住民記録システム: the payload is the envelope it received.
    void handover(const renkei::sdk::Message& m) {
        auto bytes = m.payload();
        Parsed<schema::Envelope> outer(bytes);
        auto e = outer.get();
        std::string type = e.getType(), from = e.getFrom(), id = hex_of(e.getId());
        json body{{"from", from}, {"purpose", e.getPurpose().cStr()}};
        std::string kind;
        if (type == "juki.MoveInNotice") {
            Parsed<juki::MoveInNotice> p(e.getPayload());
            auto n = p.get();
            kind = "moveInNotice";
            body["person"] = person_json(n.getPerson());
            body["moveInDate"] = date_text(n.getMoveInDate());
            body["newMunicipality"] = n.getNewMunicipality().cStr();
            body["oldMunicipality"] = n.getOldMunicipality().cStr();
        } else if (type == "juki.RecordNotice") {
            Parsed<juki::RecordNotice> p(e.getPayload());
            auto n = p.get();
            kind = "recordNotice";
            body["noticeKind"] = n.getKind() == juki::RecordNotice::Kind::RESIDENT_RECORD ? "residentRecord" : "familyRegisterAnnex";
            body["person"] = person_json(n.getPerson());
            json items = json::array();
            for (auto i : n.getItems()) items.push_back({{"name", i.getName().cStr()}, {"value", i.getValue().cStr()}});
            body["items"] = items;
        } else if (type == "juki.MoveOutCertificate") {
            Parsed<juki::MoveOutCertificate> p(e.getPayload());
            auto n = p.get();
            kind = "moveOutCertificate";
            body["person"] = person_json(n.getPerson());
            body["moveOutDate"] = date_text(n.getMoveOutDate());
            body["destination"] = n.getDestination().cStr();
            body["oldMunicipality"] = n.getOldMunicipality().cStr();
            body["newMunicipality"] = n.getNewMunicipality().cStr();
        } else if (type == "juki.CopyRequest") {
            Parsed<juki::CopyRequest> p(e.getPayload());
            auto q = p.get();
            kind = "copyRequest";
            body["requestId"] = id;
            body["residentCode"] = q.getResidentCode().cStr();
            body["name"] = q.getName().cStr();
            body["dateOfBirth"] = date_text(q.getDateOfBirth());
            body["identityDocument"] = q.getIdentityDocument().cStr();
            body["withHousehold"] = q.getWithHousehold();
            body["issuingMunicipality"] = q.getIssuingMunicipality().cStr();
        } else {
            throw Error(RENKEI_ERR_UNSUPPORTED, "legacy-http: the CS handed over " + type + ", which it does not take", "type");
        }
        std::lock_guard lock(db_m_);
        sql::Tx tx(*db_);
        if (kind == "copyRequest")
            sql::Stmt(*db_, "INSERT OR IGNORE INTO copy_requests (request_id, from_node, purpose, at_ms) VALUES (?1, ?2, ?3, ?4)")
                .bind(1, id)
                .bind(2, from)
                .bind(3, std::string(e.getPurpose()))
                .bind(4, host().now_unix_ms())
                .run();
        add(id, kind, body);
        tx.commit();
    }

    json items_after(int64_t after, size_t limit, bool& more) {
        json items = json::array();
        sql::Stmt q(*db_, "SELECT seq, kind, at_ms, body FROM feed WHERE seq > ?1 ORDER BY seq LIMIT ?2");
        q.bind(1, after).bind(2, static_cast<int64_t>(limit + 1));
        while (q.step()) {
            if (items.size() == limit) {
                more = true;
                break;
            }
            auto item = json::parse(q.text(3));
            item["seq"] = q.integer(0);
            item["kind"] = q.text(1);
            item["receivedAtMs"] = q.integer(2);
            items.push_back(std::move(item));
        }
        return items;
    }

    // ------------------------------------------------------------------ HTTP

    void authorize(const httplib::Request& req) {
        if (token_.empty()) return;
        auto h = req.get_header_value("Authorization");
        std::string want = "Bearer " + token_;
        if (!equal(std::vector<uint8_t>(h.begin(), h.end()), std::vector<uint8_t>(want.begin(), want.end())))
            throw ApiError(401, "auth.token", "Authorization", "Authorization: a valid bearer token is required");
    }

    void routes() {
        auto& s = *server_;
        s.get("/healthz", [this](const httplib::Request&, httplib::Response& res) {
            std::lock_guard lock(db_m_);
            sql::Stmt q(*db_, "SELECT count(*) FROM feed");
            q.step();
            send_json(res, 200, {{"ok", true}, {"node", node_}, {"municipality", municipality_}, {"feed", q.integer(0)}});
        });
        s.post("/v1/updates", [this](const httplib::Request& req, httplib::Response& res) {
            authorize(req);
            post_updates(req, res);
        });
        s.get(R"(/v1/batches/([^/]+))", [this](const httplib::Request& req, httplib::Response& res) {
            authorize(req);
            get_batch(req.matches[1], res);
        });
        s.get("/v1/feed", [this](const httplib::Request& req, httplib::Response& res) {
            authorize(req);
            int64_t after = query_integer(req, "after", 0, 0, INT64_MAX);
            size_t limit = static_cast<size_t>(query_integer(req, "limit", 100, 1, static_cast<int64_t>(poll_limit_)));
            bool more = false;
            std::lock_guard lock(db_m_);
            auto items = items_after(after, limit, more);
            int64_t next = items.empty() ? after : items.back()["seq"].get<int64_t>();
            send_json(res, 200, {{"items", items}, {"next", next}, {"more", more}});
        });
        s.post("/v1/feed/ack", [this](const httplib::Request& req, httplib::Response& res) {
            authorize(req);
            auto j = parse_object(req);
            try {
                only_members(j, "", {"seqs", "upTo"});
            } catch (const FieldError& e) {
                throw invalid(e, 400);
            }
            std::lock_guard lock(db_m_);
            sql::Tx tx(*db_);
            int64_t n = 0;
            if (j.contains("upTo")) {
                if (!j["upTo"].is_number_unsigned()) throw ApiError(400, "json.type", "upTo", "upTo: must be a feed seq");
                sql::Stmt(*db_, "DELETE FROM feed WHERE seq <= ?1").bind(1, j["upTo"].get<int64_t>()).run();
                n += db_->changes();
            }
            if (j.contains("seqs")) {
                if (!j["seqs"].is_array()) throw ApiError(400, "json.type", "seqs", "seqs: must be an array of feed seqs");
                for (size_t i = 0; i < j["seqs"].size(); ++i) {
                    auto& v = j["seqs"][i];
                    if (!v.is_number_unsigned())
                        throw ApiError(400, "json.type", "seqs[" + std::to_string(i) + "]",
                                       "seqs[" + std::to_string(i) + "]: must be a feed seq");
                    sql::Stmt(*db_, "DELETE FROM feed WHERE seq = ?1").bind(1, v.get<int64_t>()).run();
                    n += db_->changes();
                }
            }
            if (!j.contains("upTo") && !j.contains("seqs"))
                throw ApiError(400, "json.required", "seqs", "seqs: give seqs (a list) or upTo (a seq)");
            tx.commit();
            send_json(res, 200, {{"acknowledged", n}});
        });
        s.post("/v1/number-requests", [this](const httplib::Request& req, httplib::Response& res) {
            authorize(req);
            post_number_requests(req, res);
        });
        s.post("/v1/copy-requests", [this](const httplib::Request& req, httplib::Response& res) {
            authorize(req);
            post_copy_request(req, res);
        });
        s.post(R"(/v1/copy-requests/([0-9a-f]{32})/answer)", [this](const httplib::Request& req, httplib::Response& res) {
            authorize(req);
            post_copy_answer(req.matches[1], req, res);
        });
    }

    static int64_t query_integer(const httplib::Request& req, const char* key, int64_t fallback, int64_t min, int64_t max) {
        if (!req.has_param(key)) return fallback;
        auto v = req.get_param_value(key);
        int64_t n = 0;
        size_t used = 0;
        try {
            n = std::stoll(v, &used);
        } catch (const std::exception&) {
            used = 0;
        }
        if (used == 0 || used != v.size() || n < min || n > max)
            throw ApiError(400, "query.range", key,
                           std::string(key) + ": must be a whole number " + std::to_string(min) + ".." + std::to_string(max));
        return n;
    }

    // Builds an envelope with its own id (so answers and faults can be matched), records what
    // it is for, and sends it. Returns the id (hex). Caller holds db_m_.
    std::string send_tracked(const std::string& type, const std::string& to, capnp::MallocMessageBuilder& payload,
                             const std::string& purpose, const std::string& ref, const std::string& correlation = {}) {
        auto id = random_bytes(16);
        auto bytes = capnp::messageToFlatArray(payload);
        capnp::MallocMessageBuilder mb;
        auto e = mb.initRoot<schema::Envelope>();
        e.setId(kj::arrayPtr(id.data(), id.size()));
        e.setType(type);
        e.setTo(to);
        e.setPurpose(purpose);
        e.setOperatorId("legacy-http");
        auto corr = from_hex(correlation);
        if (!corr.empty()) e.setCorrelationId(kj::arrayPtr(corr.data(), corr.size()));
        e.setPayload(bytes.asBytes());
        sql::Stmt(*db_, "INSERT INTO sent (envelope_id, type, ref, at_ms) VALUES (?1, ?2, ?3, ?4)")
            .bind(1, hex(id))
            .bind(2, type)
            .bind(3, ref)
            .bind(4, host().now_unix_ms())
            .run();
        try {
            host().send(mb);
        } catch (const Error& err) {
            throw ApiError(503, "host.send", "", std::string("the host did not accept the message: ") + err.what());
        }
        return hex(id);
    }

    void post_updates(const httplib::Request& req, httplib::Response& res) {
        auto j = parse_object(req);
        std::string batch;
        try {
            only_members(j, "", {"batchId", "records"});
            batch = string_member(j, "", "batchId");
        } catch (const FieldError& e) {
            throw invalid(e, 400);
        }
        static const std::regex kBatch("[A-Za-z0-9._:-]{1,100}");
        if (!batch.empty() && !std::regex_match(batch, kBatch))
            throw ApiError(400, "batch.id", "batchId", "batchId: 1..100 characters of A-Z a-z 0-9 . _ : -");
        if (!j.contains("records") || !j["records"].is_array())
            throw ApiError(400, "json.required", "records", "records: required, an array of records");
        auto& records = j["records"];
        if (records.empty() || records.size() > max_records_)
            throw ApiError(422, "juki.batch_size", "records",
                           "records: " + std::to_string(records.size()) + " records, 1.." + std::to_string(max_records_) +
                               " per batch");
        if (batch.empty()) batch = municipality_ + "-" + hex(random_bytes(8));
        // Each record: its JSON shape, then the CS's own record rules (the same code).
        std::vector<std::unique_ptr<capnp::MallocMessageBuilder>> built;
        json rejected = json::array();
        std::vector<juki::IdentityRecord::Reader> kept;
        for (size_t i = 0; i < records.size(); ++i) {
            std::string at = "records[" + std::to_string(i) + "]";
            auto mb = std::make_unique<capnp::MallocMessageBuilder>();
            auto r = mb->initRoot<juki::IdentityRecord>();
            std::string code;
            try {
                if (records[i].is_object() && records[i].contains("person") && records[i]["person"].is_object())
                    code = string_member(records[i]["person"], at + ".person", "residentCode");
                read_record(records[i], at, r);
                if (auto why = juki::validate_record(r.asReader(), municipality_))
                    throw FieldError(at + "." + why->field, why->rule, at + "." + why->message);
            } catch (const FieldError& e) {
                json x{{"index", i}, {"field", e.field()}, {"rule", e.rule()}, {"message", e.what()}};
                if (renkei::validate::resident_code("", code)) x["residentCode"] = code;
                rejected.push_back(std::move(x));
                continue;
            }
            kept.push_back(r.asReader());
            built.push_back(std::move(mb));
        }
        auto canonical = j;
        canonical["batchId"] = batch;
        std::string digest = hex(sha256(canonical.dump()));
        std::lock_guard lock(db_m_);
        {
            sql::Stmt q(*db_, "SELECT digest, answer FROM batches WHERE batch_id = ?1");
            q.bind(1, batch);
            if (q.step()) {
                if (q.text(0) != digest)
                    throw ApiError(409, "batch.conflict", "batchId",
                                   "batchId: " + batch + " was already sent with other records; use a new batchId");
                auto answer = json::parse(q.text(1));
                answer["duplicate"] = true;
                return send_json(res, 200, answer);
            }
        }
        json answer{{"batchId", batch}, {"received", records.size()}, {"accepted", kept.size()}, {"rejected", rejected}};
        if (kept.empty()) {
            answer["error"] = error_body(422, "batch.nothing_valid", "records", "records: no record passed; nothing was sent")["error"];
            return send_json(res, 422, answer);
        }
        capnp::MallocMessageBuilder mb;
        auto u = mb.initRoot<juki::IdentityUpdate>();
        u.setBatchId(batch);
        u.setMunicipality(municipality_);
        u.setRecordedAtMs(host().now_unix_ms());
        auto list = u.initRecords(static_cast<unsigned>(kept.size()));
        for (size_t i = 0; i < kept.size(); ++i) list.setWithCaveats(static_cast<unsigned>(i), kept[i]);
        // Sent first, then recorded: a crash between the two makes a retry send again, and the CS
        // answers a batch id it has seen with the answer it gave.
        sql::Tx tx(*db_);
        send_tracked("juki.IdentityUpdate", node_, mb, "juki-30-6", batch);
        sql::Stmt(*db_, "INSERT INTO batches (batch_id, digest, at_ms, answer) VALUES (?1, ?2, ?3, ?4)")
            .bind(1, batch)
            .bind(2, digest)
            .bind(3, host().now_unix_ms())
            .bind(4, answer.dump())
            .run();
        tx.commit();
        if (!rejected.empty())
            host().warn("legacy-http: batch " + batch + ": " + std::to_string(rejected.size()) + " of " +
                        std::to_string(records.size()) + " records refused before sending");
        send_json(res, 202, answer);
    }

    void get_batch(const std::string& batch, httplib::Response& res) {
        std::lock_guard lock(db_m_);
        sql::Stmt q(*db_, "SELECT answer FROM batches WHERE batch_id = ?1");
        q.bind(1, batch);
        if (!q.step()) throw ApiError(404, "batch.unknown", "batchId", "batchId: no batch " + batch + " was sent here");
        auto answer = json::parse(q.text(0));
        json results = json::array();
        sql::Stmt r(*db_, "SELECT body FROM batch_results WHERE batch_id = ?1 ORDER BY rowid");
        r.bind(1, batch);
        while (r.step()) results.push_back(json::parse(r.text(0)));
        answer["results"] = results;
        send_json(res, 200, answer);
    }

    void post_number_requests(const httplib::Request& req, httplib::Response& res) {
        auto j = parse_object(req);
        std::vector<std::string> codes;
        bool change = false;
        std::string reason;
        try {
            only_members(j, "", {"residentCodes", "change", "reason"});
            if (!j.contains("residentCodes") || !j["residentCodes"].is_array() || j["residentCodes"].empty() ||
                j["residentCodes"].size() > 1000)
                throw FieldError("residentCodes", "json.required", "residentCodes: required, 1..1000 住民票コード");
            for (size_t i = 0; i < j["residentCodes"].size(); ++i) {
                std::string f = "residentCodes[" + std::to_string(i) + "]";
                auto& v = j["residentCodes"][i];
                if (!v.is_string()) throw FieldError(f, "json.type", f + ": must be a string");
                if (auto r = renkei::validate::resident_code(f, v.get<std::string>()); !r)
                    throw FieldError(r.field, r.rule, r.message);
                codes.push_back(v.get<std::string>());
            }
            if (j.contains("change")) {
                if (!j["change"].is_boolean()) throw FieldError("change", "json.type", "change: must be true or false");
                change = j["change"].get<bool>();
            }
            reason = string_member(j, "", "reason");
            if (change && reason.empty())
                throw FieldError("reason", "juki.change_reason", "reason: required for a 個人番号 change (番号法7条2項)");
        } catch (const FieldError& e) {
            throw invalid(e);
        }
        std::lock_guard lock(db_m_);
        json ids = json::array();
        for (auto& code : codes) {
            capnp::MallocMessageBuilder mb;
            auto r = mb.initRoot<juki::NumberRequest>();
            r.setResidentCode(code);
            r.setChange(change);
            r.setReason(reason);
            ids.push_back(send_tracked("juki.NumberRequest", national_, mb, "bango-8", code));
        }
        send_json(res, 202, {{"requested", codes.size()}, {"requestIds", ids}});
    }

    // 広域交付 as the issuing municipality: after checking identity at the window, ask the
    // residence municipality (第6 4(1)); its answer comes back in the feed (copyAnswer).
    void post_copy_request(const httplib::Request& req, httplib::Response& res) {
        auto j = parse_object(req);
        capnp::MallocMessageBuilder mb;
        auto q = mb.initRoot<juki::CopyRequest>();
        std::string residence;
        try {
            only_members(j, "", {"residenceMunicipality", "residentCode", "name", "dateOfBirth", "identityDocument", "withHousehold"});
            residence = string_member(j, "", "residenceMunicipality", true);
            if (auto r = renkei::validate::local_gov_code("residenceMunicipality", residence); !r)
                throw FieldError(r.field, r.rule, r.message);
            if (residence == municipality_)
                throw FieldError("residenceMunicipality", "copy.own_municipality",
                                 "residenceMunicipality: is this municipality; 広域交付 asks another one");
            auto code = string_member(j, "", "residentCode", true);
            if (auto r = renkei::validate::resident_code("residentCode", code); !r) throw FieldError(r.field, r.rule, r.message);
            q.setResidentCode(code);
            auto name = string_member(j, "", "name", true);
            if (auto r = renkei::validate::name("name", name, 60); !r) throw FieldError(r.field, r.rule, r.message);
            q.setName(name);
            if (!j.contains("dateOfBirth")) throw FieldError("dateOfBirth", "json.required", "dateOfBirth: required");
            read_date(j["dateOfBirth"], "dateOfBirth", q.initDateOfBirth());
            auto doc = string_member(j, "", "identityDocument", true);
            if (doc.empty() || doc.size() > 200)
                throw FieldError("identityDocument", "juki.copy_identity",
                                 "identityDocument: name how identity was checked (個人番号カード, 施行規則4条2項 書類), at most 200 bytes");
            q.setIdentityDocument(doc);
            if (j.contains("withHousehold")) {
                if (!j["withHousehold"].is_boolean()) throw FieldError("withHousehold", "json.type", "withHousehold: must be true or false");
                q.setWithHousehold(j["withHousehold"].get<bool>());
            }
            q.setIssuingMunicipality(municipality_);
        } catch (const FieldError& e) {
            throw invalid(e);
        }
        std::lock_guard lock(db_m_);
        auto id = send_tracked("juki.CopyRequest", "muni:" + residence, mb, "juki-12-4", "copy:" + residence);
        send_json(res, 202, {{"requestId", id}});
    }

    // 広域交付 as the residence municipality: the answer to a request the CS handed over
    // (第6 4(2)), sent to the issuing municipality correlated with its request.
    void post_copy_answer(const std::string& request_id, const httplib::Request& req, httplib::Response& res) {
        auto j = parse_object(req);
        capnp::MallocMessageBuilder mb;
        auto a = mb.initRoot<juki::CopyAnswer>();
        try {
            only_members(j, "", {"issued", "refusal", "person", "items"});
            if (!j.contains("issued") || !j["issued"].is_boolean())
                throw FieldError("issued", "json.required", "issued: required, true or false");
            bool issued = j["issued"].get<bool>();
            a.setIssued(issued);
            auto refusal = string_member(j, "", "refusal");
            if (!issued && refusal.empty())
                throw FieldError("refusal", "copy.refusal", "refusal: required when issued is false (why not)");
            a.setRefusal(refusal);
            if (j.contains("person")) {
                read_person(j["person"], "person", a.initPerson());
                if (a.getPerson().getMyNumber().size())
                    throw FieldError("person.myNumber", "copy.no_my_number",
                                     "person.myNumber: a 広域交付 copy never carries the 個人番号");
            }
            json items = j.contains("items") ? j["items"] : json::array();
            if (!items.is_array()) throw FieldError("items", "json.type", "items: must be an array of {name, value}");
            if (issued && items.empty()) throw FieldError("items", "copy.items", "items: the copy's items are required when issued");
            auto list = a.initItems(static_cast<unsigned>(items.size()));
            for (size_t i = 0; i < items.size(); ++i) {
                std::string at = "items[" + std::to_string(i) + "]";
                only_members(items[i], at, {"name", "value"});
                list[i].setName(string_member(items[i], at, "name", true));
                list[i].setValue(string_member(items[i], at, "value", true));
            }
        } catch (const FieldError& e) {
            throw invalid(e);
        }
        std::lock_guard lock(db_m_);
        sql::Stmt q(*db_, "SELECT from_node, purpose, answered_ms FROM copy_requests WHERE request_id = ?1");
        q.bind(1, request_id);
        if (!q.step())
            throw ApiError(404, "copy.unknown_request", "requestId", "requestId: no 広域交付 request " + request_id + " was handed over here");
        if (!q.null(2)) throw ApiError(409, "copy.answered", "requestId", "requestId: " + request_id + " is answered already");
        std::string from = q.text(0), purpose = q.text(1);
        sql::Tx tx(*db_);
        send_tracked("juki.CopyAnswer", from, mb, purpose, "copy:" + request_id, request_id);
        sql::Stmt(*db_, "UPDATE copy_requests SET answered_ms = ?2 WHERE request_id = ?1")
            .bind(1, request_id)
            .bind(2, host().now_unix_ms())
            .run();
        tx.commit();
        send_json(res, 200, {{"requestId", request_id}, {"sentTo", from}});
    }

    // ------------------------------------------------------------------ push (optional)

    void parse_push_url(bool allow_non_loopback) {
        static const std::regex kUrl(R"(http://([A-Za-z0-9.\-]+|\[[0-9a-fA-F:]+\]):([0-9]{1,5})(/[^\s]*)?)");
        std::smatch m;
        if (!std::regex_match(push_url_, m, kUrl))
            throw Error(RENKEI_ERR_INVALID, "settings.push_url: must be http://host:port/path", "settings.push_url", "http.url");
        push_host_ = m[1];
        if (push_host_.front() == '[') push_host_ = push_host_.substr(1, push_host_.size() - 2);
        if (push_host_ == "localhost") push_host_ = "127.0.0.1";
        push_port_ = std::stoi(m[2]);
        push_path_ = m[3].matched ? std::string(m[3]) : "/";
        if (push_host_ != "127.0.0.1" && push_host_ != "::1" && !allow_non_loopback)
            throw Error(RENKEI_ERR_INVALID, "settings.push_url: " + push_host_ + " is not a loopback address; set allow_non_loopback = true",
                        "settings.push_url", "http.loopback");
    }

    // POSTs unacknowledged items to push_url; a 2xx acknowledges them. On failure it waits
    // (push_retry_ms, doubling to push_retry_max_ms) and the items stay in the feed for polling.
    void push_loop() {
        httplib::Client client(push_host_, push_port_);
        client.set_connection_timeout(5);
        client.set_read_timeout(10);
        client.set_write_timeout(10);
        int64_t backoff = 0;
        size_t failures = 0;
        for (;;) {
            json items;
            {
                std::unique_lock lock(push_m_);
                if (stopping_) return;
            }
            {
                bool more = false;
                std::lock_guard lock(db_m_);
                items = items_after(0, push_batch_, more);
            }
            bool ok = true;
            if (!items.empty()) {
                auto r = client.Post(push_path_.c_str(), json{{"items", items}}.dump(-1, ' ', false, json::error_handler_t::replace),
                                     "application/json");
                ok = r && r->status >= 200 && r->status < 300;
                if (ok) {
                    std::lock_guard lock(db_m_);
                    sql::Tx tx(*db_);
                    for (auto& i : items) sql::Stmt(*db_, "DELETE FROM feed WHERE seq = ?1").bind(1, i["seq"].get<int64_t>()).run();
                    tx.commit();
                    if (failures) host().info("legacy-http: push to " + push_url_ + " works again after " + std::to_string(failures) + " failures");
                    failures = 0;
                    backoff = 0;
                    continue; // more may be waiting
                }
                if (failures++ == 0)
                    host().warn("legacy-http: push to " + push_url_ + " failed (" +
                                (r ? "HTTP " + std::to_string(r->status) : httplib::to_string(r.error())) +
                                "); retrying with back-off, the feed stays pollable");
                backoff = backoff ? std::min(backoff * 2, push_retry_max_ms_) : push_retry_ms_;
            }
            std::unique_lock lock(push_m_);
            if (ok)
                push_cv_.wait_for(lock, std::chrono::seconds(1), [&] { return stopping_; }); // woken by handle()
            else
                push_cv_.wait_for(lock, std::chrono::milliseconds(backoff), [&] { return stopping_; });
        }
    }

    std::string node_, municipality_, national_, token_;
    size_t max_records_ = 10000, poll_limit_ = 1000;
    std::unique_ptr<sql::Db> db_;
    std::mutex db_m_;
    std::unique_ptr<Server> server_;
    std::string push_url_, push_host_, push_path_;
    int push_port_ = 0;
    size_t push_batch_ = 100;
    int64_t push_retry_ms_ = 1000, push_retry_max_ms_ = 60000;
    std::thread pusher_;
    std::mutex push_m_;
    std::condition_variable push_cv_;
    bool stopping_ = false;
};

} // namespace

RENKEI_PLUGIN(LegacyHttp, "legacy-http", "0.1.0", RENKEI_KIND_ADAPTER, "juki.UpdateResult", "juki.NumberAssigned",
              "juki.CopyAnswer", "juki.Handover", "juki.IdentityUpdate.Fault", "juki.NumberRequest.Fault",
              "juki.CopyRequest.Fault", "juki.CopyAnswer.Fault")
