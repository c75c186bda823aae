// The juki store on its own, on both backends (SQLite file; PostgreSQL schema in the throw-away
// cluster of ctest's juki_pg fixture): current versions and history, 住民票コード changes, erasure
// periods, the role-dependent indexes, schema versions, transactions, reader pools, initial loads
// and the bookkeeping of the update chain; the SQLite migration from the first layout.
#include "pg_test.hpp"
#include "test_support.hpp"

#include <identity_store.hpp>
#include <pg_store.hpp>
#include <numbers.hpp>
#include <sql.hpp>
#include <renkei/validate.hpp>
#include <renkei/juki/resident.hpp>

#include <gtest/gtest.h>

#include <map>
#include <thread>

using namespace renkei;
using namespace renkei::juki;

namespace {

ResidentFields person(const std::string& code, const std::string& kanji, const std::string& number = "123456789018") {
    ResidentFields p;
    p.code = code;
    p.kanji = kanji;
    p.kana = "テスト";
    p.address = "東京都千代田区一番町1";
    p.municipality = "131016";
    p.my_number = number;
    return p;
}

void put(Store& s, const ResidentFields& p, ChangeReason reason, int64_t now_ms, bool removed = false,
         bool replaces = true) {
    capnp::MallocMessageBuilder mb;
    auto r = mb.initRoot<IdentityRecord>();
    fill_record(r, p, reason);
    s.put(r.asReader(), canonical_bytes(r.asReader()), removed, now_ms, replaces);
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

// An initial load's records: `n` residents, codes 40000000 + from.., numbers 700000000 + from..
std::unique_ptr<capnp::MallocMessageBuilder> first_versions(int from, int n) {
    auto mb = std::make_unique<capnp::MallocMessageBuilder>();
    auto l = mb->initRoot<IdentityUpdate>().initRecords(static_cast<unsigned>(n));
    for (int i = 0; i < n; ++i) {
        char code[16], number[16];
        std::snprintf(code, sizeof code, "%011d", 40000000 + from + i);
        std::snprintf(number, sizeof number, "%012d", 700000000 + from + i);
        fill_record(l[i], person(code, "一括　登録", number), ChangeReason::BIRTH);
    }
    return mb;
}

enum class Backend { Sqlite, Postgres };
void PrintTo(Backend b, std::ostream* os) { *os << (b == Backend::Sqlite ? "SQLite" : "PostgreSQL"); }

class JukiStore : public ::testing::TestWithParam<Backend> {
protected:
    bool pg() const { return GetParam() == Backend::Postgres; }

    // The store `name` of this test (a file, or a schema of its own), created on first use.
    std::unique_ptr<Store> open(const std::string& name, Retention r = {}, StoreOptions o = {}) {
        if (!pg()) return std::make_unique<SqliteIdentityStore>(tmp / (name + ".db"), r, o);
        auto& schema = schemas_[name];
        if (!schema) schema = std::make_unique<test::PgSchema>(name);
        return std::make_unique<PgIdentityStore>(test::pg_dsn(), schema->name(), r, o);
    }
    const char* index_count(const char* index) const {
        static std::string q;
        q = pg() ? std::string("SELECT count(*) FROM pg_indexes WHERE schemaname = current_schema() AND indexname = '") +
                       index + "'"
                 : std::string("SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = '") + index + "'";
        return q.c_str();
    }

    test::TempDir tmp;
    std::map<std::string, std::unique_ptr<test::PgSchema>> schemas_;
};

} // namespace

TEST_P(JukiStore, KeepsTheCurrentVersionOnceAndEverySupersededVersionInHistory) {
    auto s = open("juki");
    put(*s, person("10000000001", "版　一"), ChangeReason::BIRTH, 1 * kDay);
    put(*s, person("10000000001", "版　二"), ChangeReason::CORRECTION_BY_OFFICE, 2 * kDay);
    put(*s, person("10000000001", "版　三"), ChangeReason::CORRECTION_BY_OFFICE, 3 * kDay);

    auto now = s->get("10000000001");
    ASSERT_TRUE(now);
    EXPECT_EQ(kanji_of(*now), "版　三");
    EXPECT_EQ(now->updated_ms, 3 * kDay);
    EXPECT_EQ(now->municipality, "131016");
    EXPECT_FALSE(now->removed);
    EXPECT_EQ(s->scalar("SELECT count(*) FROM history"), 2);
    EXPECT_EQ(s->count(), 1u);
    // Each superseded version says when it was recorded and when the next one replaced it.
    EXPECT_EQ(s->scalar("SELECT recorded_ms FROM history ORDER BY id LIMIT 1"), 1 * kDay);
    EXPECT_EQ(s->scalar("SELECT superseded_ms FROM history ORDER BY id LIMIT 1"), 2 * kDay);
    EXPECT_EQ(s->scalar("SELECT superseded_ms FROM history ORDER BY id DESC LIMIT 1"), 3 * kDay);
    EXPECT_EQ(s->by_number("123456789018").size(), 1u);
    EXPECT_TRUE(s->by_number("999999999999").empty());
}

// prefetch() (an update batch's residents read at once; on PostgreSQL one statement instead of a
// round trip each) never shows a version other than the one get() would read: the transaction's
// own writes, savepoints rolled back, and other connections' writes once the transaction is over.
TEST_P(JukiStore, PrefetchedReadsSeeTheTransactionsOwnWritesAndNothingStale) {
    auto s = open("juki");
    auto other = open("juki"); // another connection to the same store
    put(*s, person("10000000001", "甲　一"), ChangeReason::BIRTH, 1);
    put(*s, person("10000000002", "乙　二"), ChangeReason::BIRTH, 1);
    {
        auto tx = s->transaction();
        s->prefetch({"10000000001", "10000000002", "10000000003", "10000000004", "10000000001"});
        ASSERT_TRUE(s->get("10000000001"));
        EXPECT_EQ(kanji_of(*s->get("10000000001")), "甲　一");
        EXPECT_FALSE(s->get("10000000003"));
        put(*s, person("10000000001", "甲　改"), ChangeReason::CORRECTION_BY_OFFICE, 2);
        EXPECT_EQ(kanji_of(*s->get("10000000001")), "甲　改");
        put(*s, person("10000000003", "丙　三"), ChangeReason::BIRTH, 2, false, false);
        ASSERT_TRUE(s->get("10000000003"));
        s->retire_code("10000000002", "10000000004", 2);
        EXPECT_FALSE(s->get("10000000002"));
        put(*s, person("10000000004", "乙　二"), ChangeReason::RESIDENT_CODE_CHANGE, 2);
        ASSERT_TRUE(s->get("10000000004"));
        {
            auto inner = s->transaction();
            put(*s, person("10000000001", "甲　取消"), ChangeReason::CORRECTION_BY_OFFICE, 3);
        } // rolled back
        EXPECT_EQ(kanji_of(*s->get("10000000001")), "甲　改");
        tx.commit();
    }
    put(*other, person("10000000001", "甲　他"), ChangeReason::CORRECTION_BY_OFFICE, 4);
    EXPECT_EQ(kanji_of(*s->get("10000000001")), "甲　他") << "nothing prefetched outlives its transaction";
    s->prefetch({"10000000001"}); // outside a transaction: nothing kept
    put(*other, person("10000000001", "甲　再"), ChangeReason::CORRECTION_BY_OFFICE, 5);
    EXPECT_EQ(kanji_of(*s->get("10000000001")), "甲　再");
    {
        auto tx = s->transaction();
        s->prefetch({"10000000001"});
    } // rolled back
    put(*other, person("10000000001", "甲　後"), ChangeReason::CORRECTION_BY_OFFICE, 6);
    EXPECT_EQ(kanji_of(*s->get("10000000001")), "甲　後");
}

TEST_P(JukiStore, AResidentCodeChangeKeepsTheOldCodesVersionAndLinksTheCodes) {
    auto s = open("juki");
    put(*s, person("10000000001", "旧　番号"), ChangeReason::BIRTH, 1 * kDay);
    s->retire_code("10000000001", "10000000002", 2 * kDay);
    put(*s, person("10000000002", "旧　番号"), ChangeReason::RESIDENT_CODE_CHANGE, 2 * kDay);

    EXPECT_FALSE(s->get("10000000001"));
    EXPECT_TRUE(s->get("10000000002"));
    EXPECT_EQ(s->scalar("SELECT count(*) FROM history WHERE code = '10000000001'"), 1);
    EXPECT_EQ(s->scalar("SELECT superseded_ms FROM history WHERE code = '10000000001'"), 2 * kDay);
    EXPECT_EQ(s->scalar("SELECT count(*) FROM code_links WHERE new_code = '10000000002'"), 1);
}

TEST_P(JukiStore, ErasesOnlyWhatOutlivedItsPeriodAndLogsTheCounts) {
    Retention r;
    r.history_ms = 10 * kDay;
    r.removed_ms = 20 * kDay;
    r.provisions_ms = 5 * kDay;
    auto s = open("juki", r);
    put(*s, person("10000000001", "古　版"), ChangeReason::BIRTH, 1 * kDay);
    put(*s, person("10000000001", "中　版"), ChangeReason::CORRECTION_BY_OFFICE, 2 * kDay);  // supersedes at day 2
    put(*s, person("10000000001", "新　版"), ChangeReason::CORRECTION_BY_OFFICE, 15 * kDay); // supersedes at day 15
    put(*s, person("10000000003", "死亡　者"), ChangeReason::BIRTH, 1 * kDay);
    put(*s, person("10000000003", "死亡　者"), ChangeReason::DEATH, 3 * kDay, true);
    s->record_provision({1 * kDay, "agency:nenkin", "juki-beppyo1:5", "10000000001", "provided", "op", ""});
    s->record_provision({12 * kDay, "agency:nenkin", "juki-beppyo1:5", "10000000001", "provided", "op", ""});

    auto n = s->erase_expired(16 * kDay);
    // Past 10 days: the version superseded on day 2 and the deceased's birth version (superseded on
    // day 3); the version superseded on day 15 stays.
    EXPECT_EQ(n.history, 2u);
    EXPECT_EQ(n.residents, 0u); // removed on day 3: 13 days < 20
    EXPECT_EQ(n.provisions, 1u);
    ASSERT_TRUE(s->get("10000000001"));
    EXPECT_EQ(kanji_of(*s->get("10000000001")), "新　版");
    EXPECT_EQ(s->scalar("SELECT count(*) FROM history WHERE code = '10000000001'"), 1);
    EXPECT_EQ(s->provisions_of("10000000001").size(), 1u);

    n = s->erase_expired(24 * kDay);
    EXPECT_EQ(n.residents, 1u); // all of the removed resident, history included
    EXPECT_FALSE(s->get("10000000003"));
    EXPECT_EQ(s->scalar("SELECT count(*) FROM history WHERE code = '10000000003'"), 0);
    EXPECT_EQ(s->scalar("SELECT count(*) FROM erasures"), 2);
    EXPECT_EQ(s->scalar("SELECT sum(history) FROM erasures"), 2);
}

TEST_P(JukiStore, OnlyQueryAnsweringRolesKeepTheSearchIndexes) {
    StoreOptions cs;
    cs.search_indexes = false;
    auto a = open("cs", {}, cs);
    auto b = open("national");
    EXPECT_EQ(a->scalar(index_count("residents_number")), 0);
    EXPECT_EQ(b->scalar(index_count("residents_number")), 1);
    EXPECT_EQ(b->scalar(index_count("residents_municipality")), 1);
    // Without the index the answers are the same, only slower.
    put(*a, person("10000000001", "索引　無"), ChangeReason::BIRTH, 1);
    EXPECT_EQ(a->by_number("123456789018").size(), 1u);
    EXPECT_EQ(a->residents_of("131016", "", 10).size(), 1u);
}

TEST_P(JukiStore, FindsBy4InformationAndListsAMunicipalityInCodeOrderInPages) {
    auto s = open("national");
    for (int i = 5; i >= 1; --i) {
        auto p = person("1000000000" + std::to_string(i), i % 2 ? "検索　奇数" : "検索　偶数");
        p.sex = i == 3 ? schema::Sex::MALE : schema::Sex::FEMALE;
        put(*s, p, ChangeReason::BIRTH, i, false, false);
    }
    put(*s, person("10000000004", "検索　偶数"), ChangeReason::DEATH, 10, true); // removed: not listed
    EXPECT_EQ(s->by_attributes("検索　奇数", "", 0, "").size(), 3u);
    EXPECT_EQ(s->by_attributes("テスト", "", 0, "").size(), 5u); // the kana matches too
    EXPECT_EQ(s->by_attributes("検索　奇数", "1980-01-01", 1, "").size(), 1u); // MALE = 1
    EXPECT_EQ(s->by_attributes("検索　奇数", "1980-01-02", 0, "").size(), 0u);
    EXPECT_EQ(s->by_attributes("検索　奇数", "", 0, "東京都千代田区一番町1").size(), 3u);
    auto page = s->residents_of("131016", "", 2);
    ASSERT_EQ(page.size(), 2u);
    EXPECT_EQ(page[0].code, "10000000001");
    EXPECT_EQ(page[1].code, "10000000002");
    page = s->residents_of("131016", page.back().code, 10);
    ASSERT_EQ(page.size(), 2u);
    EXPECT_EQ(page[0].code, "10000000003");
    EXPECT_EQ(page[1].code, "10000000005");
    EXPECT_TRUE(s->residents_of("271004", "", 10).empty());
}

TEST_P(JukiStore, KeepsTheBookkeepingOfTheChainAndOfConsistencyChecks) {
    auto s = open("juki");
    // Answers per (sender, batch); a second answer for the same batch is refused.
    std::vector<uint8_t> answer{0, 1, 2, 255};
    s->save_answer("pref:13", "b1", answer, 5);
    EXPECT_EQ(s->answer("pref:13", "b1"), answer);
    EXPECT_FALSE(s->answer("pref:27", "b1"));
    EXPECT_THROW(s->save_answer("pref:13", "b1", answer, 6), std::exception);
    // Expectations: the first one of a (batch, stage) counts, pending until confirmed.
    Expectation e;
    e.batch = "b1";
    e.stage = "pref";
    e.to = "pref:13";
    e.municipality = "131016";
    e.count = 3;
    e.hashes.assign(96, 7);
    e.context = {1, 2};
    e.sent_ms = 100;
    e.deadline_ms = 200;
    s->expect(e);
    auto again = e;
    again.count = 99;
    s->expect(again);
    auto got = s->expected("b1", "pref");
    ASSERT_TRUE(got);
    EXPECT_EQ(got->count, 3u);
    EXPECT_EQ(got->hashes, e.hashes);
    EXPECT_EQ(got->context, e.context);
    EXPECT_EQ(got->deadline_ms, 200);
    EXPECT_EQ(got->confirmed_ms, 0);
    ASSERT_EQ(s->pending().size(), 1u);
    EXPECT_TRUE(s->pending()[0].hashes.empty());
    s->confirm("b1", "pref", 150);
    EXPECT_EQ(s->expected("b1", "pref")->confirmed_ms, 150);
    EXPECT_TRUE(s->pending().empty());
    // Alarms in order; notices counted by type.
    s->alarm("b1", "first", 1);
    s->alarm("", "second", 2);
    auto alarms = s->alarms();
    ASSERT_EQ(alarms.size(), 2u);
    EXPECT_EQ(alarms[0].detail, "first");
    EXPECT_EQ(alarms[1].at_ms, 2);
    s->record_notice("juki.MoveInNotice", "muni:271004", "10000000001", {9, 9}, 3);
    EXPECT_EQ(s->notices("juki.MoveInNotice"), 1u);
    EXPECT_EQ(s->notices("juki.RecordNotice"), 0u);
    // A consistency check: chunks once each, codes seen, the residents not seen, differences.
    for (int i = 1; i <= 4; ++i) put(*s, person("1000000000" + std::to_string(i), "整合　性"), ChangeReason::BIRTH, i);
    EXPECT_FALSE(s->chunk_seen("c1", 0));
    EXPECT_TRUE(s->chunk_seen("c1", 0));
    EXPECT_FALSE(s->chunk_seen("c1", 1));
    EXPECT_EQ(s->chunks("c1"), 2u);
    EXPECT_FALSE(s->total("c1"));
    s->set_total("c1", 3);
    s->set_total("c1", 2);
    EXPECT_EQ(s->total("c1"), 2u);
    s->mark_seen("c1", "10000000002");
    s->mark_seen("c1", "10000000002");
    s->mark_seen("c1", "10000000004");
    EXPECT_EQ(s->seen("c1"), 2u);
    EXPECT_EQ(s->unseen("c1", "131016", "", 10), (std::vector<std::string>{"10000000001", "10000000003"}));
    EXPECT_EQ(s->unseen("c1", "131016", "10000000001", 10), (std::vector<std::string>{"10000000003"}));
    s->add_difference("c1", "10000000001", 1, "name,address", "");
    s->add_difference("c1", "10000000003", 2, "", "271004");
    s->add_difference("c1", "10000000005", 1, "sex", "");
    EXPECT_EQ(s->difference_count("c1", 1), 2u);
    auto diffs = s->differences("c1", 2);
    ASSERT_EQ(diffs.size(), 2u);
    EXPECT_EQ(diffs[0].fields, "name,address");
    EXPECT_EQ(diffs[1].registered_at, "271004");
    s->forget_check("c1");
    EXPECT_EQ(s->chunks("c1"), 0u);
    EXPECT_EQ(s->seen("c1"), 0u);
    EXPECT_FALSE(s->total("c1"));
    EXPECT_EQ(s->difference_count("c1", 1), 0u);
}

TEST_P(JukiStore, TransactionsRollBackUnlessCommittedAndNestAsSavepoints) {
    auto s = open("juki");
    {
        auto tx = s->transaction();
        put(*s, person("10000000001", "取消　者"), ChangeReason::BIRTH, 1);
    } // not committed
    EXPECT_FALSE(s->get("10000000001"));
    {
        auto tx = s->transaction();
        put(*s, person("10000000002", "確定　者"), ChangeReason::BIRTH, 1);
        {
            auto inner = s->transaction();
            put(*s, person("10000000003", "内側　者"), ChangeReason::BIRTH, 1);
        } // the savepoint rolls back, the outer transaction goes on
        {
            auto inner = s->transaction();
            put(*s, person("10000000004", "内側　確定"), ChangeReason::BIRTH, 1);
            inner.commit();
        }
        tx.commit();
    }
    EXPECT_TRUE(s->get("10000000002"));
    EXPECT_FALSE(s->get("10000000003"));
    EXPECT_TRUE(s->get("10000000004"));
    // A failed statement inside a transaction fails the whole of it; the store works on afterwards.
    s->save_answer("pref:13", "b1", {1}, 1);
    EXPECT_THROW(
        {
            auto tx = s->transaction();
            put(*s, person("10000000005", "失敗　者"), ChangeReason::BIRTH, 1);
            s->save_answer("pref:13", "b1", {2}, 2); // a second answer for the batch
            tx.commit();
        },
        std::exception);
    EXPECT_FALSE(s->get("10000000005"));
    EXPECT_EQ(s->answer("pref:13", "b1"), std::vector<uint8_t>{1});
    put(*s, person("10000000006", "後続　者"), ChangeReason::BIRTH, 1);
    EXPECT_TRUE(s->get("10000000006"));
}

TEST_P(JukiStore, ReaderPoolAnswersABatchAsSingleLookupsDo) {
    auto s = open("national");
    // 601 residents; two of them share a number (ambiguous), every tenth key is unknown, some repeat.
    {
        auto tx = s->transaction();
        for (int i = 0; i < 601; ++i) {
            char code[16], number[16];
            std::snprintf(code, sizeof code, "%011d", 20000000 + i);
            std::snprintf(number, sizeof number, "%012d", 500000000 + (i == 600 ? 0 : i));
            put(*s, person(code, "読取　者", number), ChangeReason::BIRTH, i, false, false);
        }
        tx.commit();
    }
    std::vector<std::string> keys;
    for (int i = 0; i < 700; ++i) {
        char number[16];
        std::snprintf(number, sizeof number, "%012d", 500000000 + (i % 10 == 9 ? 900000 + i : (i * 7) % 600));
        keys.push_back(number);
    }
    ASSERT_GE(keys.size(), ReaderPool::kParallelFrom);
    auto pool = s->readers(3);
    EXPECT_EQ(pool->size(), 3u);
    auto got = pool->by_numbers(keys);
    ASSERT_EQ(got.size(), keys.size());
    size_t found = 0, ambiguous = 0;
    for (size_t i = 0; i < keys.size(); ++i) {
        auto one = s->by_number(keys[i]);
        ASSERT_EQ(got[i].size(), one.size()) << keys[i];
        for (size_t k = 0; k < one.size(); ++k) {
            EXPECT_EQ(got[i][k].code, one[k].code);
            EXPECT_EQ(got[i][k].record, one[k].record);
            EXPECT_EQ(got[i][k].updated_ms, one[k].updated_ms);
        }
        found += !one.empty();
        ambiguous += one.size() > 1;
    }
    EXPECT_EQ(found, 630u);
    EXPECT_GT(ambiguous, 0u);
    // A small batch is read on the calling thread, the same way.
    auto small = pool->by_numbers({keys[1], keys[9]});
    EXPECT_EQ(small[0].size(), 1u);
    EXPECT_TRUE(small[1].empty());
}

TEST_P(JukiStore, LoadRecordsFirstVersionsAndRefusesAResidentAlreadyThereAsAWhole) {
    auto s = open("national");
    auto a = first_versions(0, 1000);
    EXPECT_EQ(s->count_up_to(10), 0u);
    s->load(a->getRoot<IdentityUpdate>().getRecords().asReader(), 42);
    EXPECT_EQ(s->count(), 1000u);
    EXPECT_EQ(s->count_up_to(10), 10u);
    EXPECT_EQ(s->count_up_to(1000), 1000u);
    EXPECT_EQ(s->count_up_to(5000), 1000u);
    auto r = s->get("00040000999");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->updated_ms, 42);
    EXPECT_EQ(r->my_number, "000700000999");
    EXPECT_EQ(kanji_of(*r), "一括　登録");
    EXPECT_EQ(s->by_number("000700000500").size(), 1u);
    EXPECT_EQ(s->by_attributes("一括　登録", "1980-01-01", 0, "").size(), 50u); // LIMIT 50
    // 990..1989: the first ten are there already; nothing of the load is recorded.
    auto b = first_versions(990, 1000);
    EXPECT_THROW(s->load(b->getRoot<IdentityUpdate>().getRecords().asReader(), 43), std::exception);
    EXPECT_EQ(s->count(), 1000u);
    EXPECT_FALSE(s->get("00040001500"));
    // A later version of a loaded resident goes through put and supersedes the loaded one.
    put(*s, person("00040000001", "一括　更新", "000700000001"), ChangeReason::CORRECTION_BY_OFFICE, 50);
    EXPECT_EQ(s->scalar("SELECT count(*) FROM history"), 1);
}

