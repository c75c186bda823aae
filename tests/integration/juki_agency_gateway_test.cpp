// adapters/agency-gateway at an agency's node, against a real three-tier network (J-LIS, a
// prefecture, a CS populated by mock-legacy-juki) with the example policies: signed HTTP queries
// on loopback answered by J-LIS, every kind of refusal with its status and error, and the batch
// folder round trip with progress.
#include "juki_backend.hpp"
#include "juki_support.hpp"
#include "network.hpp"

#include <httplib.h>
#include <nlohmann/json.hpp>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <sys/stat.h>

#include <gtest/gtest.h>

#include <sstream>

using namespace renkei;
using namespace renkei::test;
using namespace std::chrono_literals;
using json = nlohmann::json;

namespace {

std::string hex(const unsigned char* p, size_t n) {
    static const char d[] = "0123456789abcdef";
    std::string s;
    for (size_t i = 0; i < n; ++i) {
        s.push_back(d[p[i] >> 4]);
        s.push_back(d[p[i] & 15]);
    }
    return s;
}

// A staff system of the agency: signs each request with its secret.
struct Staff {
    int port;
    std::string caller, secret;
    int64_t clock_offset_s = 0;

    httplib::Headers sign(const std::string& method, const std::string& path, const std::string& body) const {
        auto ts = std::to_string(std::time(nullptr) + clock_offset_s);
        unsigned char random[16];
        RAND_bytes(random, sizeof random);
        auto nonce = hex(random, sizeof random);
        unsigned char digest[32];
        unsigned int len = 0;
        EVP_Digest(body.data(), body.size(), digest, &len, EVP_sha256(), nullptr);
        std::string text = method + "\n" + path + "\n" + ts + "\n" + nonce + "\n" + hex(digest, 32);
        unsigned char mac[32];
        HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()), reinterpret_cast<const unsigned char*>(text.data()),
             text.size(), mac, &len);
        return {{"X-Renkei-Caller", caller}, {"X-Renkei-Timestamp", ts}, {"X-Renkei-Nonce", nonce},
                {"X-Renkei-Signature", hex(mac, 32)}};
    }
    // POSTs `body` to /v1/query; `tamper` may change the body after signing.
    std::pair<int, json> query(const std::string& body, const std::function<void(std::string&)>& tamper = nullptr,
                               httplib::Headers* headers_out = nullptr) const {
        httplib::Client c("127.0.0.1", port);
        c.set_read_timeout(60);
        auto h = sign("POST", "/v1/query", body);
        if (headers_out) *headers_out = h;
        std::string sent = body;
        if (tamper) tamper(sent);
        auto r = c.Post("/v1/query", h, sent, "application/json");
        if (!r) return {-1, json()};
        return {r->status, json::parse(r->body, nullptr, false)};
    }
    std::pair<int, json> query(const json& body) const { return query(body.dump()); }
};

std::string resident(int i) {
    char b[16];
    std::snprintf(b, sizeof b, "13101%06d", i);
    return b;
}

// J-LIS, pref:13 and muni:131016 whose 30 residents mock-legacy-juki registers; the agency node
// agency:nenkin runs the gateway with three callers.
struct AgencyNet {
    TempDir tmp;
    JukiBackend backend; // before the hosts: its schemas are dropped after they stop
    Network net{tmp};
    int port = free_port();
    std::map<std::string, std::string> secrets{{"kyufu", std::string(40, 'k')},
                                               {"tekiyo", std::string(40, 't')},
                                               {"batch", std::string(40, 'b')}};

