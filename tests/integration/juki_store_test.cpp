// The juki IdentityStore on its own: current versions and history, 住民票コード changes, erasure
// periods, the role-dependent indexes and the schema migration from the first layout.
#include "test_support.hpp"

#include <identity_store.hpp>
#include <sql.hpp>
#include <renkei/juki/resident.hpp>

#include <gtest/gtest.h>

using namespace renkei;
using namespace renkei::juki;

namespace {

ResidentFields person(const std::string& code, const std::string& kanji) {
    ResidentFields p;
    p.code = code;
    p.kanji = kanji;
    p.kana = "テスト";
    p.address = "東京都千代田区一番町1";
    p.municipality = "131016";
    p.my_number = "123456789018";
    return p;
}

void put(IdentityStore& s, const ResidentFields& p, ChangeReason reason, int64_t now_ms, bool removed = false) {
    capnp::MallocMessageBuilder mb;
    auto r = mb.initRoot<IdentityRecord>();
    fill_record(r, p, reason);
    s.put(r.asReader(), canonical_bytes(r.asReader()), removed, now_ms);
}

std::string kanji_of(const Resident& r) {
    RecordReader reader(r.record);
    return reader.get().getPerson().getName().getKanji();
}

int64_t scalar(sqlite3* db, const char* text) {
    sql::Stmt q(db, text);
    EXPECT_TRUE(q.row()) << text;
    return q.num(0);
}

constexpr int64_t kDay = 24LL * 3600 * 1000;

} // namespace

TEST(JukiStore, KeepsTheCurrentVersionOnceAndEverySupersededVersionInHistory) {
    test::TempDir tmp;
    IdentityStore s(tmp / "juki.db");
    put(s, person("10000000001", "版　一"), ChangeReason::BIRTH, 1 * kDay);
    put(s, person("10000000001", "版　二"), ChangeReason::CORRECTION_BY_OFFICE, 2 * kDay);
    put(s, person("10000000001", "版　三"), ChangeReason::CORRECTION_BY_OFFICE, 3 * kDay);

    auto now = s.get("10000000001");
    ASSERT_TRUE(now);
    EXPECT_EQ(kanji_of(*now), "版　三");
    EXPECT_EQ(now->updated_ms, 3 * kDay);
    EXPECT_EQ(scalar(s.db(), "SELECT count(*) FROM history"), 2);
    // Each superseded version says when it was recorded and when the next one replaced it.
    EXPECT_EQ(scalar(s.db(), "SELECT recorded_ms FROM history ORDER BY id LIMIT 1"), 1 * kDay);
    EXPECT_EQ(scalar(s.db(), "SELECT superseded_ms FROM history ORDER BY id LIMIT 1"), 2 * kDay);
    EXPECT_EQ(s.by_number("123456789018").size(), 1u);
}

TEST(JukiStore, AResidentCodeChangeKeepsTheOldCodesVersionAndLinksTheCodes) {
    test::TempDir tmp;
    IdentityStore s(tmp / "juki.db");
    put(s, person("10000000001", "旧　番号"), ChangeReason::BIRTH, 1 * kDay);
    s.retire_code("10000000001", "10000000002", 2 * kDay);
    put(s, person("10000000002", "旧　番号"), ChangeReason::RESIDENT_CODE_CHANGE, 2 * kDay);

    EXPECT_FALSE(s.get("10000000001"));
    EXPECT_TRUE(s.get("10000000002"));
    EXPECT_EQ(scalar(s.db(), "SELECT count(*) FROM history WHERE code = '10000000001'"), 1);
    EXPECT_EQ(scalar(s.db(), "SELECT count(*) FROM code_links WHERE new_code = '10000000002'"), 1);
}

TEST(JukiStore, ErasesOnlyWhatOutlivedItsPeriodAndLogsTheCounts) {
    test::TempDir tmp;
    Retention r;
    r.history_ms = 10 * kDay;
    r.removed_ms = 20 * kDay;
    r.provisions_ms = 5 * kDay;
    IdentityStore s(tmp / "juki.db", r);
    put(s, person("10000000001", "古　版"), ChangeReason::BIRTH, 1 * kDay);
    put(s, person("10000000001", "中　版"), ChangeReason::CORRECTION_BY_OFFICE, 2 * kDay);  // supersedes at day 2
    put(s, person("10000000001", "新　版"), ChangeReason::CORRECTION_BY_OFFICE, 15 * kDay); // supersedes at day 15
    put(s, person("10000000003", "死亡　者"), ChangeReason::BIRTH, 1 * kDay);
    put(s, person("10000000003", "死亡　者"), ChangeReason::DEATH, 3 * kDay, true);
    s.record_provision({1 * kDay, "agency:nenkin", "juki-beppyo1:5", "10000000001", "provided", "op", ""});
    s.record_provision({12 * kDay, "agency:nenkin", "juki-beppyo1:5", "10000000001", "provided", "op", ""});

    auto n = s.erase_expired(16 * kDay);
    // Past 10 days: the version superseded on day 2 and the deceased's birth version (superseded on
    // day 3); the version superseded on day 15 stays.
    EXPECT_EQ(n.history, 2u);
    EXPECT_EQ(n.residents, 0u); // removed on day 3: 13 days < 20
    EXPECT_EQ(n.provisions, 1u);
    ASSERT_TRUE(s.get("10000000001"));
    EXPECT_EQ(kanji_of(*s.get("10000000001")), "新　版");
    EXPECT_EQ(scalar(s.db(), "SELECT count(*) FROM history WHERE code = '10000000001'"), 1);

    n = s.erase_expired(24 * kDay);
    EXPECT_EQ(n.residents, 1u); // all of the removed resident, history included
    EXPECT_FALSE(s.get("10000000003"));
    EXPECT_EQ(scalar(s.db(), "SELECT count(*) FROM history WHERE code = '10000000003'"), 0);
    EXPECT_EQ(scalar(s.db(), "SELECT count(*) FROM erasures"), 2);
}