// Records are kept packed, by put and by load alike, and read back canonical. A row written before
// records were packed (canonical bytes as they are) still reads; bytes that are neither are an
// error naming the resident.
TEST_P(JukiStore, KeepsRecordsPackedAndStillReadsRowsWrittenBeforePacking) {
    auto s = open("juki");
    capnp::MallocMessageBuilder mb;
    auto one = mb.initRoot<IdentityRecord>();
    fill_record(one, person("10000000001", "詰め　一"), ChangeReason::BIRTH);
    auto canonical = canonical_bytes(one.asReader());
    s->put(one.asReader(), canonical, false, kDay, false);
    capnp::MallocMessageBuilder lb;
    auto two = lb.initRoot<IdentityUpdate>().initRecords(1)[0];
    fill_record(two, person("10000000002", "詰め　二", "234567890123"), ChangeReason::BIRTH);
    s->load(lb.getRoot<IdentityUpdate>().getRecords().asReader(), kDay);

    const auto size = static_cast<int64_t>(canonical.size());
    for (auto code : {"10000000001", "10000000002"}) {
        auto stored = s->scalar(std::string("SELECT length(record) FROM residents WHERE code = '") + code + "'");
        EXPECT_GT(stored, 0) << code;
        EXPECT_LT(stored, size * 3 / 4) << code << ": " << stored << " bytes stored for " << size << " canonical";
    }
    EXPECT_EQ(s->get("10000000001")->record, canonical);
    EXPECT_EQ(canonical_bytes(RecordReader(s->get("10000000002")->record).get()), s->get("10000000002")->record);
    EXPECT_EQ(kanji_of(*s->get("10000000002")), "詰め　二");

    auto set_record = [&](const std::vector<uint8_t>& bytes) {
        std::string hex;
        for (auto b : bytes) {
            char h[3];
            std::snprintf(h, sizeof h, "%02x", b);
            hex += h;
        }
        std::string value = pg() ? "'\\x" + hex + "'::bytea" : "x'" + hex + "'";
        EXPECT_EQ(s->scalar("UPDATE residents SET record = " + value + " WHERE code = '10000000001' RETURNING 1"), 1);
    };
    set_record(canonical); // as a store written before packing holds it
    EXPECT_EQ(s->scalar("SELECT length(record) FROM residents WHERE code = '10000000001'"), size);
    auto old = s->get("10000000001");
    ASSERT_TRUE(old);
    EXPECT_EQ(old->record, canonical);
    EXPECT_EQ(s->by_number("123456789018").at(0).record, canonical);

    set_record({0x50, 0xff}); // a packed word cut short
    try {
        s->get("10000000001");
        ADD_FAILURE() << "a damaged record was read";
    } catch (const std::runtime_error& e) {
        std::string what = e.what();
        EXPECT_NE(what.find("resident 10000000001"), std::string::npos) << what;
        EXPECT_NE(what.find("damaged"), std::string::npos) << what;
    }
    EXPECT_EQ(kanji_of(*s->get("10000000002")), "詰め　二"); // the others read as before
}

