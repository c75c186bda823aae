// juki across real hosts on loopback: J-LIS, two prefectures, three municipalities' CSs, an agency
// and card management, each with its own keys, CURVE links and the example access policies.
#include "collector.hpp"
#include "juki_support.hpp"
#include "network.hpp"

#include <identity_store.hpp>
#include <sqlite3.h>
#include <juki.capnp.h>
#include <renkei/juki/resident.hpp>
#include <renkei/sdk.hpp>
#include <renkei/validate.hpp>

#include <gtest/gtest.h>

using namespace renkei;
using namespace renkei::test;
using namespace std::chrono_literals;

namespace {

// A resident as a municipality's 住民記録システム knows them.
using Person = juki::ResidentFields;

void fill(juki::IdentityRecord::Builder r, const Person& p, juki::ChangeReason reason) { juki::fill_record(r, p, reason); }

// A valid 住民票コード for test person n (10 digits + a digit; the validators check the form only).
std::string code_of(int n) {
    char b[16];
    std::snprintf(b, sizeof b, "%011d", 30000000 + n);
    return b;
}

struct JukiNet {
    TempDir tmp;
    Network net{tmp};

    PluginConfig juki(const std::string& node, const std::string& role) {
        PluginConfig p;
        p.name = "juki";
        p.path = plugin_path("plugins/juki", "juki");
        p.settings.insert("role", role);
        p.settings.insert("store", (tmp / ("store-" + Network::safe(node)) / "juki.db").string());
        if (role == "national") {
            p.settings.insert("number_secret_file", (tmp / "jlis-secret").string());
            p.settings.insert("my_number_affairs", "bango-9:*");
        }
        if (role == "cs") {
            p.settings.insert("municipality", node.substr(5));
            p.settings.insert("prefecture", node.substr(5, 2) == "13" ? "pref:13" : "pref:27");
        }
        return p;
    }
    std::filesystem::path store_of(const std::string& node) {
        return tmp / ("store-" + Network::safe(node)) / "juki.db";
    }

    JukiNet() {
        write_file(tmp / "jlis-secret", std::string(48, 'k') + "J-LIS number secret for tests");
        net.start({"jlis:juki", true, {juki("jlis:juki", "national")},
                   {{"pref:13", {"muni:13*"}}, {"pref:27", {"muni:27*"}}, {"agency:nenkin", {}}, {"jlis:card", {}}},
                   policy("juki-national.toml")});
        for (auto pref : {"pref:13", "pref:27"}) {
            std::map<std::string, std::vector<std::string>> peers{{"jlis:juki", {"jlis:*"}}};
            for (auto m : {"muni:131016", "muni:131024", "muni:271004"})
                if (std::string(m).substr(5, 2) == std::string(pref).substr(5)) peers[m] = {};
            net.start({pref, true, {juki(pref, "pref")}, peers, policy("juki-prefecture.toml")});
        }
        // 131016 and 271004 have a direct CS-to-CS link; 131024 reaches other municipalities only
        // through its prefecture (which the non-transit rule forbids for notices).
        net.start({"muni:131016", true, {juki("muni:131016", "cs")},
                   {{"pref:13", {"pref:*", "jlis:*"}}, {"muni:271004", {"muni:271004"}}},
                   policy("juki-municipality.toml")});
        net.start({"muni:271004", true, {juki("muni:271004", "cs")},
                   {{"pref:27", {"pref:*", "jlis:*"}}, {"muni:131016", {"muni:131016"}}},
                   policy("juki-municipality.toml")});
        net.start({"muni:131024", true, {juki("muni:131024", "cs")}, {{"pref:13", {"*"}}},
                   policy("juki-municipality.toml")});
        net.start({"agency:nenkin", false, {}, {{"jlis:juki", {"jlis:*"}}}});
        net.start({"jlis:card", false, {}, {{"jlis:juki", {"jlis:juki"}}}});
    }
};

// A municipality's 住民記録システム (and window terminal): sends to its CS and J-LIS, collects answers.
struct Legacy {
    Host& host;
    std::string node;
    Collector c;
    int batches = 0;
    Legacy(JukiNet& t, const std::string& n)
        : host(t.net[n]), node(n),
          c("legacy", {"juki.UpdateResult", "juki.IdentityUpdate.Fault", "juki.NumberAssigned",
                       "juki.NumberRequest.Fault", "juki.ChainStatus", "juki.ConsistencyReport", "juki.CopyAnswer",
                       "juki.CopyRequest.Fault", "juki.MoveInNotice.Fault", "juki.Erased", "juki.ConsistencyStart.Fault"}) {
        host.add_endpoint(c.endpoint());
    }
    std::string municipality() const { return node.substr(5); }

