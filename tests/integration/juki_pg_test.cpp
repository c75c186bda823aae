// juki with J-LIS's store on PostgreSQL (the throw-away cluster of ctest's juki_pg fixture), across
// real hosts on loopback: a municipality's CS and its prefecture keep SQLite files, J-LIS keeps its
// 機構保存本人確認情報ファイル in a PostgreSQL schema. The update chain reconciles at every tier, a
// 住民票コード変更 moves the record, an agency's batch query is answered from PostgreSQL through
// the reader pool, and what J-LIS recorded is read back from the database.
#include "collector.hpp"
#include "juki_support.hpp"
#include "network.hpp"
#include "pg_test.hpp"

#include <identity_store.hpp>
#include <pg_store.hpp>
#include <juki.capnp.h>
#include <renkei/juki/resident.hpp>
#include <renkei/sdk.hpp>
#include <renkei/validate.hpp>

#include <gtest/gtest.h>

using namespace renkei;
using namespace renkei::test;
using namespace std::chrono_literals;

namespace {

std::string code_of(int n) {
    char b[16];
    std::snprintf(b, sizeof b, "%011d", 50000000 + n);
    return b;
}

juki::ResidentFields person(int n) {
    juki::ResidentFields p;
    p.code = code_of(n);
    p.kanji = "基盤　" + std::to_string(n);
    p.kana = "キバン";
    p.day = 1 + n % 28;
    p.municipality = "131016";
    p.address = "東京都千代田区霞が関二丁目1番";
    return p;
}

struct PgJukiNet {
    TempDir tmp;
    PgSchema schema{"jlis"};
    PgSchema numbers_schema{"jlis_numbers"};
    Network net{tmp};

    PluginConfig juki(const std::string& node, const std::string& role) {
        PluginConfig p;
        p.name = "juki";
        p.path = plugin_path("plugins/juki", "juki");
        p.settings.insert("role", role);
        if (role == "national") {
            p.settings.insert("store_backend", "postgresql");
            p.settings.insert("store_dsn", pg_dsn());
            p.settings.insert("store_schema", schema.name());
            p.settings.insert("query_threads", "3");
            p.settings.insert("number_schema", numbers_schema.name()); // the registry on PostgreSQL too
            p.settings.insert("number_secret_file", (tmp / "jlis-secret").string());
            p.settings.insert("my_number_affairs", "bango-9:*");
        } else {
            p.settings.insert("store", (tmp / ("store-" + Network::safe(node)) / "juki.db").string());
        }
        if (role == "cs") {
            p.settings.insert("municipality", "131016");
            p.settings.insert("prefecture", "pref:13");
        }
        return p;
    }

    PgJukiNet() {
        write_file(tmp / "jlis-secret", std::string(48, 'k') + "J-LIS number secret for tests");
        net.start({"jlis:juki", true, {juki("jlis:juki", "national")}, {{"pref:13", {"muni:13*"}}, {"agency:nenkin", {}}},
                   policy("juki-national.toml")});
        net.start({"pref:13", true, {juki("pref:13", "pref")}, {{"jlis:juki", {"jlis:*"}}, {"muni:131016", {}}},
                   policy("juki-prefecture.toml")});
        net.start({"muni:131016", true, {juki("muni:131016", "cs")}, {{"pref:13", {"pref:*", "jlis:*"}}},
                   policy("juki-municipality.toml")});
        net.start({"agency:nenkin", false, {}, {{"jlis:juki", {"jlis:*"}}}});
    }
    // J-LIS's store and registry as an operator's tool would open them: the same schemas on the same server.
    std::unique_ptr<juki::Store> jlis_store() {
        return std::make_unique<juki::PgIdentityStore>(pg_dsn(), schema.name());
    }
    std::unique_ptr<juki::Numbers> jlis_numbers() {
        return std::make_unique<juki::PgNumberRegistry>(pg_dsn(), numbers_schema.name(), std::vector<uint8_t>(32, 'x'));
    }
};

// The municipality's 住民記録システム: asks for numbers, notifies its CS, collects the answers.
struct Legacy {
    Host& host;
    Collector c{"legacy", {"juki.UpdateResult", "juki.IdentityUpdate.Fault", "juki.NumberAssigned",
                           "juki.NumberRequest.Fault", "juki.ChainStatus"}};
    int batches = 0;
    explicit Legacy(PgJukiNet& t) : host(t.net["muni:131016"]) { host.add_endpoint(c.endpoint()); }

