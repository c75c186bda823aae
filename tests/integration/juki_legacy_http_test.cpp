// adapters/legacy-http drives real CSs over HTTP on loopback: updates reach J-LIS through the
// prefecture and every tier's 更新件数リスト comes back by polling; a 転入通知 from one CS to the
// other is polled and acknowledged; a 広域交付 request is answered through the API; the feed is
// pushed with retry; bad input gets clear errors and loses nothing already accepted.
#include "juki_backend.hpp"
#include "juki_support.hpp"
#include "network.hpp"

#include <httplib.h>
#include <nlohmann/json.hpp>
#include <sys/stat.h>

#include <gtest/gtest.h>

#include <mutex>

using namespace renkei;
using namespace renkei::test;
using namespace std::chrono_literals;
using json = nlohmann::json;

namespace {

const std::string kA = "131016", kB = "131024"; // two municipalities of Tokyo with their own CSs
const std::string kToken = "legacy-http test token 0123456789";

// A municipal system's HTTP client.
struct Api {
    httplib::Client c;
    explicit Api(int port) : c("127.0.0.1", port) {
        c.set_read_timeout(60);
        c.set_default_headers({{"Authorization", "Bearer " + kToken}});
    }
    std::pair<int, json> post(const std::string& path, const std::string& body) {
        auto r = c.Post(path.c_str(), body, "application/json");
        if (!r) return {-1, json()};
        return {r->status, json::parse(r->body, nullptr, false)};
    }
    std::pair<int, json> post(const std::string& path, const json& body) { return post(path, body.dump()); }
    std::pair<int, json> get(const std::string& path) {
        auto r = c.Get(path.c_str());
        if (!r) return {-1, json()};
        return {r->status, json::parse(r->body, nullptr, false)};
    }
    json feed() {
        auto [status, body] = get("/v1/feed?after=0&limit=1000");
        EXPECT_EQ(status, 200) << body;
        return body.is_object() ? body["items"] : json::array();
    }
    // Polls until some items satisfy `pred` `n` times (generous: the machine may be loaded).
    json wait(const std::function<bool(const json&)>& pred, size_t n = 1) {
        json got = json::array();
        for (int i = 0; i < 600; ++i) {
            got = json::array();
            for (auto& item : feed())
                if (pred(item)) got.push_back(item);
            if (got.size() >= n) return got;
            std::this_thread::sleep_for(100ms);
        }
        ADD_FAILURE() << "waited in vain for " << n << " feed items; have " << got.dump();
        return got;
    }
    int ack(const json& items) {
        json seqs = json::array();
        for (auto& i : items) seqs.push_back(i["seq"]);
        auto [status, body] = post("/v1/feed/ack", json{{"seqs", seqs}});
        EXPECT_EQ(status, 200) << body;
        return body.value("acknowledged", -1);
    }
    // 個人番号 for these 住民票コード, from J-LIS through the feed (acknowledged once read).
    std::map<std::string, std::string> numbers(const std::vector<std::string>& codes) {
        auto [status, body] = post("/v1/number-requests", json{{"residentCodes", codes}});
        EXPECT_EQ(status, 202) << body;
        auto items = wait(
            [&](const json& i) {
                return i["kind"] == "numberAssigned" &&
                       std::find(codes.begin(), codes.end(), i["residentCode"].get<std::string>()) != codes.end();
            },
            codes.size());
        std::map<std::string, std::string> out;
        for (auto& i : items) out[i["residentCode"]] = i["myNumber"];
        EXPECT_EQ(ack(items), static_cast<int>(codes.size()));
        return out;
    }
    // Waits for the 更新件数リスト of `batch` from the CS, the prefecture and J-LIS.
    json results(const std::string& batch) {
        return wait([&](const json& i) { return i["kind"] == "updateResult" && i["batchId"] == batch; }, 3);
    }
};

json person(const std::string& code, const std::string& number, const std::string& muni, const std::string& given = "太郎") {
    return {{"name", {{"kanji", "山田　" + given}, {"kana", "ヤマダ　タロウ"}}},
            {"dateOfBirth", "1985-04-01"},
            {"sex", "male"},
            {"address", {{"text", "東京都内" + muni + "番地"}, {"localGovCode", muni}}},
            {"residentCode", code},
            {"myNumber", number}};
}

json item(const std::string& name, const std::string& value) { return json{{"name", name}, {"value", value}}; }

json record(const json& p, const std::string& reason, const json& extra = json::object()) {
    json r{{"person", p}, {"reason", reason}, {"changeDate", "2026-11-20"}, {"operatorId", "window-3"}};
    r.update(extra);
    return r;
}

std::string code_of(int n) {
    char b[16];
    std::snprintf(b, sizeof b, "%011d", 40000000 + n);
    return b;
}

// J-LIS, the Tokyo prefecture, and two CSs with a direct CS-to-CS link, each with juki (handing
// what it receives over) and legacy-http on a free loopback port.
struct LegacyNet {
    TempDir tmp;
    JukiBackend backend; // before the hosts: its schemas are dropped after they stop
    Network net{tmp};
    std::map<std::string, int> port;