    // Asks J-LIS for the person's 個人番号 and waits for it.
    void number_for(Person& p) {
        capnp::MallocMessageBuilder mb;
        mb.initRoot<juki::NumberRequest>().setResidentCode(p.code);
        auto id = submit_new(host, c.name(), "juki.NumberRequest", "jlis:juki", flat(mb), "bango-8");
        auto got = wait(id);
        ASSERT_EQ(got.type, "juki.NumberAssigned") << got.fault_message;
        p.my_number = Parsed<juki::NumberAssigned>(got.payload).get().getMyNumber();
    }
    // The answer correlated with request `id`.
    Received wait(const std::string& id) {
        for (int i = 0; i < 400; ++i) {
            for (auto& r : c.all())
                if (r.correlation == id) return r;
            std::this_thread::sleep_for(50ms);
        }
        return {};
    }
    // `count` births in this municipality from test person `first` on, each with its 個人番号.
    std::vector<std::pair<Person, juki::ChangeReason>> births(int first, int count);
    // Notifies the CS of records; returns the batch id.
    std::string notify(const std::vector<std::pair<Person, juki::ChangeReason>>& records,
                       const std::function<void(juki::IdentityRecord::Builder, size_t)>& tweak = nullptr) {
        capnp::MallocMessageBuilder mb;
        auto u = mb.initRoot<juki::IdentityUpdate>();
        std::string batch = node + "-b" + std::to_string(++batches);
        u.setBatchId(batch);
        u.setMunicipality(municipality());
        auto list = u.initRecords(static_cast<unsigned>(records.size()));
        for (size_t i = 0; i < records.size(); ++i) {
            fill(list[i], records[i].first, records[i].second);
            if (tweak) tweak(list[i], i);
        }
        submit_new(host, c.name(), "juki.IdentityUpdate", node, flat(mb), "juki-30-6");
        return batch;
    }
    // The UpdateResults for `batch` once all three tiers answered (CS, prefecture, J-LIS).
    std::map<std::string, Received> results(const std::string& batch, size_t tiers = 3) {
        std::map<std::string, Received> out;
        for (int i = 0; i < 400 && out.size() < tiers; ++i) {
            for (auto& r : c.all()) {
                if (r.type != "juki.UpdateResult") continue;
                Parsed<juki::UpdateCountList> l_msg(r.payload);
    auto l = l_msg.get();
                if (l.getBatchId() == batch) out[l.getRecordedBy()] = r;
            }
            if (out.size() < tiers) std::this_thread::sleep_for(50ms);
        }
        return out;
    }
    std::vector<std::string> alarms() {
        capnp::MallocMessageBuilder mb;
        mb.initRoot<juki::StatusRequest>();
        auto id = submit_new(host, c.name(), "juki.StatusRequest", node, flat(mb), "ops");
        auto got = wait(id);
        std::vector<std::string> out;
        if (got.type != "juki.ChainStatus") return {"no status: " + got.type + " " + got.fault_message};
        Parsed<juki::ChainStatus> status(got.payload);
        for (auto a : status.get().getAlarms()) out.emplace_back(a);
        return out;
    }
};

Person person(int n, const std::string& municipality, const std::string& kanji = "住基　花子",
              const std::string& kana = "ジュウキ　ハナコ") {
    Person p;
    p.code = code_of(n);
    p.kanji = kanji;
    p.kana = kana;
    p.day = 1 + n % 28;
    p.municipality = municipality;
    p.address = municipality == "131016" ? "東京都千代田区霞が関二丁目1番" : municipality == "131024" ? "東京都中央区築地一丁目1番"
                                                                                      : "大阪府大阪市北区中之島一丁目3番";
    return p;
}

std::vector<std::pair<Person, juki::ChangeReason>> Legacy::births(int first, int count) {
    std::vector<std::pair<Person, juki::ChangeReason>> out;
    for (int i = first; i < first + count; ++i) {
        auto p = person(i, municipality());
        number_for(p);
        out.push_back({p, juki::ChangeReason::BIRTH});
    }
    return out;
}

std::vector<std::string> rejected_fields(const Received& r) {
    std::vector<std::string> out;
    Parsed<juki::UpdateCountList> list(r.payload);
    for (auto x : list.get().getRejected())
        out.push_back(std::string(x.getField()) + " " + std::string(x.getRule()));
    return out;
}

// Sends an IdentityQuery from `from` (as component `origin`) and returns the answer.
Received query(Host& from, Collector& c, const std::string& purpose,
               const std::function<void(capnp::List<juki::QueryKey>::Builder)>& keys, size_t n,
               std::vector<std::string> conditions) {
    capnp::MallocMessageBuilder payload;
    keys(payload.initRoot<juki::IdentityQuery>().initKeys(static_cast<unsigned>(n)));
    capnp::MallocMessageBuilder mb;
    auto e = mb.initRoot<schema::Envelope>();
    auto id = new_message_id();
    e.setId(kj::ArrayPtr<const kj::byte>(id.data(), id.size()));
    e.setType("juki.IdentityQuery");
    e.setTo("jlis:juki");
    e.setPurpose(purpose);
    e.setOperatorId("agency-operator-7");
    auto bytes = flat(payload);
    e.setPayload(kj::ArrayPtr<const kj::byte>(reinterpret_cast<const kj::byte*>(bytes.data()), bytes.size()));
    auto cl = e.initConditions(static_cast<unsigned>(conditions.size()));
    for (size_t i = 0; i < conditions.size(); ++i) cl.set(i, conditions[i]);
    auto before = c.all().size();
    from.submit(c.name(), capnp::messageToFlatArray(mb).asBytes());
    auto got = c.wait_for(before + 1, 20s);
    return got.size() > before ? got[before] : Received{};
}

} // namespace