    explicit AgencyNet(const std::string& backend_name) : backend(backend_name) {
        write_file(tmp / "secret", std::string(48, 's'));
        PluginConfig national;
        national.name = "juki";
        national.path = plugin_path("plugins/juki", "juki");
        national.settings = toml::table{{"role", "national"}, {"number_secret_file", (tmp / "secret").string()}};
        backend.add_store(national.settings, "jlis", tmp / "jlis.db");
        PluginConfig pref = national;
        pref.settings = toml::table{{"role", "pref"}};
        backend.add_store(pref.settings, "pref", tmp / "pref.db");
        PluginConfig cs = national;
        cs.settings = toml::table{{"role", "cs"}, {"municipality", "131016"}, {"prefecture", "pref:13"}};
        backend.add_store(cs.settings, "cs", tmp / "cs.db");
        PluginConfig legacy;
        legacy.name = "legacy";
        legacy.path = plugin_path("adapters/mock-legacy-juki", "mock_legacy_juki");
        legacy.settings = toml::table{{"seed", "5"}, {"residents", "30"}, {"batch", "10"}};
        net.start({"jlis:juki", true, {national}, {{"pref:13", {"muni:13*"}}, {"agency:nenkin", {}}}, policy("juki-national.toml")});
        net.start({"pref:13", true, {pref}, {{"jlis:juki", {"jlis:*"}}, {"muni:131016", {}}}, policy("juki-prefecture.toml")});
        net.start({"muni:131016", false, {cs, legacy}, {{"pref:13", {"*"}}}, policy("juki-municipality.toml")});

        toml::table callers;
        for (auto& [name, secret] : secrets) {
            auto file = tmp / ("caller-" + name + ".key");
            write_file(file, secret + "\n");
            ::chmod(file.c_str(), 0600);
            toml::table c{{"secret_file", file.string()}};
            if (name == "kyufu") {
                c.insert("purposes", toml::array{"juki-beppyo1:5"});
                c.insert("keys_per_request", 20);
                c.insert("keys_per_day", 40);
            } else if (name == "tekiyo") {
                c.insert("purposes", toml::array{"juki-beppyo1:*", "marketing"}); // J-LIS allows no "marketing"
            } else {
                c.insert("purposes", toml::array{"juki-beppyo1:5"});
                c.insert("keys_per_request", 4); // the batch goes to J-LIS in queries of at most 4 keys
                c.insert("batch_dir", (tmp / "batch").string());
            }
            callers.insert(name, c);
        }
        PluginConfig gateway;
        gateway.name = "gateway";
        gateway.path = plugin_path("adapters/agency-gateway", "agency_gateway");
        gateway.settings = toml::table{{"listen", "127.0.0.1:" + std::to_string(port)},
                                       {"store", (tmp / "gateway.db").string()},
                                       {"max_body_bytes", 8192},
                                       {"batch_poll_ms", 50},
                                       {"callers", callers}};
        agency_spec = {"agency:nenkin", false, {gateway}, {{"jlis:juki", {"jlis:*"}}}, policy("juki-agency.toml")};
        net.start(agency_spec);
    }
    NodeSpec agency_spec;

    Staff staff(const std::string& caller) { return Staff{port, caller, secrets[caller]}; }

    // 住民票コード -> 個人番号 at J-LIS, once all 30 residents are there.
    std::map<std::string, std::string> national() {
        std::map<std::string, std::string> out;
        for (int i = 0; i < 600 && out.size() < 30; ++i) {
            out.clear();
            for (auto& row : backend.rows("jlis", "SELECT code, my_number FROM residents")) out[row[0]] = row[1];
            if (out.size() < 30) std::this_thread::sleep_for(100ms);
        }
        return out;
    }
};

json keys_of(const std::vector<std::string>& codes) {
    json k = json::array();
    for (auto& c : codes) k.push_back({{"residentCode", c}});
    return k;
}

// Each test on both store backends (every tier's juki store in SQLite, or in PostgreSQL).
class JukiAgencyGateway : public ::testing::TestWithParam<std::string> {};

} // namespace

TEST_P(JukiAgencyGateway, AllowedQueryIsAnsweredByJlis) {
    AgencyNet t(GetParam());
    auto file = t.national();
    ASSERT_EQ(file.size(), 30u);
    auto kyufu = t.staff("kyufu");
    json keys = keys_of({resident(0), resident(1), "13101999999"});
    keys.push_back({{"myNumber", file[resident(7)]}}); // another condition: its own query, merged back
    auto [status, body] = kyufu.query(json{{"purpose", "juki-beppyo1:5"}, {"keys", keys}, {"operatorId", "staff-12"}});
    ASSERT_EQ(status, 200) << body;
    EXPECT_EQ(body["purpose"], "juki-beppyo1:5");
    auto& r = body["results"];
    ASSERT_EQ(r.size(), 4u) << body;
    EXPECT_EQ(r[0]["status"], "found");
    EXPECT_EQ(r[0]["person"]["residentCode"], resident(0));
    EXPECT_FALSE(r[0]["person"]["name"]["kanji"].get<std::string>().empty());
    EXPECT_FALSE(r[0]["person"].contains("myNumber")) << "別表第一 affairs get no 個人番号";
    EXPECT_EQ(r[1]["person"]["residentCode"], resident(1));
    EXPECT_EQ(r[2]["status"], "notFound");
    EXPECT_EQ(r[3]["status"], "found");
    EXPECT_EQ(r[3]["person"]["residentCode"], resident(7));
    // 4情報: the name with date of birth and sex, as J-LIS holds them.
    auto p = r[0]["person"];
    auto [s2, by_name] = kyufu.query(json{{"purpose", "juki-beppyo1:5"},
                                          {"keys", json::array({json{{"name", p["name"]["kanji"]},
                                                                     {"dateOfBirth", p["dateOfBirth"]},
                                                                     {"sex", p["sex"]}}})}});
    ASSERT_EQ(s2, 200) << by_name;
    bool found = false;
    for (auto& x : by_name["results"]) found |= x["status"] == "found" || x["status"] == "ambiguous";
    EXPECT_TRUE(found) << by_name;
}