    PluginConfig juki(const std::string& node, const std::string& role) {
        PluginConfig p;
        p.name = "juki";
        p.path = plugin_path("plugins/juki", "juki");
        p.settings.insert("role", role);
        backend.add_store(p.settings, Network::safe(node), tmp / ("juki-" + Network::safe(node) + ".db"));
        if (role == "national") p.settings.insert("number_secret_file", (tmp / "jlis-secret").string());
        if (role == "cs") {
            p.settings.insert("municipality", node.substr(5));
            p.settings.insert("prefecture", "pref:13");
            p.settings.insert("hand_over", true);
        }
        return p;
    }
    PluginConfig http(const std::string& muni, const std::function<void(toml::table&)>& tweak) {
        PluginConfig p;
        p.name = "legacy-http";
        p.path = plugin_path("adapters/legacy-http", "legacy_http");
        port[muni] = free_port();
        p.settings = toml::table{{"listen", "127.0.0.1:" + std::to_string(port[muni])},
                                 {"store", (tmp / ("legacy-http-" + muni + ".db")).string()},
                                 {"token_file", (tmp / "token").string()},
                                 {"max_body_bytes", 65536}};
        if (tweak) tweak(p.settings);
        return p;
    }

    explicit LegacyNet(const std::string& backend_name, const std::function<void(toml::table&)>& tweak_a = nullptr)
        : backend(backend_name) {
        write_file(tmp / "jlis-secret", std::string(48, 's'));
        write_file(tmp / "token", kToken + "\n");
        ::chmod((tmp / "token").c_str(), 0600);
        net.start({"jlis:juki", true, {juki("jlis:juki", "national")}, {{"pref:13", {"muni:13*"}}}, policy("juki-national.toml")});
        net.start({"pref:13", true, {juki("pref:13", "pref")}, {{"jlis:juki", {"jlis:*"}}, {"muni:" + kA, {}}, {"muni:" + kB, {}}},
                   policy("juki-prefecture.toml")});
        // B listens and A dials it: the tests' CS-to-CS traffic starts at A (a listener learns
        // how to reach a peer that dials it from the peer's first message).
        net.start({"muni:" + kB, true, {juki("muni:" + kB, "cs"), http(kB, nullptr)},
                   {{"pref:13", {"pref:*", "jlis:*"}}, {"muni:" + kA, {"muni:" + kA}}}, policy("juki-municipality.toml")});
        net.start({"muni:" + kA, true, {juki("muni:" + kA, "cs"), http(kA, tweak_a)},
                   {{"pref:13", {"pref:*", "jlis:*"}}, {"muni:" + kB, {"muni:" + kB}}}, policy("juki-municipality.toml")});
    }

    // J-LIS's file: 住民票コード -> "個人番号|removed|municipality".
    std::map<std::string, std::string> national() {
        std::map<std::string, std::string> out;
        for (auto& row : backend.rows("jlis_juki", "SELECT code, my_number, removed, municipality FROM residents"))
            out[row[0]] = row[1] + "|" + row[2] + "|" + row[3];
        return out;
    }
};

// Each test on both store backends (every tier's juki store in SQLite, or in PostgreSQL).
class JukiLegacyHttp : public ::testing::TestWithParam<std::string> {};

} // namespace