TEST(Juki, NumberGenerationIsValidUniqueStableAndChangesWithHistory) {
    JukiNet t;
    Legacy cs(t, "muni:131016");
    auto ask = [&](const std::string& code, bool change = false, const std::string& reason = {}) {
        capnp::MallocMessageBuilder mb;
        auto r = mb.initRoot<juki::NumberRequest>();
        r.setResidentCode(code);
        r.setChange(change);
        r.setReason(reason);
        auto id = submit_new(cs.host, cs.c.name(), "juki.NumberRequest", "jlis:juki", flat(mb), "bango-8");
        auto got = cs.wait(id);
        EXPECT_EQ(got.type, "juki.NumberAssigned") << got.fault_message;
        Parsed<juki::NumberAssigned> a(got.payload);
        return std::make_tuple(std::string(a.get().getMyNumber()), std::string(a.get().getPrevious()),
                               a.get().getGeneration());
    };
    auto [first, prev, gen] = ask("12345678901");
    EXPECT_TRUE(validate::my_number("myNumber", first)) << first;
    EXPECT_EQ(gen, 1u);
    EXPECT_TRUE(prev.empty());
    EXPECT_EQ(first.find("12345678901"), std::string::npos) << "not the 住民票コード itself";
    EXPECT_EQ(std::get<0>(ask("12345678901")), first) << "a retry must get the same number";
    EXPECT_NE(std::get<0>(ask("98765432109")), first);
    auto [changed, replaced, gen2] = ask("12345678901", true, "漏えいにより不正に用いられるおそれ");
    EXPECT_NE(changed, first);
    EXPECT_TRUE(validate::my_number("myNumber", changed));
    EXPECT_EQ(replaced, first);
    EXPECT_EQ(gen2, 2u);
    EXPECT_EQ(std::get<0>(ask("12345678901")), changed);
}

TEST(Juki, BadNumberRequestsComeBackAsFaultsNamingTheField) {
    JukiNet t;
    Legacy cs(t, "muni:131016");
    capnp::MallocMessageBuilder mb;
    mb.initRoot<juki::NumberRequest>().setResidentCode("1234567890X");
    auto got = cs.wait(submit_new(cs.host, cs.c.name(), "juki.NumberRequest", "jlis:juki", flat(mb), "bango-8"));
    EXPECT_EQ(got.type, "juki.NumberRequest.Fault");
    EXPECT_EQ(got.fault_code, RENKEI_ERR_INVALID);
    EXPECT_NE(got.fault_message.find("residentCode"), std::string::npos) << got.fault_message;
    // Without the legal basis the policy names, J-LIS's host refuses before the plugin sees it.
    capnp::MallocMessageBuilder ok;
    ok.initRoot<juki::NumberRequest>().setResidentCode("12345678901");
    got = cs.wait(submit_new(cs.host, cs.c.name(), "juki.NumberRequest", "jlis:juki", flat(ok), "curiosity"));
    EXPECT_EQ(got.type, "juki.NumberRequest.Fault");
    EXPECT_EQ(got.fault_code, RENKEI_ERR_DENIED);
}

TEST(Juki, UpdatesClimbTheChainAndEveryTierReconcilesItsCountList) {
    JukiNet t;
    Legacy cs(t, "muni:131016");
    auto births = cs.births(0, 5);
    auto batch = cs.notify(births);
    auto res = cs.results(batch);
    ASSERT_EQ(res.size(), 3u) << "answers from the CS, the prefecture and J-LIS";
    for (auto who : {"muni:131016", "pref:13", "jlis:juki"}) {
        ASSERT_TRUE(res.count(who)) << who;
        Parsed<juki::UpdateCountList> l_msg(res[who].payload);
    auto l = l_msg.get();
        EXPECT_EQ(l.getReceived(), 5u) << who;
        EXPECT_EQ(l.getRecorded(), 5u) << who;
        EXPECT_EQ(l.getRejected().size(), 0u) << who;
    }
    EXPECT_TRUE(cs.alarms().empty());
    // Each tier holds the records.
    for (auto node : {"muni:131016", "pref:13", "jlis:juki"}) {
        juki::IdentityStore store(t.store_of(node));
        EXPECT_EQ(store.count(), 5u) << node;
        EXPECT_TRUE(store.get(births[2].first.code)) << node;
    }
    // A redelivered batch (same id) changes nothing and is answered the same way.
    submit_new(cs.host, cs.c.name(), "juki.IdentityUpdate", "muni:131016", [&] {
        capnp::MallocMessageBuilder mb;
        auto u = mb.initRoot<juki::IdentityUpdate>();
        u.setBatchId(batch);
        u.setMunicipality("131016");
        auto l = u.initRecords(1);
        fill(l[0], births[0].first, juki::ChangeReason::BIRTH);
        return flat(mb);
    }(), "juki-30-6");
    // The CS answers with the list it gave the first time (5 records), not with a new one.
    bool answered_again = false;
    for (int i = 0; i < 200 && !answered_again; ++i) {
        size_t from_cs = 0;
        for (auto& r : cs.c.all()) {
            if (r.type != "juki.UpdateResult") continue;
            Parsed<juki::UpdateCountList> l(r.payload);
            if (l.get().getBatchId() == batch && l.get().getRecordedBy() == "muni:131016") {
                ++from_cs;
                answered_again = from_cs == 2 && l.get().getReceived() == 5u;
            }
        }
        if (!answered_again) std::this_thread::sleep_for(50ms);
    }
    EXPECT_TRUE(answered_again);
    std::this_thread::sleep_for(300ms);
    juki::IdentityStore jlis(t.store_of("jlis:juki"));
    EXPECT_EQ(jlis.count(), 5u);
    EXPECT_TRUE(cs.alarms().empty());
}