TEST_P(JukiStore, RecordsItsSchemaVersionAndReopensWithoutMigratingAgain) {
    {
        auto s = open("juki");
        EXPECT_EQ(s->schema_version(), pg() ? PgIdentityStore::kSchemaVersion : 2);
        put(*s, person("10000000001", "再　開"), ChangeReason::BIRTH, 1);
    }
    auto s = open("juki");
    EXPECT_EQ(s->schema_version(), pg() ? PgIdentityStore::kSchemaVersion : 2);
    EXPECT_TRUE(s->get("10000000001"));
    EXPECT_EQ(s->count(), 1u);
}

TEST_P(JukiStore, RefusesAStoreFromANewerBuild) {
    {
        auto s = open("juki");
        s->scalar(pg() ? "UPDATE schema_version SET version = 99 RETURNING version" : "PRAGMA user_version=99");
        EXPECT_EQ(s->schema_version(), 99);
    }
    try {
        auto s = open("juki");
        FAIL() << "opened a store of schema version 99";
    } catch (const std::exception& e) {
        EXPECT_NE(std::string(e.what()).find("schema version 99"), std::string::npos) << e.what();
    }
}

INSTANTIATE_TEST_SUITE_P(Backends, JukiStore, ::testing::Values(Backend::Sqlite, Backend::Postgres),
                         [](const ::testing::TestParamInfo<Backend>& i) {
                             return std::string(i.param == Backend::Sqlite ? "Sqlite" : "Postgres");
                         });