TEST_P(JukiLegacyHttp, UpdatesReachJlisAndEveryTiersResultComesBackByPolling) {
    LegacyNet t(GetParam());
    Api a(t.port[kA]);
    std::vector<std::string> codes{code_of(1), code_of(2), code_of(3)};
    auto numbers = a.numbers(codes);
    ASSERT_EQ(numbers.size(), 3u);

    json records = json::array();
    for (auto& c : codes) records.push_back(record(person(c, numbers[c], kA), "birth"));
    auto bad = person(code_of(4), numbers[codes[0]], kA);
    std::string n = numbers[codes[0]];
    n[11] = n[11] == '9' ? '0' : static_cast<char>(n[11] + 1); // a wrong check digit
    bad["myNumber"] = n;
    records.push_back(record(bad, "birth"));
    json batch{{"batchId", "A-1"}, {"records", records}};
    auto [status, answer] = a.post("/v1/updates", batch);
    ASSERT_EQ(status, 202) << answer;
    EXPECT_EQ(answer["batchId"], "A-1");
    EXPECT_EQ(answer["accepted"], 3);
    ASSERT_EQ(answer["rejected"].size(), 1u) << answer;
    EXPECT_EQ(answer["rejected"][0]["index"], 3);
    EXPECT_EQ(answer["rejected"][0]["field"], "records[3].person.myNumber");
    EXPECT_EQ(answer["rejected"][0]["rule"], "my_number.check_digit");

    // The same batch again (a municipal system retrying after a crash): the same answer, nothing
    // sent twice; the same id with other records: refused.
    auto [again, answer2] = a.post("/v1/updates", batch);
    EXPECT_EQ(again, 200) << answer2;
    EXPECT_EQ(answer2["duplicate"], true);
    EXPECT_EQ(answer2["accepted"], 3);
    json other = batch;
    other["records"].erase(3);
    auto [conflict, answer3] = a.post("/v1/updates", other);
    EXPECT_EQ(conflict, 409) << answer3;
    EXPECT_EQ(answer3["error"]["rule"], "batch.conflict");

    auto results = a.results("A-1");
    std::set<std::string> tiers;
    for (auto& r : results) {
        tiers.insert(r["recordedBy"]);
        EXPECT_EQ(r["received"], 3) << r;
        EXPECT_EQ(r["recorded"], 3) << r;
        EXPECT_TRUE(r["rejected"].empty()) << r;
    }
    EXPECT_EQ(tiers, (std::set<std::string>{"muni:" + kA, "pref:13", "jlis:juki"}));
    auto file = t.national();
    for (auto& c : codes) EXPECT_EQ(file[c], numbers[c] + "|0|" + kA) << c;
    EXPECT_EQ(file.count(code_of(4)), 0u) << "the refused record was never sent";

    auto [bs, status_body] = a.get("/v1/batches/A-1");
    EXPECT_EQ(bs, 200);
    EXPECT_EQ(status_body["results"].size(), 3u) << status_body;

    // Until acknowledged, every poll returns the results again (a crash of the municipal system
    // between poll and processing loses nothing); after, they are gone.
    EXPECT_EQ(a.results("A-1").size(), 3u);
    EXPECT_EQ(a.ack(results), 3);
    for (auto& item : a.feed()) EXPECT_NE(item["kind"], "updateResult") << item;
    // A cursor pages through the feed: nothing after the last seq.
    auto [fs, page] = a.get("/v1/feed?after=" + std::to_string(results.back()["seq"].get<int64_t>()));
    EXPECT_EQ(fs, 200);
    EXPECT_TRUE(page["items"].empty()) << page;
}