    Received wait(const std::string& id) {
        for (int i = 0; i < 600; ++i) {
            for (auto& r : c.all())
                if (r.correlation == id) return r;
            std::this_thread::sleep_for(50ms);
        }
        return {};
    }
    void number_for(juki::ResidentFields& p) {
        capnp::MallocMessageBuilder mb;
        mb.initRoot<juki::NumberRequest>().setResidentCode(p.code);
        auto got = wait(submit_new(host, c.name(), "juki.NumberRequest", "jlis:juki", flat(mb), "bango-8"));
        ASSERT_EQ(got.type, "juki.NumberAssigned") << got.fault_message;
        p.my_number = Parsed<juki::NumberAssigned>(got.payload).get().getMyNumber();
    }
    // Notifies the CS and returns the count lists of the three tiers by who recorded them.
    std::map<std::string, Received> notify(const std::vector<juki::ResidentFields>& people, juki::ChangeReason reason,
                                           const std::string& previous_code = {}) {
        capnp::MallocMessageBuilder mb;
        auto u = mb.initRoot<juki::IdentityUpdate>();
        std::string batch = "pg-b" + std::to_string(++batches);
        u.setBatchId(batch);
        u.setMunicipality("131016");
        auto list = u.initRecords(static_cast<unsigned>(people.size()));
        for (size_t i = 0; i < people.size(); ++i) {
            juki::fill_record(list[i], people[i], reason);
            if (!previous_code.empty()) list[i].setPreviousResidentCode(previous_code);
        }
        submit_new(host, c.name(), "juki.IdentityUpdate", "muni:131016", flat(mb), "juki-30-6");
        std::map<std::string, Received> out;
        for (int i = 0; i < 600 && out.size() < 3; ++i) {
            for (auto& r : c.all()) {
                if (r.type != "juki.UpdateResult") continue;
                Parsed<juki::UpdateCountList> l(r.payload);
                if (l.get().getBatchId() == batch) out[l.get().getRecordedBy()] = r;
            }
            if (out.size() < 3) std::this_thread::sleep_for(50ms);
        }
        return out;
    }
    std::vector<std::string> alarms() {
        capnp::MallocMessageBuilder mb;
        mb.initRoot<juki::StatusRequest>();
        auto got = wait(submit_new(host, c.name(), "juki.StatusRequest", "muni:131016", flat(mb), "ops"));
        if (got.type != "juki.ChainStatus") return {"no status: " + got.type + " " + got.fault_message};
        std::vector<std::string> out;
        Parsed<juki::ChainStatus> status(got.payload);
        for (auto a : status.get().getAlarms()) out.emplace_back(a);
        return out;
    }
};

void expect_all_recorded(std::map<std::string, Received> res, uint32_t n) {
    ASSERT_EQ(res.size(), 3u) << "answers from the CS, the prefecture and J-LIS";
    for (auto who : {"muni:131016", "pref:13", "jlis:juki"}) {
        ASSERT_TRUE(res.count(who)) << who;
        Parsed<juki::UpdateCountList> l(res[who].payload);
        EXPECT_EQ(l.get().getReceived(), n) << who;
        EXPECT_EQ(l.get().getRecorded(), n) << who;
        for (auto r : l.get().getRejected()) ADD_FAILURE() << who << " refused: " << r.getMessage().cStr();
    }
}

// A valid 個人番号 no one holds (check digit right; J-LIS never issued it).
std::string unknown_number(int n) {
    char b[16];
    std::snprintf(b, sizeof b, "%011d", 90000000 + n);
    return std::string(b) + char('0' + validate::compute_my_number_check_digit(b));
}

} // namespace