// ------------------------------------------------------------------ the 個人番号 registry

class JukiNumbers : public ::testing::TestWithParam<Backend> {
protected:
    std::unique_ptr<Numbers> open(std::vector<uint8_t> secret = std::vector<uint8_t>(48, 'n')) {
        if (GetParam() == Backend::Sqlite) return std::make_unique<NumberRegistry>(tmp / "numbers.db", secret);
        return std::make_unique<PgNumberRegistry>(test::pg_dsn(), schema.name(), secret);
    }
    test::TempDir tmp;
    test::PgSchema schema{"numbers"};
};

TEST_P(JukiNumbers, IssuesStableUniqueNumbersKeepsTheirHistoryAndFollowsCodeChanges) {
    auto n = open();
    auto a = n->assign("req-1", "10000000001", false, "", 1);
    EXPECT_EQ(a.generation, 1u);
    EXPECT_TRUE(a.previous.empty());
    EXPECT_TRUE(validate::my_number("myNumber", a.my_number)) << a.my_number;
    EXPECT_EQ(n->assign("req-1", "10000000001", false, "", 2).my_number, a.my_number) << "the same request";
    EXPECT_EQ(n->assign("req-2", "10000000001", false, "", 2).my_number, a.my_number) << "the person's number";
    EXPECT_THROW(n->assign("req-1", "10000000002", false, "", 3), std::invalid_argument);
    auto b = n->assign("req-3", "10000000002", false, "", 3);
    EXPECT_NE(b.my_number, a.my_number);
    auto c = n->assign("req-4", "10000000001", true, "漏えい", 4);
    EXPECT_EQ(c.generation, 2u);
    EXPECT_EQ(c.previous, a.my_number);
    EXPECT_NE(c.my_number, a.my_number);
    EXPECT_EQ(n->history("10000000001"), (std::vector<std::string>{a.my_number, c.my_number}));
    EXPECT_EQ(n->current("10000000001"), c.my_number);
    EXPECT_EQ(n->holder(a.my_number), "10000000001") << "a replaced number stays issued";
    EXPECT_FALSE(n->holder("123456789018"));
    // 住民票コード変更: the numbers follow; a code that has a number cannot take another's.
    EXPECT_THROW(n->change_code("10000000001", "10000000002", 5), std::invalid_argument);
    EXPECT_THROW(n->change_code("10000000009", "10000000008", 5), std::invalid_argument);
    n->change_code("10000000001", "10000000003", 5);
    EXPECT_FALSE(n->current("10000000001"));
    EXPECT_EQ(n->current("10000000003"), c.my_number);
    EXPECT_EQ(n->history("10000000003").size(), 2u);
    // Inside a transaction that is rolled back, nothing is issued.
    {
        auto tx = n->transaction();
        n->assign("req-5", "10000000004", false, "", 6);
    }
    EXPECT_FALSE(n->current("10000000004"));
    // Another backend, the same secret: the same numbers (they come from the HMAC, not the database).
    NumberRegistry other(tmp / "other.db", std::vector<uint8_t>(48, 'n'));
    EXPECT_EQ(other.assign("x", "10000000001", false, "", 1).my_number, a.my_number);
    EXPECT_THROW(open(std::vector<uint8_t>(16, 'n')), std::invalid_argument) << "a short secret";
}