TEST_P(JukiLegacyHttp, BadInputGetsAClearErrorAndLosesNothingAccepted) {
    LegacyNet t(GetParam());
    Api a(t.port[kA]);
    auto numbers = a.numbers({code_of(10)});
    auto [s0, ok] = a.post("/v1/updates", json{{"batchId", "A-good"}, {"records", json::array({record(person(code_of(10), numbers[code_of(10)], kA), "birth")})}});
    ASSERT_EQ(s0, 202) << ok;

    auto [s1, not_json] = a.post("/v1/updates", std::string("{\"records\": [ {\"person\": "));
    EXPECT_EQ(s1, 400);
    EXPECT_EQ(not_json["error"]["rule"], "http.not_json") << not_json;
    auto [s2, too_large] = a.post("/v1/updates", json{{"records", json::array()}, {"pad", std::string(100000, 'x')}});
    EXPECT_EQ(s2, 413);
    EXPECT_EQ(too_large["error"]["rule"], "http.body_too_large") << too_large;
    EXPECT_EQ(too_large["error"]["field"], "body");

    auto p = [&](int n) { return person(code_of(n), numbers[code_of(10)], kA); };
    json unknown_muni = p(11);
    unknown_muni["address"]["localGovCode"] = "131032"; // a valid code, but not this municipality
    json bad_check = p(12);
    bad_check["address"]["localGovCode"] = "131017";    // wrong check digit
    json impossible = p(13);
    impossible["dateOfBirth"] = "2001-02-30";
    json short_code = p(14);
    short_code["residentCode"] = "1234";
    json typo = p(15);
    typo["nmae"] = "x";
    json records = json::array({record(unknown_muni, "birth"), record(bad_check, "birth"), record(impossible, "birth"),
                                record(short_code, "birth"), record(typo, "birth"), record(p(16), "reborn")});
    auto [s3, all_bad] = a.post("/v1/updates", json{{"records", records}});
    ASSERT_EQ(s3, 422) << all_bad;
    EXPECT_EQ(all_bad["error"]["rule"], "batch.nothing_valid");
    std::vector<std::pair<std::string, std::string>> want{
        {"records[0].person.address.localGovCode", "juki.municipality"},
        {"records[1].person.address.localGovCode", "local_gov_code.check_digit"},
        {"records[2].person.dateOfBirth", "date.day"},
        {"records[3].person.residentCode", "resident_code.length"},
        {"records[4].person.nmae", "json.unknown_field"},
        {"records[5].reason", "juki.reason"}};
    ASSERT_EQ(all_bad["rejected"].size(), want.size()) << all_bad;
    for (size_t i = 0; i < want.size(); ++i) {
        EXPECT_EQ(all_bad["rejected"][i]["index"], i);
        EXPECT_EQ(all_bad["rejected"][i]["field"], want[i].first);
        EXPECT_EQ(all_bad["rejected"][i]["rule"], want[i].second) << all_bad["rejected"][i];
        EXPECT_EQ(all_bad["rejected"][i]["message"].get<std::string>().rfind("records[" + std::to_string(i) + "]", 0), 0u);
    }
    auto [s4, bad_numbers] = a.post("/v1/number-requests", json{{"residentCodes", json::array({code_of(20), "12345678901x"})}});
    EXPECT_EQ(s4, 422);
    EXPECT_EQ(bad_numbers["error"]["field"], "residentCodes[1]") << bad_numbers;
    auto [s5, bad_copy] = a.post("/v1/copy-requests", json{{"residenceMunicipality", "999999"}, {"residentCode", code_of(1)},
                                                          {"name", "山田　太郎"}, {"dateOfBirth", "1985-04-01"},
                                                          {"identityDocument", "個人番号カード"}});
    EXPECT_EQ(s5, 422);
    EXPECT_EQ(bad_copy["error"]["rule"], "local_gov_code.prefecture") << bad_copy;
    auto [s6, bad_ack] = a.post("/v1/feed/ack", json{{"seqs", json::array({"one"})}});
    EXPECT_EQ(s6, 400);
    EXPECT_EQ(bad_ack["error"]["field"], "seqs[0]") << bad_ack;
    httplib::Client anonymous("127.0.0.1", t.port[kA]);
    auto r = anonymous.Get("/v1/feed");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 401);
    EXPECT_EQ(json::parse(r->body)["error"]["rule"], "auth.token");

    // What was accepted before the bad input went all the way.
    auto results = a.results("A-good");
    for (auto& res : results) EXPECT_EQ(res["recorded"], 1) << res;
    EXPECT_EQ(t.national()[code_of(10)], numbers[code_of(10)] + "|0|" + kA);
    for (int n = 11; n <= 16; ++n) EXPECT_EQ(t.national().count(code_of(n)), 0u);
}