TEST_P(JukiAgencyGateway, RefusedQueriesGetTheRightStatusAndError) {
    AgencyNet t(GetParam());
    ASSERT_EQ(t.national().size(), 30u);
    auto kyufu = t.staff("kyufu");
    auto ok = [&](int n) { return json{{"purpose", "juki-beppyo1:5"}, {"keys", keys_of({resident(n)})}}; };
    auto expect = [](const std::pair<int, json>& got, int status, const std::string& rule, const std::string& field) {
        EXPECT_EQ(got.first, status) << got.second;
        EXPECT_EQ(got.second["error"]["rule"], rule) << got.second;
        EXPECT_EQ(got.second["error"]["field"], field) << got.second;
        EXPECT_FALSE(got.second["error"]["message"].get<std::string>().empty());
    };
    // No purpose; a purpose this caller may not use; one the gateway lets through but J-LIS's
    // policy refuses.
    expect(kyufu.query(json{{"keys", keys_of({resident(0)})}}), 400, "purpose.required", "purpose");
    expect(kyufu.query(json{{"purpose", "juki-beppyo1:9"}, {"keys", keys_of({resident(0)})}}), 403, "purpose.not_allowed", "purpose");
    auto refused = t.staff("tekiyo").query(json{{"purpose", "marketing"}, {"keys", keys_of({resident(0)})}});
    EXPECT_EQ(refused.first, 403) << refused.second;
    EXPECT_EQ(refused.second["error"]["rule"], "jlis.refused") << refused.second;
    // Authentication: tampered body, unknown caller, wrong key, stale clock, replay.
    expect(kyufu.query(ok(0).dump(), [](std::string& b) { b.replace(b.find("juki"), 4, "JUKI"); }), 401, "auth.signature",
           "X-Renkei-Signature");
    Staff stranger{t.port, "stranger", std::string(40, 'x')};
    expect(stranger.query(ok(0)), 401, "auth.caller", "X-Renkei-Caller");
    Staff wrong_key{t.port, "kyufu", std::string(40, 't')};
    expect(wrong_key.query(ok(0)), 401, "auth.signature", "X-Renkei-Signature");
    Staff late = kyufu;
    late.clock_offset_s = -3600;
    expect(late.query(ok(0)), 401, "auth.timestamp", "X-Renkei-Timestamp");
    {
        httplib::Headers h;
        auto first = kyufu.query(ok(1).dump(), nullptr, &h);
        EXPECT_EQ(first.first, 200) << first.second;
        httplib::Client c("127.0.0.1", t.port);
        auto again = c.Post("/v1/query", h, ok(1).dump(), "application/json");
        ASSERT_TRUE(again);
        EXPECT_EQ(again->status, 401);
        EXPECT_EQ(json::parse(again->body)["error"]["rule"], "auth.replay");
    }
    // Bad bodies.
    expect(kyufu.query(std::string("purpose=juki-beppyo1:5")), 400, "http.not_json", "body");
    {
        httplib::Client c("127.0.0.1", t.port);
        std::string big = json{{"purpose", "juki-beppyo1:5"}, {"keys", keys_of({resident(0)})}, {"pad", std::string(10000, 'x')}}.dump();
        auto r = c.Post("/v1/query", kyufu.sign("POST", "/v1/query", big), big, "application/json");
        ASSERT_TRUE(r);
        EXPECT_EQ(r->status, 413);
        EXPECT_EQ(json::parse(r->body)["error"]["rule"], "http.body_too_large");
    }
    json bad_number{{"purpose", "juki-beppyo1:5"}, {"keys", json::array({json{{"myNumber", "123456789012"}}})}};
    expect(kyufu.query(bad_number), 422, "my_number.check_digit", "keys[0].myNumber");
    json impossible{{"purpose", "juki-beppyo1:5"},
                    {"keys", json::array({json{{"name", "佐藤　太郎"}, {"dateOfBirth", "1990-02-30"}, {"sex", "male"}}})}};
    expect(kyufu.query(impossible), 422, "date.day", "keys[0].dateOfBirth");
    json name_only{{"purpose", "juki-beppyo1:5"}, {"keys", json::array({json{{"name", "佐藤　太郎"}}})}};
    expect(kyufu.query(name_only), 422, "query.conditions", "keys[0]");
    // Quotas: 20 keys per request, 40 keys per day (1 used so far).
    std::vector<std::string> many;
    for (int i = 0; i < 21; ++i) many.push_back(resident(i % 30));
    auto over = kyufu.query(json{{"purpose", "juki-beppyo1:5"}, {"keys", keys_of(many)}});
    expect(over, 429, "quota.keys_per_request", "keys");
    EXPECT_EQ(over.second["error"]["quota"], "keys_per_request");
    EXPECT_EQ(over.second["error"]["limit"], 20);
    many.pop_back();
    auto twenty = kyufu.query(json{{"purpose", "juki-beppyo1:5"}, {"keys", keys_of(many)}});
    ASSERT_EQ(twenty.first, 200) << twenty.second;
    EXPECT_EQ(twenty.second["results"].size(), 20u);
    auto day = kyufu.query(json{{"purpose", "juki-beppyo1:5"}, {"keys", keys_of(many)}});
    expect(day, 429, "quota.keys_per_day", "keys");
    EXPECT_EQ(day.second["error"]["quota"], "keys_per_day");
    EXPECT_EQ(day.second["error"]["limit"], 40);
    EXPECT_EQ(day.second["error"]["used"], 21);
    // What was accepted before still counts, and another caller has its own quota.
    auto other = t.staff("tekiyo").query(ok(3));
    EXPECT_EQ(other.first, 200) << other.second;

    httplib::Client c("127.0.0.1", t.port);
    auto m = c.Get("/metrics");
    ASSERT_TRUE(m);
    EXPECT_NE(m->body.find("renkei_agency_requests_total{caller=\"kyufu\",outcome=\"quota.keys_per_day\"} 1"), std::string::npos)
        << m->body;
}