TEST(JukiStore, OnlyQueryAnsweringRolesKeepTheSearchIndexes) {
    test::TempDir tmp;
    StoreOptions cs;
    cs.search_indexes = false;
    IdentityStore a(tmp / "cs.db", {}, cs);
    IdentityStore b(tmp / "national.db");
    const char* q = "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'residents_number'";
    EXPECT_EQ(scalar(a.db(), q), 0);
    EXPECT_EQ(scalar(b.db(), q), 1);
    // Without the index the answers are the same, only slower.
    put(a, person("10000000001", "索引　無"), ChangeReason::BIRTH, 1);
    EXPECT_EQ(a.by_number("123456789018").size(), 1u);
    EXPECT_EQ(a.residents_of("131016", "", 10).size(), 1u);
}

TEST(JukiStore, MigratesAStoreWrittenInTheFirstLayout) {
    test::TempDir tmp;
    {
        // The first layout: history held every version with its reason, the current one included.
        sqlite3* db = sql::open(tmp / "old.db", "PRAGMA journal_mode=WAL;");
        sql::exec(db,
                  "CREATE TABLE residents (code TEXT PRIMARY KEY, municipality TEXT NOT NULL, my_number TEXT NOT NULL,"
                  " removed INTEGER NOT NULL, updated_ms INTEGER NOT NULL, name TEXT NOT NULL, kana TEXT NOT NULL,"
                  " birth TEXT NOT NULL, sex INTEGER NOT NULL, address TEXT NOT NULL, record BLOB NOT NULL);"
                  "CREATE TABLE history (id INTEGER PRIMARY KEY, code TEXT NOT NULL, recorded_ms INTEGER NOT NULL,"
                  " reason INTEGER NOT NULL, record BLOB NOT NULL);"
                  "INSERT INTO residents VALUES ('10000000001', '131016', '123456789018', 0, 300, 'c', 'k', '',"
                  " 1, 'a', x'00');"
                  "INSERT INTO history (code, recorded_ms, reason, record) VALUES ('10000000001', 100, 1, x'01'),"
                  " ('10000000001', 200, 2, x'02'), ('10000000001', 300, 2, x'00'),"
                  " ('10000000009', 50, 1, x'09');"); // a code whose current row went (a code change)
        sqlite3_close(db);
    }
    IdentityStore s(tmp / "old.db");
    EXPECT_EQ(scalar(s.db(), "PRAGMA user_version"), 2);
    // The current version (recorded at 300) left history; the others say when they were superseded.
    EXPECT_EQ(scalar(s.db(), "SELECT count(*) FROM history"), 3);
    EXPECT_EQ(scalar(s.db(), "SELECT superseded_ms FROM history WHERE recorded_ms = 100"), 200);
    EXPECT_EQ(scalar(s.db(), "SELECT superseded_ms FROM history WHERE recorded_ms = 200"), 300);
    EXPECT_EQ(scalar(s.db(), "SELECT superseded_ms FROM history WHERE recorded_ms = 50"), 50);
    EXPECT_TRUE(s.get("10000000001"));
    // residents is now clustered by 住民票コード, with the search indexes made again.
    sql::Stmt q(s.db(), "SELECT sql FROM sqlite_master WHERE name = 'residents'");
    ASSERT_TRUE(q.row());
    EXPECT_NE(q.col(0).find("WITHOUT ROWID"), std::string::npos) << q.col(0);
    EXPECT_EQ(s.by_number("123456789018").size(), 1u);
}

TEST(JukiStore, RefusesAStoreFromANewerBuild) {
    test::TempDir tmp;
    {
        sqlite3* db = sql::open(tmp / "new.db", "PRAGMA user_version=99;");
        sqlite3_close(db);
    }
    try {
        IdentityStore s(tmp / "new.db");
        FAIL() << "opened a store of schema version 99";
    } catch (const std::exception& e) {
        EXPECT_NE(std::string(e.what()).find("schema version 99"), std::string::npos) << e.what();
    }
}