// prefetch() (a batch's residents' numbers read at once; on PostgreSQL one statement instead of a
// round trip each) never shows a number other than the one current() would read.
TEST_P(JukiNumbers, PrefetchedNumbersFollowAssignmentsAndCodeChangesAndEndWithTheTransaction) {
    auto n = open();
    auto other = open(); // another connection to the same registry
    auto a = n->assign("req-1", "10000000001", false, "", 1);
    auto b = n->assign("req-2", "10000000002", false, "", 1);
    {
        auto tx = n->transaction();
        n->prefetch({"10000000001", "10000000002", "10000000003", "10000000004"});
        EXPECT_EQ(n->current("10000000001"), a.my_number);
        EXPECT_FALSE(n->current("10000000003"));
        auto c = n->assign("req-3", "10000000003", false, "", 2);
        EXPECT_EQ(n->current("10000000003"), c.my_number) << "a number assigned after the prefetch";
        auto changed = n->assign("req-4", "10000000001", true, "漏えい", 2);
        EXPECT_EQ(n->current("10000000001"), changed.my_number) << "a number changed after the prefetch";
        n->change_code("10000000002", "10000000004", 2);
        EXPECT_FALSE(n->current("10000000002"));
        EXPECT_EQ(n->current("10000000004"), b.my_number);
        tx.commit();
    }
    other->assign("req-5", "10000000005", false, "", 3);
    {
        auto tx = n->transaction();
        n->prefetch({"10000000005", "10000000006"});
        EXPECT_TRUE(n->current("10000000005")) << "another connection's committed number";
    } // rolled back
    other->assign("req-6", "10000000006", false, "", 4);
    EXPECT_TRUE(n->current("10000000006")) << "nothing prefetched outlives its transaction";
    n->prefetch({"10000000007"}); // outside a transaction: nothing kept
    other->assign("req-7", "10000000007", false, "", 5);
    EXPECT_TRUE(n->current("10000000007"));
}