TEST_P(JukiLegacyHttp, MoveInNoticeFromAnotherMunicipalityIsPolledAndAcknowledged) {
    LegacyNet t(GetParam());
    Api a(t.port[kA]), b(t.port[kB]);
    const std::string x = code_of(30);
    auto numbers = b.numbers({x});
    ASSERT_EQ(b.post("/v1/updates", json{{"batchId", "B-1"}, {"records", json::array({record(person(x, numbers[x], kB), "birth")})}}).first, 202);
    b.ack(b.results("B-1"));
    ASSERT_EQ(b.post("/v1/updates", json{{"batchId", "B-2"}, {"records", json::array({record(person(x, numbers[x], kB), "moveOut")})}}).first, 202);
    for (auto& r : b.results("B-2")) EXPECT_EQ(r["recorded"], 1) << r;
    // X moves in at A from B: A's CS sends the 転入通知 to B's CS, which hands it to B's system.
    auto [s, answer] = a.post("/v1/updates", json{{"batchId", "A-in"},
                                                  {"records", json::array({record(person(x, numbers[x], kA), "moveIn",
                                                                      {{"previousMunicipality", kB}})})}});
    ASSERT_EQ(s, 202) << answer;
    for (auto& r : a.results("A-in")) EXPECT_EQ(r["recorded"], 1) << r;
    EXPECT_EQ(t.national()[x], numbers[x] + "|0|" + kA);
    auto notices = b.wait([](const json& i) { return i["kind"] == "moveInNotice"; });
    ASSERT_EQ(notices.size(), 1u);
    auto& n = notices[0];
    EXPECT_EQ(n["from"], "muni:" + kA);
    EXPECT_EQ(n["purpose"], "juki-9-1");
    EXPECT_EQ(n["oldMunicipality"], kB);
    EXPECT_EQ(n["newMunicipality"], kA);
    EXPECT_EQ(n["moveInDate"], "2026-11-20");
    EXPECT_EQ(n["person"]["residentCode"], x);
    EXPECT_EQ(n["person"]["address"]["localGovCode"], kA);
    // Polled again until acknowledged; then gone. A's own system never sees it.
    EXPECT_EQ(b.wait([](const json& i) { return i["kind"] == "moveInNotice"; }).size(), 1u);
    EXPECT_EQ(b.ack(notices), 1);
    for (auto& item : b.feed()) EXPECT_NE(item["kind"], "moveInNotice");
    for (auto& item : a.feed()) EXPECT_NE(item["kind"], "moveInNotice");
}