TEST_P(JukiAgencyGateway, BatchFolderRoundTrip) {
    AgencyNet t(GetParam());
    auto file = t.national();
    ASSERT_EQ(file.size(), 30u);
    auto batch = t.tmp / "batch";
    // Keys: ten 住民票コード, a 個人番号, one unknown code, a line with a bad check digit.
    std::string text = "#purpose juki-beppyo1:5\n#operator nightly\n# comment lines are skipped\n";
    for (int i = 0; i < 10; ++i) text += resident(i) + "\n";
    text += file[resident(20)] + "\r\n";
    text += "13101999999\n\n";
    text += "123456789012\n";
    write_file(batch / "inbox" / ".q1.txt.part", text);
    std::filesystem::rename(batch / "inbox" / ".q1.txt.part", batch / "inbox" / "q1.txt"); // as a staff system delivers it
    write_file(batch / "inbox" / "q2.txt", resident(0) + "\n"); // no purpose

    auto answers = batch / "answers" / "q1.txt.answers.jsonl";
    for (int i = 0; i < 600 && !(std::filesystem::exists(answers) && std::filesystem::exists(batch / "failed" / "q2.txt")); ++i)
        std::this_thread::sleep_for(100ms);
    ASSERT_TRUE(std::filesystem::exists(answers));
    EXPECT_TRUE(std::filesystem::exists(batch / "processed" / "q1.txt"));
    EXPECT_FALSE(std::filesystem::exists(batch / "inbox" / "q1.txt"));
    std::vector<json> lines;
    std::istringstream in(read_file(answers));
    for (std::string l; std::getline(in, l);) lines.push_back(json::parse(l));
    ASSERT_EQ(lines.size(), 14u) << read_file(answers);
    for (int i = 0; i < 10; ++i) {
        EXPECT_EQ(lines[i]["line"], 4 + i);
        EXPECT_EQ(lines[i]["status"], "found") << lines[i];
        EXPECT_EQ(lines[i]["person"]["residentCode"], resident(i));
    }
    EXPECT_EQ(lines[10]["key"]["myNumber"], file[resident(20)]);
    EXPECT_EQ(lines[10]["person"]["residentCode"], resident(20));
    EXPECT_EQ(lines[11]["status"], "notFound");
    EXPECT_EQ(lines[12]["line"], 17);
    EXPECT_EQ(lines[12]["error"]["rule"], "my_number.check_digit");
    EXPECT_EQ(lines[12]["error"]["field"], "line 17.myNumber");
    auto& summary = lines[13]["summary"];
    EXPECT_EQ(summary["keys"], 13);
    EXPECT_EQ(summary["found"], 11);
    EXPECT_EQ(summary["notFound"], 1);
    EXPECT_EQ(summary["refusedLines"], 1);

    ASSERT_TRUE(std::filesystem::exists(batch / "failed" / "q2.txt.error.json"));
    auto error = json::parse(read_file(batch / "failed" / "q2.txt.error.json"));
    EXPECT_EQ(error["error"]["rule"], "purpose.required");

    httplib::Client c("127.0.0.1", t.port);
    auto m = c.Get("/metrics");
    ASSERT_TRUE(m);
    EXPECT_NE(m->body.find("renkei_agency_batch_keys_done 12"), std::string::npos) << m->body;
    EXPECT_NE(m->body.find("renkei_agency_batch_keys_total 12"), std::string::npos) << m->body;
    EXPECT_NE(m->body.find("renkei_agency_batch_files_total{outcome=\"processed\"} 1"), std::string::npos) << m->body;
    EXPECT_NE(m->body.find("renkei_agency_batch_files_total{outcome=\"failed\"} 1"), std::string::npos) << m->body;
}