INSTANTIATE_TEST_SUITE_P(Backends, JukiNumbers, ::testing::Values(Backend::Sqlite, Backend::Postgres),
                         [](const ::testing::TestParamInfo<Backend>& i) {
                             return std::string(i.param == Backend::Sqlite ? "Sqlite" : "Postgres");
                         });

// ------------------------------------------------------------------ SQLite only

TEST(JukiSqliteStore, MigratesAStoreWrittenInTheFirstLayout) {
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
    // It keeps the 4 KiB pages it was made with, and checkpoints every 64 MiB of WAL all the same.
    EXPECT_EQ(scalar(s.db(), "PRAGMA page_size"), 4096);
    EXPECT_EQ(scalar(s.db(), "PRAGMA wal_autocheckpoint"), 16384);
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

TEST(JukiSqliteStore, ANewStoreHas16KiBPagesAndCheckpointsEvery64MiB) {
    test::TempDir tmp;
    IdentityStore s(tmp / "new.db");
    EXPECT_EQ(scalar(s.db(), "PRAGMA page_size"), 16384);
    EXPECT_EQ(scalar(s.db(), "PRAGMA wal_autocheckpoint"), 4096);
    sql::Stmt q(s.db(), "PRAGMA journal_mode");
    ASSERT_TRUE(q.row());
    EXPECT_EQ(q.col(0), "wal");
}

// A load that drops the search indexes commits its rows with no checkpoint, then builds the
// indexes in a transaction of their own while the rows are copied into the file. A failed build
// leaves the rows in; the store builds the indexes when it next opens. A load rolled back gets
// its indexes back and the store checkpoints as before.
TEST(JukiSqliteStore, ALoadsRowsStandWhenItsIndexBuildFailsAndTheIndexesComeWithTheNextOpen) {
    test::TempDir tmp;
    const auto file = tmp / "national.db";
    auto indexes = [](sqlite3* db) {
        return scalar(db, "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name IN ('residents_number',"
                          " 'residents_name', 'residents_kana', 'residents_municipality')");
    };
    auto other = [&](const char* text) { // another process's connection, such as an operator's
        sqlite3* db = sql::open(file, "PRAGMA busy_timeout=5000;");
        sql::exec(db, text);
        sqlite3_close(db);
    };
    auto load = [&](IdentityStore& s, int from, int n) {
        auto a = first_versions(from, n);
        Store::Transaction tx(s);
        s.drop_search_indexes();
        EXPECT_EQ(scalar(s.db(), "PRAGMA wal_autocheckpoint"), 0);
        s.load(a->getRoot<IdentityUpdate>().getRecords().asReader(), 42);
        EXPECT_EQ(indexes(s.db()), 0);
        tx.commit();
    };
    {
        IdentityStore s(file);
        // Built: the rows and the indexes are in the file itself, not only in the WAL.
        load(s, 0, 2000);
        s.build_search_indexes();
        EXPECT_EQ(indexes(s.db()), 4);
        EXPECT_EQ(scalar(s.db(), "PRAGMA wal_autocheckpoint"), 4096);
        EXPECT_EQ(static_cast<int64_t>(std::filesystem::file_size(file)),
                  scalar(s.db(), "PRAGMA page_count") * scalar(s.db(), "PRAGMA page_size"));
        EXPECT_EQ(s.by_number("000700001999").size(), 1u);

        // A failed build: a table takes the name of one of the indexes after the rows committed.
        load(s, 2000, 1000);
        other("CREATE TABLE residents_kana (x)");
        try {
            s.build_search_indexes();
            ADD_FAILURE() << "the build should have failed";
        } catch (const std::exception& e) {
            EXPECT_NE(std::string(e.what()).find("residents_kana"), std::string::npos) << e.what();
        }
        EXPECT_EQ(s.count(), 3000u);
        EXPECT_EQ(indexes(s.db()), 0) << "the four are built in one transaction";
        EXPECT_EQ(scalar(s.db(), "PRAGMA wal_autocheckpoint"), 4096);
        EXPECT_EQ(s.by_number("000700002999").size(), 1u) << "found without the index, only slower";
        other("DROP TABLE residents_kana");
    }
    {
        IdentityStore s(file);
        EXPECT_EQ(indexes(s.db()), 4);
        EXPECT_EQ(s.count(), 3000u);
        // A load rolled back: the dropped indexes are back, the checkpoint too.
        {
            auto a = first_versions(0, 10); // all there already
            Store::Transaction tx(s);
            s.drop_search_indexes();
            EXPECT_THROW(s.load(a->getRoot<IdentityUpdate>().getRecords().asReader(), 43), std::exception);
        }
        EXPECT_EQ(indexes(s.db()), 4);
        EXPECT_EQ(scalar(s.db(), "PRAGMA wal_autocheckpoint"), 4096);
        // Built inside the load's transaction (as before the two commits): the checkpoint is back.
        {
            auto a = first_versions(3000, 100);
            Store::Transaction tx(s);
            s.drop_search_indexes();
            s.load(a->getRoot<IdentityUpdate>().getRecords().asReader(), 44);
            s.build_search_indexes();
            tx.commit();
        }
        EXPECT_EQ(indexes(s.db()), 4);
        EXPECT_EQ(s.count(), 3100u);
        EXPECT_EQ(scalar(s.db(), "PRAGMA wal_autocheckpoint"), 4096);
    }
}

// ------------------------------------------------------------------ PostgreSQL only

TEST(JukiPgStore, NeverShowsThePasswordInDescriptionsOrErrors) {
    test::PgSchema schema("pw");
    auto dsn = test::pg_dsn();
    // Trust authentication ignores the password; it is in the connection string all the same.
    PgIdentityStore s(dsn + (dsn.find('?') == std::string::npos ? "?" : "&") + "password=hunter2-secret",
                      schema.name());
    auto d = s.describe();
    EXPECT_EQ(d.find("hunter2"), std::string::npos) << d;
    EXPECT_NE(d.find("127.0.0.1"), std::string::npos) << d;
    EXPECT_NE(d.find(schema.name()), std::string::npos) << d;
    for (auto bad : {std::string("postgresql://postgres:hunter2-secret@127.0.0.1:1/postgres?connect_timeout=5"),
                     std::string("host=127.0.0.1 port=1 user=postgres password=hunter2-secret connect_timeout=5")}) {
        try {
            PgIdentityStore x(bad, schema.name());
            FAIL() << "connected to port 1";
        } catch (const std::exception& e) {
            std::string what = e.what();
            EXPECT_EQ(what.find("hunter2"), std::string::npos) << what;
            EXPECT_NE(what.find("cannot connect"), std::string::npos) << what;
        }
    }
}

TEST(JukiPgStore, RefusesASchemaNameThatIsNotAPlainIdentifier) {
    // Strings, not pointers: a pointer into a temporary string would dangle by the first turn.
    const std::vector<std::string> names{"", "Juki", "1juki", "ju\"ki", "juki; DROP TABLE x", std::string(64, 'a')};
    for (const auto& bad : names) {
        try {
            PgIdentityStore s(test::pg_dsn(), bad);
            FAIL() << "accepted schema '" << bad << "'";
        } catch (const std::invalid_argument& e) {
            EXPECT_NE(std::string(e.what()).find("store_schema"), std::string::npos) << e.what();
        }
    }
    EXPECT_TRUE(valid_schema_name("juki_national_2"));
}

TEST(JukiPgStore, NodesStartingOnOneSchemaAtOnceMigrateItOnce) {
    test::PgSchema schema("race");
    std::vector<std::thread> threads;
    std::vector<std::string> errors(4);
    for (size_t i = 0; i < errors.size(); ++i)
        threads.emplace_back([&, i] {
            try {
                PgIdentityStore s(test::pg_dsn(), schema.name());
                if (s.schema_version() != PgIdentityStore::kSchemaVersion) errors[i] = "wrong version";
            } catch (const std::exception& e) {
                errors[i] = e.what();
            }
        });
    for (auto& t : threads) t.join();
    for (auto& e : errors) EXPECT_EQ(e, "");
    PgIdentityStore s(test::pg_dsn(), schema.name());
    EXPECT_EQ(s.scalar("SELECT count(*) FROM schema_version"), 1);
}

// Writes inside a transaction are queued in a pipeline (pg::Conn::queue) and their results read
// later: a write the server refuses still fails its transaction, with the server's reason and the
// statement, and nothing of that transaction stays. Reads in between see the queued writes.
TEST(JukiPgStore, AQueuedWriteTheServerRefusesFailsItsTransactionAndNothingOfItStays) {
    test::PgSchema schema("pipeline");
    PgIdentityStore s(test::pg_dsn(), schema.name());
    put(s, person("10000000001", "既存　一"), ChangeReason::BIRTH, 1);
    std::string error;
    try {
        auto tx = s.transaction();
        // More writes than one pipeline holds (it is read every 256), then one the server refuses
        // (not UTF-8), then more after it.
        for (int i = 0; i < 600; ++i) {
            char code[12];
            std::snprintf(code, sizeof code, "2%010d", i);
            put(s, person(code, "一括　" + std::to_string(i)), ChangeReason::BIRTH, 2);
        }
        ASSERT_TRUE(s.get("20000000599")) << "a read sees the writes queued before it";
        put(s, person("10000000001", "既存　改"), ChangeReason::CORRECTION_BY_OFFICE, 2);
        put(s, person("10000000002", "\xff\xfe"), ChangeReason::BIRTH, 2, false, false);
        put(s, person("10000000003", "後続　三"), ChangeReason::BIRTH, 2);
        tx.commit();
    } catch (const std::exception& e) {
        error = e.what();
    }
    EXPECT_NE(error.find("22021"), std::string::npos) << error; // character_not_in_repertoire
    EXPECT_NE(error.find("INSERT INTO residents"), std::string::npos) << "names the statement: " << error;
    EXPECT_EQ(s.count(), 1u);
    EXPECT_EQ(s.scalar("SELECT count(*) FROM history"), 0);
    ASSERT_TRUE(s.get("10000000001"));
    EXPECT_EQ(kanji_of(*s.get("10000000001")), "既存　一");
    // The connection is usable again: the next transaction commits.
    {
        auto tx = s.transaction();
        put(s, person("10000000003", "後続　三"), ChangeReason::BIRTH, 3);
        tx.commit();
    }
    EXPECT_TRUE(s.get("10000000003"));
    // A refused write that a read reaches first fails the read, inside the transaction.
    EXPECT_THROW(
        {
            auto tx = s.transaction();
            put(s, person("10000000004", "\xff"), ChangeReason::BIRTH, 4);
            s.get("10000000001");
        },
        std::runtime_error);
    EXPECT_FALSE(s.get("10000000004"));
}

TEST(JukiPgStore, ReconnectsAfterADroppedConnectionButNeverInsideATransaction) {
    test::PgSchema schema("drop");
    PgIdentityStore s(test::pg_dsn(), schema.name());
    put(s, person("10000000001", "再　接続"), ChangeReason::BIRTH, 1);
    int64_t pid = 0;
    auto kill = [&] { // waits (up to 60 s) until the server process is gone
        test::pg_exec("SELECT pg_terminate_backend(" + std::to_string(pid) + ", 60000)");
    };
    // Outside a transaction: the statement is retried once on a new connection.
    pid = s.scalar("SELECT pg_backend_pid()");
    kill();
    ASSERT_TRUE(s.get("10000000001"));
    auto second = s.scalar("SELECT pg_backend_pid()");
    EXPECT_NE(second, pid) << "a new server process";
    pid = second;
    // Inside one: the transaction is gone with the connection; the caller sees the error and nothing
    // of it is recorded.
    EXPECT_THROW(
        {
            auto tx = s.transaction();
            put(s, person("10000000002", "途中　切断"), ChangeReason::BIRTH, 2);
            kill();
            put(s, person("10000000003", "途中　切断"), ChangeReason::BIRTH, 3);
            tx.commit();
        },
        std::exception);
    EXPECT_FALSE(s.get("10000000002"));
    EXPECT_TRUE(s.get("10000000001"));
}