TEST_P(JukiLegacyHttp, WideAreaCopyRequestIsAnsweredThroughTheApi) {
    LegacyNet t(GetParam());
    Api a(t.port[kA]), b(t.port[kB]);
    const std::string y = code_of(40);
    auto numbers = b.numbers({y});
    ASSERT_EQ(b.post("/v1/updates", json{{"batchId", "B-y"}, {"records", json::array({record(person(y, numbers[y], kB, "花子"), "birth")})}}).first, 202);
    b.ack(b.results("B-y"));

    // Y asks for a copy at A's window; A asks B, B's system reviews and answers, A polls the answer.
    auto [s, req] = a.post("/v1/copy-requests", json{{"residenceMunicipality", kB}, {"residentCode", y}, {"name", "山田　花子"},
                                                   {"dateOfBirth", "1985-04-01"}, {"identityDocument", "個人番号カード"}});
    ASSERT_EQ(s, 202) << req;
    std::string id = req["requestId"];
    auto asked = b.wait([&](const json& i) { return i["kind"] == "copyRequest" && i["requestId"] == id; });
    ASSERT_EQ(asked.size(), 1u);
    EXPECT_EQ(asked[0]["from"], "muni:" + kA);
    EXPECT_EQ(asked[0]["residentCode"], y);
    EXPECT_EQ(asked[0]["issuingMunicipality"], kA);
    EXPECT_EQ(asked[0]["identityDocument"], "個人番号カード");

    json with_number{{"issued", true}, {"person", person(y, numbers[y], kB, "花子")}, {"items", json::array({item("氏名", "山田　花子")})}};
    auto [s1, refused] = b.post("/v1/copy-requests/" + id + "/answer", with_number);
    EXPECT_EQ(s1, 422);
    EXPECT_EQ(refused["error"]["rule"], "copy.no_my_number") << refused;
    json answer{{"issued", true},
                {"items", json::array({item("氏名", "山田　花子"), item("出生の年月日", "1985-04-01"), item("男女の別", "女"),
                                       item("住所", "東京都内" + kB + "番地"), item("世帯主", "山田　太郎")})}};
    auto [s2, sent] = b.post("/v1/copy-requests/" + id + "/answer", answer);
    ASSERT_EQ(s2, 200) << sent;
    EXPECT_EQ(sent["sentTo"], "muni:" + kA);
    auto [s3, twice] = b.post("/v1/copy-requests/" + id + "/answer", answer);
    EXPECT_EQ(s3, 409);
    EXPECT_EQ(twice["error"]["rule"], "copy.answered");
    auto [s4, unknown] = b.post("/v1/copy-requests/" + std::string(32, 'a') + "/answer", answer);
    EXPECT_EQ(s4, 404);
    EXPECT_EQ(unknown["error"]["rule"], "copy.unknown_request");

    auto got = a.wait([&](const json& i) { return i["kind"] == "copyAnswer" && i["requestId"] == id; });
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0]["issued"], true);
    EXPECT_EQ(got[0]["from"], "muni:" + kB);
    ASSERT_EQ(got[0]["items"].size(), 5u);
    EXPECT_EQ(got[0]["items"][4]["value"], "山田　太郎") << "the 住民記録システム's own items (世帯) reach the issuing municipality";
    EXPECT_EQ(a.ack(got), 1);
    EXPECT_EQ(b.ack(asked), 1);
}

TEST_P(JukiLegacyHttp, FeedIsPushedWithRetryAndPollingStillWorks) {
    // The municipal system's push receiver: refuses the first two pushes, then takes them.
    httplib::Server receiver;
    std::mutex m;
    json pushed = json::array();
    int calls = 0;
    receiver.Post("/notices", [&](const httplib::Request& req, httplib::Response& res) {
        std::lock_guard lock(m);
        if (++calls <= 2) {
            res.status = 503;
            return;
        }
        auto body = json::parse(req.body);
        for (auto& i : body["items"]) pushed.push_back(i);
        res.status = 204;
    });
    int port = receiver.bind_to_any_port("127.0.0.1");
    std::thread serve([&] { receiver.listen_after_bind(); });
    struct Stop {
        httplib::Server& s;
        std::thread& t;
        ~Stop() {
            s.stop();
            t.join();
        }
    } stop{receiver, serve};
    {
        LegacyNet t(GetParam(), [&](toml::table& s) {
            s.insert("push_url", "http://127.0.0.1:" + std::to_string(port) + "/notices");
            s.insert("push_retry_ms", 50);
        });
        Api a(t.port[kA]);
        auto [status, body] = a.post("/v1/number-requests", json{{"residentCodes", json::array({code_of(50)})}});
        ASSERT_EQ(status, 202) << body;
        json got;
        for (int i = 0; i < 600; ++i) {
            {
                std::lock_guard lock(m);
                if (!pushed.empty()) {
                    got = pushed;
                    break;
                }
            }
            std::this_thread::sleep_for(100ms);
        }
        ASSERT_EQ(got.size(), 1u) << got;
        EXPECT_EQ(got[0]["kind"], "numberAssigned");
        EXPECT_EQ(got[0]["residentCode"], code_of(50));
        EXPECT_EQ(got[0]["myNumber"].get<std::string>().size(), 12u);
        {
            std::lock_guard lock(m);
            EXPECT_GE(calls, 3) << "two refusals, then delivered";
        }
        // A push that succeeded acknowledges: the feed no longer holds it.
        for (int i = 0; i < 100 && !a.feed().empty(); ++i) std::this_thread::sleep_for(50ms);
        EXPECT_TRUE(a.feed().empty());
    }
}

INSTANTIATE_TEST_SUITE_P(Backends, JukiLegacyHttp, ::testing::Values("sqlite", "postgresql"),
                         [](const auto& info) { return camel(info.param); });