TEST(JukiPg, TheChainReconcilesWithJlisOnPostgresqlAndAgencyBatchesAreAnsweredFromIt) {
    PgJukiNet t;
    Legacy cs(t);
    std::vector<juki::ResidentFields> people;
    for (int i = 0; i < 6; ++i) {
        people.push_back(person(i));
        cs.number_for(people.back());
    }
    auto res = cs.notify(people, juki::ChangeReason::BIRTH);
    expect_all_recorded(res, 6);
    EXPECT_TRUE(cs.alarms().empty());
    {
        auto jlis = t.jlis_store();
        EXPECT_EQ(jlis->count(), 6u);
        auto r = jlis->get(people[3].code);
        ASSERT_TRUE(r);
        EXPECT_EQ(r->my_number, people[3].my_number);
        juki::RecordReader rec(r->record);
        EXPECT_EQ(std::string(rec.get().getPerson().getName().getKanji()), people[3].kanji);
    }

    // A 転居 (a new version: the old one joins J-LIS's history in PostgreSQL) and a 住民票コード変更.
    auto moved = people[0];
    moved.address = "東京都千代田区霞が関三丁目2番";
    expect_all_recorded(cs.notify({moved}, juki::ChangeReason::MOVE_WITHIN), 1);
    auto renumbered = people[1];
    renumbered.code = code_of(100);
    expect_all_recorded(cs.notify({renumbered}, juki::ChangeReason::RESIDENT_CODE_CHANGE, people[1].code), 1);
    {
        auto jlis = t.jlis_store();
        EXPECT_EQ(jlis->count(), 6u);
        EXPECT_FALSE(jlis->get(people[1].code));
        ASSERT_TRUE(jlis->get(renumbered.code));
        EXPECT_EQ(jlis->get(renumbered.code)->my_number, people[1].my_number);
        EXPECT_EQ(jlis->scalar("SELECT count(*) FROM history"), 2); // the 転居's old version, the old code's
        EXPECT_EQ(jlis->scalar("SELECT count(*) FROM code_links"), 1);
        juki::RecordReader rec(jlis->get(moved.code)->record);
        EXPECT_EQ(std::string(rec.get().getPerson().getAddress().getText()), moved.address);
        // The number registry (PostgreSQL too) followed the code change.
        auto numbers = t.jlis_numbers();
        EXPECT_EQ(numbers->current(renumbered.code), people[1].my_number);
        EXPECT_FALSE(numbers->current(people[1].code));
        EXPECT_EQ(numbers->holder(people[3].my_number), people[3].code);
    }
    EXPECT_TRUE(cs.alarms().empty());

    // An agency's batch of 300 keys by 個人番号 (read in parallel by J-LIS's PostgreSQL readers).
    Collector agency("agency", {"juki.IdentityAnswer", "juki.IdentityQuery.Fault"});
    auto& from = t.net["agency:nenkin"];
    from.add_endpoint(agency.endpoint());
    const size_t n = 300;
    capnp::MallocMessageBuilder payload;
    auto keys = payload.initRoot<juki::IdentityQuery>().initKeys(n);
    for (size_t i = 0; i < n; ++i)
        keys[i].setMyNumber(i % 50 < people.size() ? people[i % 50].my_number : unknown_number(static_cast<int>(i)));
    capnp::MallocMessageBuilder mb;
    auto e = mb.initRoot<schema::Envelope>();
    auto id = new_message_id();
    e.setId(kj::ArrayPtr<const kj::byte>(id.data(), id.size()));
    e.setType("juki.IdentityQuery");
    e.setTo("jlis:juki");
    e.setPurpose("bango-9:12");
    e.setOperatorId("agency-operator-7");
    auto bytes = flat(payload);
    e.setPayload(kj::ArrayPtr<const kj::byte>(reinterpret_cast<const kj::byte*>(bytes.data()), bytes.size()));
    e.initConditions(1).set(0, "myNumber");
    from.submit(agency.name(), capnp::messageToFlatArray(mb).asBytes());
    auto got = agency.wait_for(1, 60s);
    ASSERT_EQ(got.size(), 1u);
    ASSERT_EQ(got[0].type, "juki.IdentityAnswer") << got[0].fault_message;
    Parsed<juki::IdentityAnswer> answer(got[0].payload);
    auto results = answer.get().getResults();
    ASSERT_EQ(results.size(), n);
    size_t found = 0;
    for (size_t i = 0; i < n; ++i) {
        bool known = i % 50 < people.size();
        auto want = known ? juki::QueryResult::Status::FOUND : juki::QueryResult::Status::NOT_FOUND;
        EXPECT_EQ(results[i].getStatus(), want) << i;
        if (!known) continue;
        ++found;
        auto expect_code = i % 50 == 1 ? renumbered.code : people[i % 50].code;
        EXPECT_EQ(std::string(results[i].getPerson().getResidentCode()), expect_code) << i;
        EXPECT_EQ(std::string(results[i].getPerson().getMyNumber()), people[i % 50].my_number) << "a 番号法 affair";
    }
    EXPECT_EQ(found, 36u);
    // Every key's provision is recorded in J-LIS's PostgreSQL store for 開示.
    auto jlis = t.jlis_store();
    EXPECT_EQ(jlis->provisions_of(people[2].code).size(), 6u);
    EXPECT_EQ(jlis->scalar("SELECT count(*) FROM provisions WHERE outcome = 'notFound'"), static_cast<int64_t>(n - 36));
}