// A 住民記録システム that never got J-LIS's list for a batch (lost in a stop of the CS's host) sends
// the batch again under its id: every tier answers as before, nothing is recorded twice, and the
// prefecture and the CS pass J-LIS's list on again, so it arrives this time.
TEST(Juki, ABatchSentAgainBringsJlisListAgainAndChangesNothing) {
    JukiNet t;
    Legacy cs(t, "muni:131016");
    auto births = cs.births(40, 3);
    auto batch = cs.notify(births);
    ASSERT_EQ(cs.results(batch).size(), 3u);
    auto lists_from = [&](const std::string& who) {
        size_t n = 0;
        for (auto& r : cs.c.all()) {
            if (r.type != "juki.UpdateResult") continue;
            Parsed<juki::UpdateCountList> l(r.payload);
            n += l.get().getBatchId() == batch && l.get().getRecordedBy() == who && l.get().getRecorded() == 3u;
        }
        return n;
    };
    EXPECT_EQ(lists_from("jlis:juki"), 1u);
    capnp::MallocMessageBuilder mb; // the same payload under the same id
    auto u = mb.initRoot<juki::IdentityUpdate>();
    u.setBatchId(batch);
    u.setMunicipality("131016");
    auto l = u.initRecords(static_cast<unsigned>(births.size()));
    for (size_t i = 0; i < births.size(); ++i) fill(l[i], births[i].first, births[i].second);
    submit_new(cs.host, cs.c.name(), "juki.IdentityUpdate", "muni:131016", flat(mb), "juki-30-6");
    for (int i = 0; i < 400 && lists_from("jlis:juki") < 2; ++i) std::this_thread::sleep_for(50ms);
    EXPECT_EQ(lists_from("jlis:juki"), 2u) << "J-LIS's list is passed on again";
    EXPECT_EQ(lists_from("muni:131016"), 2u);
    for (auto node : {"muni:131016", "pref:13", "jlis:juki"}) {
        juki::IdentityStore store(t.store_of(node));
        EXPECT_EQ(store.count(), 3u) << node;
        EXPECT_EQ(store.scalar("SELECT COUNT(*) FROM history"), 0) << node << ": nothing recorded a second time";
    }
    EXPECT_TRUE(cs.alarms().empty());
}

TEST(Juki, EachTierRefusesBadRecordsNamingFieldAndRuleAndKeepsTheRest) {
    JukiNet t;
    Legacy cs(t, "muni:131016");
    auto good = person(1, "131016");
    cs.number_for(good);
    auto other = person(2, "131016", "記載　次郎", "キサイ　ジロウ");
    cs.number_for(other);
    cs.results(cs.notify({{good, juki::ChangeReason::BIRTH}, {other, juki::ChangeReason::BIRTH}}));

    auto bad_digit = person(3, "131016");
    bad_digit.my_number = "123456789012"; // wrong check digit
    auto unknown = person(4, "131016");
    cs.number_for(unknown);
    auto bad_lg = person(5, "131016");
    cs.number_for(bad_lg);
    auto renamed = good;
    renamed.kanji = "改名　花子";
    auto moved = other;
    moved.address = "東京都千代田区永田町一丁目7番";
    auto batch = cs.notify({{bad_digit, juki::ChangeReason::BIRTH},       // 0 bad check digit
                            {unknown, juki::ChangeReason::ITEM_CHANGE},   // 1 unknown 住民票コード
                            {bad_lg, juki::ChangeReason::BIRTH},          // 2 unknown municipality code
                            {good, juki::ChangeReason::MOVE_IN},          // 3 転入 of a registered person
                            {renamed, juki::ChangeReason::MOVE_WITHIN},   // 4 転居 that changes the name
                            {moved, juki::ChangeReason::MOVE_WITHIN},     // 5 fine
                            {good, juki::ChangeReason::ITEM_CHANGE}},     // 6 invalid 異動年月日
                           [](juki::IdentityRecord::Builder r, size_t i) {
                               if (i == 2) r.getPerson().getAddress().setLocalGovCode("131017");
                               if (i == 6) r.getChangeDate().setDay(31), r.getChangeDate().setMonth(2);
                           });
    auto res = cs.results(batch);
    ASSERT_EQ(res.size(), 3u);
    auto at_cs = rejected_fields(res["muni:131016"]);
    EXPECT_EQ(at_cs, (std::vector<std::string>{"person.myNumber my_number.check_digit",
                                               "person.residentCode juki.unknown_resident",
                                               "person.address.localGovCode local_gov_code.check_digit",
                                               "reason juki.pia.move_in_registered",
                                               "reason juki.pia.move_within_changes_more", "changeDate date.day"}));
    for (auto who : {"pref:13", "jlis:juki"}) {
        Parsed<juki::UpdateCountList> l_msg(res[who].payload);
    auto l = l_msg.get();
        EXPECT_EQ(l.getRecorded(), 1u) << who << ": only the 転居 went on";
    }
    juki::IdentityStore jlis(t.store_of("jlis:juki"));
    auto rec = jlis.get(other.code);
    ASSERT_TRUE(rec);
    juki::RecordReader r(rec->record);
    EXPECT_EQ(std::string(r.get().getPerson().getAddress().getText()), moved.address);
    EXPECT_TRUE(cs.alarms().empty()) << "refusals reconcile; they are not mismatches";
}

TEST(Juki, NationalChecksCatchWhatOnlyJlisCanSee) {
    JukiNet t;
    Legacy tokyo(t, "muni:131016");
    Legacy osaka(t, "muni:271004");
    auto p = person(7, "131016");
    tokyo.number_for(p);
    tokyo.results(tokyo.notify({{p, juki::ChangeReason::BIRTH}}));
    // Osaka records a 転入 of the same person without Tokyo's 転出: its CS and prefecture cannot
    // know; J-LIS refuses it (PIA: 転入 for someone already registered).
    auto there = p;
    there.municipality = "271004";
    there.address = "大阪府大阪市北区中之島一丁目3番";
    auto res = osaka.results(osaka.notify({{there, juki::ChangeReason::MOVE_IN}}));
    ASSERT_EQ(res.size(), 3u);
    EXPECT_EQ(Parsed<juki::UpdateCountList>(res["pref:27"].payload).get().getRecorded(), 1u);
    auto national = rejected_fields(res["jlis:juki"]);
    EXPECT_EQ(national, std::vector<std::string>{"reason juki.pia.move_in_registered"});
    // A 個人番号 that is not the one generated for the 住民票コード.
    auto q = person(8, "271004");
    osaka.number_for(q);
    auto wrong = q;
    wrong.my_number = p.my_number;
    res = osaka.results(osaka.notify({{wrong, juki::ChangeReason::BIRTH}}));
    EXPECT_EQ(rejected_fields(res["jlis:juki"]), std::vector<std::string>{"person.myNumber juki.pia.number_mismatch"});
    EXPECT_TRUE(osaka.alarms().empty());
}