// The agency's host stops in the middle of a long batch file; after the restart the gateway
// resumes from the chunks it had answered (kept in its store) instead of asking J-LIS again: every
// key is provided once (the one chunk in flight at the stop may be asked twice) and the file is
// charged to the quota once.
TEST_P(JukiAgencyGateway, BatchInterruptedByAStopResumesWithoutAskingJlisAgain) {
    AgencyNet t(GetParam());
    ASSERT_EQ(t.national().size(), 30u);
    auto batch = t.tmp / "batch";
    const int n = 400, chunk = 4; // the batch caller's keys_per_request
    std::string text = "#purpose juki-beppyo1:5\n";
    for (int i = 0; i < n; ++i) text += resident(i % 30) + "\n";
    write_file(batch / "inbox" / ".long.txt.part", text);
    std::filesystem::rename(batch / "inbox" / ".long.txt.part", batch / "inbox" / "long.txt");
    auto provisions = [&] {
        auto rows = t.backend.rows("jlis", "SELECT COUNT(*) FROM provisions WHERE recipient = 'agency:nenkin'");
        return rows.empty() ? int64_t{0} : std::stoll(rows[0][0]);
    };
    int64_t seen = 0;
    for (int i = 0; i < 12000 && (seen = provisions()) < 40; ++i) std::this_thread::sleep_for(5ms);
    ASSERT_GE(seen, 40);
    t.net.remove("agency:nenkin");
    int64_t at_stop = provisions();
    ASSERT_LT(at_stop, n) << "the host stopped after the whole file; the restart proves less";
    ASSERT_TRUE(std::filesystem::exists(batch / "inbox" / "long.txt")) << "an interrupted file stays in the inbox";

    t.net.start(t.agency_spec);
    auto answers = batch / "answers" / "long.txt.answers.jsonl";
    for (int i = 0; i < 1200 && !std::filesystem::exists(answers); ++i) std::this_thread::sleep_for(100ms);
    ASSERT_TRUE(std::filesystem::exists(answers));
    std::vector<json> lines;
    std::istringstream in(read_file(answers));
    for (std::string l; std::getline(in, l);) lines.push_back(json::parse(l));
    ASSERT_EQ(lines.size(), static_cast<size_t>(n) + 1);
    for (int i = 0; i < n; ++i) {
        EXPECT_EQ(lines[i]["status"], "found") << lines[i];
        EXPECT_EQ(lines[i]["person"]["residentCode"], resident(i % 30)) << i;
    }
    auto& summary = lines[n]["summary"];
    EXPECT_GE(summary.value("answeredBeforeARestart", int64_t{0}), at_stop - chunk) << summary;
    auto total = provisions();
    EXPECT_GE(total, n);
    EXPECT_LE(total, n + chunk) << "keys answered before the stop were asked again";
    auto usage = JukiBackend::sqlite_rows(t.tmp / "gateway.db", "SELECT requests, keys FROM usage WHERE caller = 'batch'");
    ASSERT_EQ(usage.size(), 1u);
    EXPECT_EQ(usage[0][0], "1");
    EXPECT_EQ(usage[0][1], std::to_string(n));
    EXPECT_TRUE(JukiBackend::sqlite_rows(t.tmp / "gateway.db", "SELECT * FROM batch_chunks").empty())
        << "kept answers are dropped once the answers file is written";
}

INSTANTIATE_TEST_SUITE_P(Backends, JukiAgencyGateway, ::testing::Values("sqlite", "postgresql"),
                         [](const auto& info) { return camel(info.param); });