TEST(JukiPg, AStoreSettingThatNamesNoDatabaseStopsTheStartNamingTheSetting) {
    TempDir tmp;
    Network net{tmp};
    auto start = [&](const std::string& id, std::map<std::string, std::string> settings) -> std::string {
        PluginConfig p;
        p.name = "juki";
        p.path = plugin_path("plugins/juki", "juki");
        p.settings.insert("role", "pref");
        for (auto& [k, v] : settings) p.settings.insert(k, v);
        try {
            net.start({id, false, {p}, {}});
            return "";
        } catch (const std::exception& e) {
            return e.what();
        }
    };
    EXPECT_NE(start("pref:01", {{"store_backend", "postgresql"}}).find("settings.store_dsn"), std::string::npos);
    EXPECT_NE(start("pref:02", {{"store_backend", "oracle"}, {"store", "x.db"}}).find("settings.store_backend"),
              std::string::npos);
    EXPECT_NE(start("pref:03", {{"store", pg_dsn()}, {"store_schema", "Bad-Name"}}).find("settings.store_schema"),
              std::string::npos);
    // A server that is not there: the start fails and says so, without the password.
    auto why = start("pref:04", {{"store", "postgresql://postgres:hunter2-secret@127.0.0.1:1/postgres?connect_timeout=5"}});
    EXPECT_NE(why.find("cannot connect"), std::string::npos) << why;
    EXPECT_EQ(why.find("hunter2"), std::string::npos) << why;
    // J-LIS's registry may not share the store's schema (each keeps its own schema_version).
    write_file(tmp / "secret", std::string(40, 's'));
    {
        PluginConfig p;
        p.name = "juki";
        p.path = plugin_path("plugins/juki", "juki");
        p.settings.insert("role", "national");
        p.settings.insert("store", pg_dsn());
        p.settings.insert("store_schema", "same_schema");
        p.settings.insert("number_schema", "same_schema");
        p.settings.insert("number_secret_file", (tmp / "secret").string());
        std::string why;
        try {
            net.start({"jlis:juki", false, {p}, {}});
        } catch (const std::exception& e) {
            why = e.what();
        }
        EXPECT_NE(why.find("settings.number_schema"), std::string::npos) << why;
        pg_exec("DROP SCHEMA IF EXISTS same_schema CASCADE");
    }
    // store = "postgresql://..." alone is enough.
    PgSchema schema("uri");
    EXPECT_EQ(start("pref:05", {{"store", pg_dsn()}, {"store_schema", schema.name()}}), "");
    juki::PgIdentityStore s(pg_dsn(), schema.name());
    EXPECT_EQ(s.schema_version(), juki::PgIdentityStore::kSchemaVersion);
}