TEST(Juki, MovesBetweenPrefecturesSendTheMoveInNoticeCsToCs) {
    JukiNet t;
    Legacy tokyo(t, "muni:131016");
    Legacy osaka(t, "muni:271004");
    auto p = person(9, "131016");
    tokyo.number_for(p);
    tokyo.results(tokyo.notify({{p, juki::ChangeReason::BIRTH}}));
    tokyo.results(tokyo.notify({{p, juki::ChangeReason::MOVE_OUT}}));
    auto there = p;
    there.municipality = "271004";
    there.address = "大阪府大阪市北区中之島一丁目3番";
    auto res = osaka.results(osaka.notify({{there, juki::ChangeReason::MOVE_IN}}, [](juki::IdentityRecord::Builder r, size_t) {
        r.setPreviousMunicipality("131016");
    }));
    ASSERT_EQ(res.size(), 3u);
    EXPECT_TRUE(rejected_fields(res["jlis:juki"]).empty());
    juki::IdentityStore jlis(t.store_of("jlis:juki"));
    EXPECT_EQ(jlis.get(p.code)->municipality, "271004");
    // The 転入通知 reached Tokyo's CS directly; neither prefecture nor J-LIS stored it.
    juki::IdentityStore tokyo_store(t.store_of("muni:131016"));
    for (int i = 0; i < 100 && tokyo_store.notices("juki.MoveInNotice") == 0; ++i) std::this_thread::sleep_for(50ms);
    EXPECT_EQ(tokyo_store.notices("juki.MoveInNotice"), 1u);
    for (auto node : {"pref:13", "pref:27", "jlis:juki"}) {
        juki::IdentityStore s(t.store_of(node));
        EXPECT_EQ(s.notices("juki.MoveInNotice"), 0u) << node;
    }
    EXPECT_TRUE(tokyo.alarms().empty());
}

TEST(Juki, NoticesNeverTransitAPrefectureServer) {
    JukiNet t;
    Legacy chuo(t, "muni:131024"); // reaches other municipalities only through pref:13
    capnp::MallocMessageBuilder mb;
    auto n = mb.initRoot<juki::MoveInNotice>();
    auto p = person(11, "131024");
    n.initPerson().setResidentCode(p.code);
    n.getPerson().initName().setKanji("通過　禁止");
    n.setNewMunicipality("131024");
    n.setOldMunicipality("131016");
    auto id = submit_new(chuo.host, chuo.c.name(), "juki.MoveInNotice", "muni:131016", flat(mb), "juki-9-1");
    auto got = chuo.wait(id);
    EXPECT_EQ(got.type, "juki.MoveInNotice.Fault");
    EXPECT_EQ(got.fault_code, RENKEI_ERR_DENIED);
    EXPECT_NE(got.fault_message.find("第3 3(3)"), std::string::npos) << got.fault_message;
    // Nothing of it exists anywhere on the prefecture server's disk.
    std::this_thread::sleep_for(300ms);
    for (auto& e : std::filesystem::recursive_directory_iterator(t.tmp.path())) {
        if (e.is_regular_file() && e.path().string().find("pref_13") != std::string::npos) {
            EXPECT_EQ(read_file(e.path()).find("通過　禁止"), std::string::npos) << e.path();
        }
    }
}

TEST(Juki, WideAreaCopyIsReviewedAndAnsweredByTheResidenceMunicipality) {
    JukiNet t;
    Legacy tokyo(t, "muni:131016");
    Legacy osaka(t, "muni:271004");
    auto p = person(12, "131016", "広域　交付", "コウイキ　コウフ");
    tokyo.number_for(p);
    tokyo.results(tokyo.notify({{p, juki::ChangeReason::BIRTH}}));
    auto ask = [&](const std::string& name) {
        capnp::MallocMessageBuilder mb;
        auto r = mb.initRoot<juki::CopyRequest>();
        r.setResidentCode(p.code);
        r.setName(name);
        auto d = r.initDateOfBirth();
        d.setYear(p.year);
        d.setMonth(p.month);
        d.setDay(p.day);
        r.setIdentityDocument("個人番号カード");
        r.setIssuingMunicipality("271004");
        auto got = osaka.wait(submit_new(osaka.host, osaka.c.name(), "juki.CopyRequest", "muni:131016", flat(mb), "juki-12-4"));
        return got;
    };
    auto got = ask(p.kanji);
    ASSERT_EQ(got.type, "juki.CopyAnswer") << got.fault_message;
    Parsed<juki::CopyAnswer> a_msg(got.payload);
    auto a = a_msg.get();
    EXPECT_TRUE(a.getIssued()) << a.getRefusal().cStr();
    std::map<std::string, std::string> items;
    for (auto i : a.getItems()) items[i.getName()] = i.getValue();
    EXPECT_EQ(items["氏名"], p.kanji);
    EXPECT_EQ(items["住所"], p.address);
    EXPECT_TRUE(a.getPerson().getMyNumber().size() == 0) << "a copy carries no 個人番号 unless asked";
    got = ask("別人　太郎");
    Parsed<juki::CopyAnswer> refused_msg(got.payload);
    auto refused = refused_msg.get();
    EXPECT_FALSE(refused.getIssued());
    EXPECT_NE(std::string(refused.getRefusal()).find("does not match"), std::string::npos);
}

TEST(Juki, AgencyQueriesAreLimitedByPurposeAndConditionsAndRecordedForDisclosure) {
    JukiNet t;
    Legacy cs(t, "muni:131016");
    std::vector<Person> people;
    std::vector<std::pair<Person, juki::ChangeReason>> births;
    for (int i = 20; i < 23; ++i) {
        people.push_back(person(i, "131016", "照会　" + std::to_string(i), "ショウカイ"));
        cs.number_for(people.back());
        births.push_back({people.back(), juki::ChangeReason::BIRTH});
    }
    cs.results(cs.notify(births));
    Collector agency("agency", {"juki.IdentityAnswer", "juki.IdentityQuery.Fault"});
    t.net["agency:nenkin"].add_endpoint(agency.endpoint());
    auto& from = t.net["agency:nenkin"];

    // A batch by 個人番号 for a 別表第一 affair: found, but without the 個人番号.
    auto got = query(from, agency, "juki-beppyo1:5", [&](auto keys) {
        for (size_t i = 0; i < 3; ++i) keys[i].setMyNumber(i < 2 ? people[i].my_number : "123456789018");
    }, 3, {"myNumber"});
    ASSERT_EQ(got.type, "juki.IdentityAnswer") << got.fault_message;
    Parsed<juki::IdentityAnswer> a_msg(got.payload);
    auto a = a_msg.get();
    ASSERT_EQ(a.getResults().size(), 3u);
    EXPECT_EQ(a.getResults()[0].getStatus(), juki::QueryResult::Status::FOUND);
    EXPECT_EQ(std::string(a.getResults()[1].getPerson().getResidentCode()), people[1].code);
    EXPECT_EQ(a.getResults()[1].getPerson().getMyNumber().size(), 0u) << "別表第一 affairs do not get the 個人番号";
    EXPECT_EQ(a.getResults()[2].getStatus(), juki::QueryResult::Status::NOT_FOUND);
    // A 番号法 affair gets it.
    got = query(from, agency, "bango-9:12", [&](auto keys) { keys[0].setResidentCode(people[0].code); }, 1,
                {"residentCode"});
    ASSERT_EQ(got.type, "juki.IdentityAnswer") << got.fault_message;
    EXPECT_EQ(std::string(Parsed<juki::IdentityAnswer>(got.payload).get().getResults()[0].getPerson().getMyNumber()),
              people[0].my_number);
    // By name, date of birth and sex.
    got = query(from, agency, "juki-beppyo1:5", [&](auto keys) {
        keys[0].setName(people[2].kanji);
        auto d = keys[0].initDateOfBirth();
        d.setYear(people[2].year);
        d.setMonth(people[2].month);
        d.setDay(people[2].day);
        keys[0].setSex(people[2].sex);
    }, 1, {"name", "dateOfBirth", "sex"});
    ASSERT_EQ(got.type, "juki.IdentityAnswer") << got.fault_message;
    EXPECT_EQ(std::string(Parsed<juki::IdentityAnswer>(got.payload).get().getResults()[0].getPerson().getResidentCode()),
              people[2].code);

    // Refused: name alone (policy), a purpose no rule names, a key smuggling weaker conditions.
    got = query(from, agency, "juki-beppyo1:5", [&](auto keys) { keys[0].setName(people[0].kanji); }, 1, {"name"});
    EXPECT_EQ(got.type, "juki.IdentityQuery.Fault");
    EXPECT_EQ(got.fault_code, RENKEI_ERR_DENIED);
    EXPECT_NE(got.fault_message.find("conditions"), std::string::npos) << got.fault_message;
    got = query(from, agency, "marketing", [&](auto keys) { keys[0].setMyNumber(people[0].my_number); }, 1, {"myNumber"});
    EXPECT_EQ(got.type, "juki.IdentityQuery.Fault");
    EXPECT_EQ(got.fault_code, RENKEI_ERR_DENIED);
    got = query(from, agency, "juki-beppyo1:5", [&](auto keys) {
        keys[0].setMyNumber(people[0].my_number);
        keys[1].setName(people[1].kanji);
    }, 2, {"myNumber"});
    EXPECT_EQ(got.type, "juki.IdentityQuery.Fault");
    EXPECT_EQ(got.fault_code, RENKEI_ERR_INVALID);
    EXPECT_NE(got.fault_message.find("keys[1]"), std::string::npos) << got.fault_message;

    // 開示: J-LIS's operator lists every provision of person 0's data, refusals included.
    Collector op("operator", {"juki.DisclosureAnswer"});
    t.net["jlis:juki"].add_endpoint(op.endpoint());
    capnp::MallocMessageBuilder mb;
    mb.initRoot<juki::DisclosureRequest>().setResidentCode(people[0].code);
    submit_new(t.net["jlis:juki"], op.name(), "juki.DisclosureRequest", "jlis:juki", flat(mb), "kaiji");
    auto d = op.wait_for(1, 20s);
    ASSERT_EQ(d.size(), 1u);
    std::vector<std::string> outcomes;
    Parsed<juki::DisclosureAnswer> disclosure(d[0].payload);
    for (auto e : disclosure.get().getEntries()) {
        EXPECT_EQ(std::string(e.getRecipient()), "agency:nenkin");
        outcomes.push_back(std::string(e.getAffair()) + " " + std::string(e.getOutcome()));
    }
    EXPECT_EQ(outcomes, (std::vector<std::string>{"juki-beppyo1:5 provided", "bango-9:12 provided",
                                                  "juki-beppyo1:5 refused"}));
}

TEST(Juki, UserInfoQueryAnswersByResidentCodeOnlyForCardManagement) {
    JukiNet t;
    Legacy cs(t, "muni:131016");
    auto p = person(30, "131016");
    cs.number_for(p);
    cs.results(cs.notify({{p, juki::ChangeReason::BIRTH}}));
    auto ask = [&](Host& from, const std::string& purpose) {
        Collector c("card-" + std::to_string(reinterpret_cast<uintptr_t>(&from)),
                    {"juki.UserInfoAnswer", "juki.UserInfoQuery.Fault"});
        from.add_endpoint(c.endpoint());
        capnp::MallocMessageBuilder mb;
        mb.initRoot<juki::UserInfoQuery>().setResidentCode(p.code);
        submit_new(from, c.name(), "juki.UserInfoQuery", "jlis:juki", flat(mb), purpose);
        auto got = c.wait_for(1, 20s);
        from.router().remove_endpoint(c.name());
        return got.empty() ? Received{} : got[0];
    };
    auto got = ask(t.net["jlis:card"], "card-riyousha");
    ASSERT_EQ(got.type, "juki.UserInfoAnswer") << got.fault_message;
    Parsed<juki::UserInfoAnswer> a_msg(got.payload);
    auto a = a_msg.get();
    EXPECT_TRUE(a.getFound());
    EXPECT_EQ(std::string(a.getRecord().getPerson().getMyNumber()), p.my_number);
    got = ask(t.net["agency:nenkin"], "card-riyousha");
    EXPECT_EQ(got.type, "juki.UserInfoQuery.Fault");
    EXPECT_EQ(got.fault_code, RENKEI_ERR_DENIED);
}

TEST(Juki, ResidentCodeChangeMovesTheNumberAndTheRecord) {
    JukiNet t;
    Legacy cs(t, "muni:131016");
    auto p = person(40, "131016");
    cs.number_for(p);
    cs.results(cs.notify({{p, juki::ChangeReason::BIRTH}}));
    auto changed = p;
    changed.code = code_of(41);
    auto res = cs.results(cs.notify({{changed, juki::ChangeReason::RESIDENT_CODE_CHANGE}},
                                    [&](juki::IdentityRecord::Builder r, size_t) { r.setPreviousResidentCode(p.code); }));
    ASSERT_EQ(res.size(), 3u);
    for (auto& [who, r] : res) EXPECT_TRUE(rejected_fields(r).empty()) << who << " " << rejected_fields(r)[0];
    juki::IdentityStore jlis(t.store_of("jlis:juki"));
    EXPECT_FALSE(jlis.get(p.code));
    ASSERT_TRUE(jlis.get(changed.code));
    EXPECT_EQ(jlis.get(changed.code)->my_number, p.my_number);
    // J-LIS's number registry follows: the number now belongs to the new code.
    Person again = changed;
    cs.number_for(again);
    EXPECT_EQ(again.my_number, p.my_number);
}

TEST(Juki, ConsistencyCheckStreamsTheMunicipalityAndReportsEveryDifference) {
    JukiNet t;
    Legacy cs(t, "muni:131016");
    auto births = cs.births(100, 40);
    cs.results(cs.notify(births));
    // Make the two sides differ: J-LIS misses one record, the CS changed another behind the
    // chain's back and lost a third.
    {
        juki::IdentityStore jlis(t.store_of("jlis:juki"));
        sqlite3_exec(jlis.db(), ("DELETE FROM residents WHERE code = '" + births[0].first.code + "'").c_str(), nullptr,
                     nullptr, nullptr);
        juki::IdentityStore muni(t.store_of("muni:131016"));
        auto r = muni.get(births[1].first.code);
        juki::RecordReader rec(r->record);
        capnp::MallocMessageBuilder mb;
        mb.setRoot(rec.get());
        mb.getRoot<juki::IdentityRecord>().getPerson().getName().setKanji("相違　あり");
        muni.put(mb.getRoot<juki::IdentityRecord>(), juki::canonical_bytes(mb.getRoot<juki::IdentityRecord>()), false, 1);
        sqlite3_exec(muni.db(), ("DELETE FROM residents WHERE code = '" + births[2].first.code + "'").c_str(), nullptr,
                     nullptr, nullptr);
    }
    capnp::MallocMessageBuilder mb;
    auto s = mb.initRoot<juki::ConsistencyStart>();
    s.setCheckId("2026-11");
    s.setChunkSize(7); // 39 residents in 6 chunks
    submit_new(cs.host, cs.c.name(), "juki.ConsistencyStart", "muni:131016", flat(mb), "juki-seigou");
    Received report;
    for (int i = 0; i < 400 && report.type.empty(); ++i) {
        for (auto& r : cs.c.all())
            if (r.type == "juki.ConsistencyReport" || r.type == "juki.ConsistencyStart.Fault") report = r;
        std::this_thread::sleep_for(50ms);
    }
    ASSERT_EQ(report.type, "juki.ConsistencyReport") << report.fault_message;
    Parsed<juki::ConsistencyReport> r_msg(report.payload);
    auto r = r_msg.get();
    EXPECT_EQ(r.getCompared(), 39u);
    EXPECT_EQ(r.getMissingAtNational(), 1u);
    EXPECT_EQ(r.getDiffering(), 1u);
    EXPECT_EQ(r.getMissingAtMunicipality(), 1u);
    EXPECT_EQ(r.getMatching(), 37u);
    std::map<std::string, std::string> diffs;
    for (auto d : r.getDifferences()) {
        std::string fields;
        for (auto f : d.getFields()) fields += std::string(f);
        diffs[d.getResidentCode()] = std::to_string(static_cast<int>(d.getKind())) + " " + fields;
    }
    EXPECT_EQ(diffs[births[0].first.code], "0 ");
    EXPECT_EQ(diffs[births[1].first.code], "2 name.kanji");
    EXPECT_EQ(diffs[births[2].first.code], "1 ");
}

TEST(Juki, ErasureRemovesExpiredDataSurelyAndRecordsIt) {
    JukiNet t;
    Legacy cs(t, "muni:131016");
    auto p = person(50, "131016");
    cs.number_for(p);
    cs.results(cs.notify({{p, juki::ChangeReason::BIRTH}}));
    cs.results(cs.notify({{p, juki::ChangeReason::DEATH}}));
    capnp::MallocMessageBuilder mb;
    mb.initRoot<juki::EraseExpired>().setNowMs(t.net["muni:131016"].now_unix_ms() + 151 * juki::kYearMs);
    auto id = submit_new(cs.host, cs.c.name(), "juki.EraseExpired", "muni:131016", flat(mb), "juki-erase");
    auto got = cs.wait(id);
    ASSERT_EQ(got.type, "juki.Erased") << got.fault_message;
    EXPECT_EQ(Parsed<juki::Erased>(got.payload).get().getRemovedResidents(), 1u);
    juki::IdentityStore store(t.store_of("muni:131016"));
    EXPECT_FALSE(store.get(p.code));
    // secure_delete: the name is gone from the file, not just unlinked from the tree.
    t.net.stop("muni:131016");
    EXPECT_EQ(read_file(t.store_of("muni:131016")).find(p.kana), std::string::npos);
}

TEST(Juki, ReconciliationMismatchRaisesAnAlarm) {
    // A prefecture that answers with a list that counts right but recorded something else.
    TempDir tmp;
    Network net{tmp};
    net.start({"pref:14", true, {}, {{"muni:141003", {}}}});
    PluginConfig cs;
    cs.name = "juki";
    cs.path = plugin_path("plugins/juki", "juki");
    cs.settings.insert("role", "cs");
    cs.settings.insert("store", (tmp / "cs" / "juki.db").string());
    cs.settings.insert("municipality", "141003");
    cs.settings.insert("prefecture", "pref:14");
    net.start({"muni:141003", false, {cs}, {{"pref:14", {"*"}}}});
    auto liar = std::make_shared<LocalEndpoint>(
        "liar", std::vector<std::string>{"juki.IdentityUpdate"}, [&](const EnvelopeView& v, std::string&) {
            auto e = v.get();
            auto p = e.getPayload();
            Parsed<juki::IdentityUpdate> u(std::string(reinterpret_cast<const char*>(p.begin()), p.size()));
            capnp::MallocMessageBuilder mb;
            auto l = mb.initRoot<juki::UpdateCountList>();
            l.setBatchId(u.get().getBatchId());
            l.setRecordedBy("pref:14");
            l.setReceived(u.get().getRecords().size());
            l.setRecorded(u.get().getRecords().size());
            l.setDigest(kj::heapArray<kj::byte>(32).asPtr()); // zeros: not what was sent
            capnp::MallocMessageBuilder env;
            auto r = env.initRoot<schema::Envelope>();
            auto id = new_message_id();
            r.setId(kj::ArrayPtr<const kj::byte>(id.data(), id.size()));
            r.setType("juki.UpdateCountList");
            r.setTo(e.getFrom());
            r.setPurpose("juki-30-6");
            r.setCorrelationId(e.getId());
            auto bytes = flat(mb);
            r.setPayload(kj::ArrayPtr<const kj::byte>(reinterpret_cast<const kj::byte*>(bytes.data()), bytes.size()));
            net["pref:14"].submit("liar", capnp::messageToFlatArray(env).asBytes());
            return RENKEI_OK;
        });
    net["pref:14"].add_endpoint(liar);
    Collector legacy("legacy", {"juki.UpdateResult", "juki.ChainStatus"});
    net["muni:141003"].add_endpoint(legacy.endpoint());
    auto p = person(60, "141003");
    p.my_number = "123456789018";
    p.address = "神奈川県横浜市中区日本大通1";
    capnp::MallocMessageBuilder mb;
    auto u = mb.initRoot<juki::IdentityUpdate>();
    u.setBatchId("b1");
    u.setMunicipality("141003");
    fill(u.initRecords(1)[0], p, juki::ChangeReason::BIRTH);
    submit_new(net["muni:141003"], legacy.name(), "juki.IdentityUpdate", "muni:141003", flat(mb), "juki-30-6");
    legacy.wait_for(2, 20s); // the CS's own result and the prefecture's
    capnp::MallocMessageBuilder sr;
    sr.initRoot<juki::StatusRequest>();
    submit_new(net["muni:141003"], legacy.name(), "juki.StatusRequest", "muni:141003", flat(sr), "ops");
    Received status;
    for (int i = 0; i < 200 && status.type.empty(); ++i) {
        for (auto& r : legacy.all())
            if (r.type == "juki.ChainStatus") status = r;
        std::this_thread::sleep_for(50ms);
    }
    ASSERT_EQ(status.type, "juki.ChainStatus");
    Parsed<juki::ChainStatus> s_msg(status.payload);
    auto s = s_msg.get();
    ASSERT_EQ(s.getAlarms().size(), 1u);
    EXPECT_NE(std::string(s.getAlarms()[0]).find("does not reconcile"), std::string::npos) << s.getAlarms()[0].cStr();
    EXPECT_EQ(s.getPending(), 1u) << "J-LIS's list is still awaited";
}
