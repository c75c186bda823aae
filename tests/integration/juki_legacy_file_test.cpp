// adapters/legacy-file against real hosts: a municipality's CS (juki cs + legacy-file), its
// prefecture and J-LIS on loopback with their example policies. Real record files in both shipped
// profiles go through the inbox to J-LIS and back into a result file; every kind of bad input is
// refused naming the field and the rule without losing what was accepted; a restart in the middle
// of a file records every record once. Each test runs on both store backends: every tier's juki
// store in SQLite files, and every tier's in its own schema of the PostgreSQL test cluster (ctest
// fixture juki_pg).
#include "collector.hpp"
#include "juki_support.hpp"
#include "network.hpp"
#include "juki_backend.hpp"

#include <settings.hpp>

#include <juki.capnp.h>
#include <renkei/plugin_context.hpp>
#include <renkei/sdk.hpp>
#include <sqlite3.h>

#include <gtest/gtest.h>

#include <iconv.h>

#include <map>
#include <regex>
#include <sstream>

using namespace renkei;
using namespace renkei::test;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

const std::string kProfiles = std::string(RENKEI_SOURCE_DIR) + "/adapters/legacy-file/profiles/";

std::string cp932(const std::string& utf8) {
    iconv_t cd = iconv_open("CP932", "UTF-8");
    std::string out(utf8.size() * 2 + 8, '\0');
    char* in = const_cast<char*>(utf8.data());
    size_t il = utf8.size(), ol = out.size();
    char* o = out.data();
    size_t rc = iconv(cd, &in, &il, &o, &ol);
    iconv_close(cd);
    if (rc == static_cast<size_t>(-1)) throw std::runtime_error("not encodable in CP932: " + utf8);
    out.resize(out.size() - ol);
    return out;
}

// A resident as the municipality's 住民記録システム writes them.
struct Resident {
    std::string code, number, kanji, kana, kana_half, address;
    int year = 1980, month = 1, day = 1;
    bool male = false;
    std::string reason = "birth"; // birth | moveWithin
    std::string municipality = "131016";
};

const char* const kNames[][3] = {{"佐藤　花子", "サトウ　ハナコ", "ｻﾄｳ ﾊﾅｺ"}, {"鈴木　太郎", "スズキ　タロウ", "ｽｽﾞｷ ﾀﾛｳ"},
                                 {"高橋　陽菜", "タカハシ　ヒナ", "ﾀｶﾊｼ ﾋﾅ"}, {"田中　蓮", "タナカ　レン", "ﾀﾅｶ ﾚﾝ"},
                                 {"渡辺　葵", "ワタナベ　アオイ", "ﾜﾀﾅﾍﾞ ｱｵｲ"}, {"伊藤　翔", "イトウ　ショウ", "ｲﾄｳ ｼｮｳ"}};

Resident resident(int n) {
    Resident r;
    char code[16];
    std::snprintf(code, sizeof code, "%011d", 52000000 + n);
    r.code = code;
    auto& name = kNames[n % 6];
    r.kanji = name[0];
    r.kana = name[1];
    r.kana_half = name[2];
    r.year = 1950 + n % 50;
    r.month = 1 + n % 12;
    r.day = 1 + n % 28;
    r.male = n % 2;
    r.address = "東京都千代田区霞が関" + std::to_string(1 + n % 3) + "丁目" + std::to_string(1 + n % 20) + "番";
    return r;
}

std::string western(int y, int m, int d) {
    char b[16];
    std::snprintf(b, sizeof b, "%04d-%02d-%02d", y, m, d);
    return b;
}
std::string wareki(int y, int m, int d) {
    int v = y * 10000 + m * 100 + d;
    char era = v >= 20190501 ? '5' : v >= 19890108 ? '4' : v >= 19261225 ? '3' : '2';
    int base = era == '5' ? 2019 : era == '4' ? 1989 : era == '3' ? 1926 : 1912;
    char b[64];
    std::snprintf(b, sizeof b, "%c%02d%02d%02d", era, y - base + 1, m, d);
    return b;
}

std::string pad(const std::string& bytes, size_t width, const std::string& filler) {
    std::string b = bytes;
    while (b.size() + filler.size() <= width) b += filler;
    while (b.size() < width) b += ' ';
    if (b.size() != width) throw std::runtime_error("field too wide");
    return b;
}

// One file in one of the shipped layouts.
struct Writer {
    std::string profile; // csv-utf8 | fixed-cp932
    std::string header() const {
        return profile == "csv-utf8" ? "住民票コード,個人番号,異動事由,異動年月日,氏名,氏名フリガナ,生年月日,性別,住所,"
                                       "地方公共団体コード,町字コード,旧氏,旧氏フリガナ,転出元コード,旧住民票コード,操作者ID\r\n"
                                     : "";
    }
    std::string line(const Resident& r, const std::string& birth_override = {}) const {
        if (profile == "csv-utf8") {
            std::string reason = r.reason == "birth" ? "出生" : "転居";
            return r.code + "," + r.number + "," + reason + ",2026-11-20," + r.kanji + "," + r.kana + "," +
                   (birth_override.empty() ? western(r.year, r.month, r.day) : birth_override) + "," +
                   (r.male ? "男" : "女") + "," + r.address + "," + r.municipality + ",,,,,,op-7\r\n";
        }
        std::string fullwidth_space = cp932("　");
        std::string rec = pad(r.code, 11, " ") + pad(r.number, 12, " ") + (r.reason == "birth" ? "04" : "03") + "5081120" +
                          pad(cp932(r.kanji), 40, fullwidth_space) + pad(cp932(r.kana_half), 40, " ") +
                          (birth_override.empty() ? wareki(r.year, r.month, r.day) : birth_override) + (r.male ? "1" : "2") +
                          r.municipality + pad(cp932(r.address), 80, fullwidth_space) + pad("", 20, " ") + pad("", 20, " ") +
                          pad("", 6, " ") + pad("", 11, " ") + pad("op-7", 8, " ");
        if (rec.size() != 271) throw std::runtime_error("record of " + std::to_string(rec.size()) + " bytes");
        return rec + "\r\n";
    }
    std::string file(const std::vector<Resident>& rs) const {
        std::string out = header();
        for (auto& r : rs) out += line(r);
        return out;
    }
    size_t first_line() const { return profile == "csv-utf8" ? 2 : 1; }
};

struct Outcome {
    std::string code, outcome, by, field, rule, message, jlis;
};
struct Result {
    std::map<std::string, std::string> header;
    std::map<size_t, Outcome> lines;
};
Result parse_result(const std::string& text) {
    Result r;
    std::istringstream in(text);
    std::string l;
    while (std::getline(in, l)) {
        if (l.rfind("# ", 0) == 0) {
            auto colon = l.find(": ");
            if (colon != std::string::npos) r.header[l.substr(2, colon - 2)] = l.substr(colon + 2);
            continue;
        }
        if (l.rfind("line\t", 0) == 0 || l.empty()) continue;
        std::vector<std::string> c;
        size_t pos = 0;
        while (true) {
            auto tab = l.find('\t', pos);
            c.push_back(l.substr(pos, tab - pos));
            if (tab == std::string::npos) break;
            pos = tab + 1;
        }
        if (c.size() == 8) r.lines[std::stoul(c[0])] = {c[1], c[2], c[3], c[4], c[5], c[6], c[7]};
    }
    return r;
}

struct LegacyNet {
    TempDir tmp;
    JukiBackend backend; // before the hosts: its schemas are dropped after they stop
    Network net{tmp};
    fs::path dir = tmp / "lf";
    NodeSpec cs_spec;
    std::unique_ptr<Collector> window;

    // `backend`: "sqlite" (a file per tier) or "postgresql" (a schema per tier on the test cluster).
    LegacyNet(const std::string& profile, std::map<std::string, std::string> extra = {},
              const std::string& backend_name = "sqlite")
        : backend(backend_name) {
        write_file(tmp / "secret", std::string(48, 's') + "legacy-file test secret");
        PluginConfig national;
        national.name = "juki";
        national.path = plugin_path("plugins/juki", "juki");
        national.settings = toml::table{{"role", "national"}, {"number_secret_file", (tmp / "secret").string()}};
        backend.add_store(national.settings, "jlis", tmp / "jlis" / "juki.db");
        PluginConfig pref = national;
        pref.settings = toml::table{{"role", "pref"}};
        backend.add_store(pref.settings, "pref", tmp / "pref" / "juki.db");
        PluginConfig cs = national;
        cs.settings = toml::table{{"role", "cs"}, {"municipality", "131016"}, {"prefecture", "pref:13"}};
        backend.add_store(cs.settings, "cs", tmp / "cs" / "juki.db");
        PluginConfig lf;
        lf.name = "legacy-file";
        lf.path = plugin_path("adapters/legacy-file", "legacy_file");
        lf.settings = toml::table{{"profile", kProfiles + profile + ".toml"}, {"dir", dir.string()},
                                  {"batch", "4"},          {"settle_ms", "100"},
                                  {"scan_interval_ms", "50"}, {"progress_interval_ms", "200"}};
        for (auto& [k, v] : extra) lf.settings.insert_or_assign(k, v);
        net.start({"jlis:juki", true, {national}, {{"pref:13", {"muni:13*"}}}, policy("juki-national.toml")});
        net.start({"pref:13", true, {pref}, {{"jlis:juki", {"jlis:*"}}, {"muni:131016", {}}}, policy("juki-prefecture.toml")});
        cs_spec = {"muni:131016", false, {cs, lf}, {{"pref:13", {"*"}}}, policy("juki-municipality.toml")};
        start_cs();
    }
    void start_cs() {
        net.start(cs_spec);
        window = std::make_unique<Collector>("window", std::vector<std::string>{"juki.NumberAssigned", "juki.NumberRequest.Fault"});
        net["muni:131016"].add_endpoint(window->endpoint());
    }

    // J-LIS generates each resident's 個人番号, as the 住民記録システム asks before a birth is notified.
    void numbers(std::vector<Resident>& rs) {
        std::map<std::string, Resident*> by_id;
        size_t before = window->all().size();
        for (auto& r : rs) {
            capnp::MallocMessageBuilder mb;
            mb.initRoot<juki::NumberRequest>().setResidentCode(r.code);
            auto words = capnp::messageToFlatArray(mb);
            auto b = words.asBytes();
            by_id[submit_new(net["muni:131016"], window->name(), "juki.NumberRequest", "jlis:juki",
                             std::string(reinterpret_cast<const char*>(b.begin()), b.size()), "bango-8")] = &r;
        }
        auto got = window->wait_for(before + rs.size(), 120s);
        for (auto& g : got) {
            auto it = by_id.find(g.correlation);
            if (it == by_id.end()) continue;
            ASSERT_EQ(g.type, "juki.NumberAssigned") << g.fault_message;
            sdk::Flat<juki::NumberAssigned> a(sdk::bytes_of(g.payload.data(), g.payload.size()));
            it->second->number = a.get().getMyNumber();
        }
        for (auto& r : rs) ASSERT_EQ(r.number.size(), 12u) << r.code;
    }

    // Drops a file into the inbox as a well-behaved sender does: written aside, renamed in.
    void drop(const std::string& name, const std::string& bytes) {
        write_file(dir / "inbox" / ("." + name + ".tmp"), bytes);
        fs::rename(dir / "inbox" / ("." + name + ".tmp"), dir / "inbox" / name);
    }
    // The result file once its status is one of `statuses` and the file has left the inbox and
    // work/ (empty Result on timeout).
    Result result(const std::string& name, std::initializer_list<const char*> statuses = {"complete", "failed"},
                  std::chrono::seconds timeout = 120s) {
        auto file = dir / "results" / (name + ".result");
        auto until = std::chrono::steady_clock::now() + timeout;
        while (std::chrono::steady_clock::now() < until) {
            if (fs::exists(file)) {
                auto r = parse_result(read_file(file));
                // The result is written first, then the file moves out of inbox/ or work/.
                bool moved = !fs::exists(dir / "inbox" / name);
                for (auto& e : fs::directory_iterator(dir / "work"))
                    if (e.path().filename().string().ends_with("-" + name)) moved = false;
                for (auto* s : statuses)
                    if (r.header["status"] == s && moved) return r;
            }
            std::this_thread::sleep_for(50ms);
        }
        return {};
    }
    // J-LIS's file: 住民票コード -> (name, address, versions recorded: the current one and those
    // it superseded).
    struct National {
        std::string name, address, municipality;
        int versions = 0;
    };
    std::map<std::string, National> national(const std::string& who = "jlis") {
        std::map<std::string, National> out;
        for (auto& row : backend.rows(who, "SELECT r.code, r.name, r.address, r.municipality,"
                                           " 1 + (SELECT COUNT(*) FROM history h WHERE h.code = r.code) FROM residents r"))
            out[row[0]] = {row[1], row[2], row[3], std::stoi(row[4])};
        return out;
    }
    // Rows of a query on one of the SQLite files, for failure messages.
    std::string dump(const fs::path& file, const char* sql) {
        std::string out;
        for (auto& row : JukiBackend::sqlite_rows(file, sql)) {
            for (auto& c : row) out += c + "|";
            out += "\n";
        }
        return out;
    }
    bool in_dir(const char* sub, const std::string& name) { return fs::exists(dir / sub / name); }
};

std::vector<Resident> residents(int from, int count) {
    std::vector<Resident> out;
    for (int i = from; i < from + count; ++i) out.push_back(resident(i));
    return out;
}

// (profile, store backend)
class LegacyFileProfiles : public ::testing::TestWithParam<std::tuple<std::string, std::string>> {
protected:
    const std::string& profile() const { return std::get<0>(GetParam()); }
    const std::string& backend() const { return std::get<1>(GetParam()); }
};
class LegacyFileBackends : public ::testing::TestWithParam<std::string> {};

} // namespace

// Births with 外字 in both layouts reach J-LIS; the result lists every record with J-LIS's answer;
// a second file of 転居 for some of them follows in order.
TEST_P(LegacyFileProfiles, RecordsReachJlisAndTheResultListsEachRecord) {
    LegacyNet t(profile(), {}, backend());
    Writer w{profile()};
    auto rs = residents(0, 6);
    rs[1].kanji = "\xEE\x80\x90山　花子"; // U+E010 (CP932 F050): the vendor's code for a 外字
    rs[2].kanji = "\xEE\x80\x80橋　陽菜"; // U+E000: 髙 in the 外字 table
    t.numbers(rs);
    t.drop("births.dat", w.file(rs));
    auto r = t.result("births.dat");
    ASSERT_EQ(r.header["status"], "complete");
    EXPECT_EQ(r.header["records"], "6; accepted: 6; rejected: 0; J-LIS recorded: 6; J-LIS rejected: 0");
    ASSERT_EQ(r.lines.size(), 6u);
    for (size_t i = 0; i < 6; ++i) {
        auto& o = r.lines[w.first_line() + i];
        EXPECT_EQ(o.code, rs[i].code);
        EXPECT_EQ(o.outcome, "accepted");
        EXPECT_EQ(o.jlis, "recorded");
    }
    EXPECT_TRUE(t.in_dir("processed", "births.dat"));
    EXPECT_FALSE(t.in_dir("inbox", "births.dat"));
    auto jlis = t.national();
    ASSERT_EQ(jlis.size(), 6u);
    EXPECT_EQ(jlis[rs[1].code].name, "\xF3\xB0\x80\x90山　花子") << "U+E010 arrives as the canonical U+F0010";
    EXPECT_EQ(jlis[rs[2].code].name, "髙橋　陽菜");
    EXPECT_EQ(jlis[rs[0].code].municipality, "131016");

    // 転居 of two of them, in a second file: only the address changes.
    std::vector<Resident> moves = {rs[0], rs[3]};
    for (auto& m : moves) {
        m.reason = "moveWithin";
        m.address = "東京都千代田区永田町一丁目7番";
    }
    t.drop("moves.dat", w.file(moves));
    auto m = t.result("moves.dat");
    ASSERT_EQ(m.header["status"], "complete");
    EXPECT_EQ(m.header["records"], "2; accepted: 2; rejected: 0; J-LIS recorded: 2; J-LIS rejected: 0");
    jlis = t.national();
    EXPECT_EQ(jlis[rs[0].code].address, "東京都千代田区永田町一丁目7番");
    EXPECT_EQ(jlis[rs[0].code].versions, 2);
    EXPECT_EQ(jlis[rs[1].code].versions, 1);
    auto metrics = read_file(t.dir / "legacy-file.prom");
    EXPECT_NE(metrics.find("renkei_legacy_file_files_total{outcome=\"processed\"} 2"), std::string::npos) << metrics;
    EXPECT_NE(metrics.find("renkei_legacy_file_records_total{outcome=\"accepted\"} 8"), std::string::npos) << metrics;
}

// Every bad input of the issue, each in its own file, in the profile's layout: the bad record or
// file is refused naming the field and the rule, and everything good beside it reaches J-LIS.
TEST_P(LegacyFileProfiles, BadInputIsRefusedNamingFieldAndRuleAndLosesNothingAccepted) {
    LegacyNet t(profile(), {{"max_file_bytes", "6000"}, {"settle_ms", "1500"}}, backend());
    Writer w{profile()};
    const bool csv = profile() == "csv-utf8";
    auto rs = residents(100, 10);
    t.numbers(rs);

    // One file with a bad record of each kind between good ones.
    auto bad_number = rs[1];
    bad_number.number[11] = bad_number.number[11] == '9' ? '0' : bad_number.number[11] + 1;
    auto bad_code = rs[2];
    bad_code.code = bad_code.code.substr(1); // 10 digits
    auto other_municipality = rs[3];
    other_municipality.municipality = "131024"; // 中央区: a valid code, not this CS's
    std::string body = w.header() + w.line(rs[0]) + w.line(bad_number) + w.line(bad_code) + w.line(other_municipality) +
                       w.line(rs[4], csv ? "2023-02-29" : "4310501") /* 2023-02-29; 平成31年5月1日 (令和元年) */ +
                       w.line(rs[0]) /* the same 異動 again */ + w.line(rs[5]);
    t.drop("mixed.dat", body);
    auto r = t.result("mixed.dat");
    ASSERT_EQ(r.header["status"], "complete");
    size_t l = w.first_line();
    auto expect = [&](size_t line, const char* outcome, const char* field, const char* rule) {
        auto& o = r.lines[line];
        EXPECT_EQ(o.outcome, outcome) << "line " << line;
        EXPECT_EQ(o.field, field) << "line " << line;
        EXPECT_EQ(o.rule, rule) << "line " << line << ": " << o.message;
    };
    expect(l + 0, "accepted", "", "");
    expect(l + 1, "rejected", "person.myNumber", "my_number.check_digit");
    expect(l + 2, "rejected", "person.residentCode", "resident_code.length");
    expect(l + 3, "rejected", "person.address.localGovCode", "municipality.unknown");
    expect(l + 4, "rejected", "person.dateOfBirth", csv ? "date.day" : "date.era");
    expect(l + 5, "rejected", "record", "record.duplicate");
    expect(l + 6, "accepted", "", "");
    EXPECT_EQ(r.lines[l + 1].by, "adapter");
    EXPECT_EQ(r.lines[l + 0].jlis, "recorded");
    EXPECT_EQ(r.lines[l + 6].jlis, "recorded");
    EXPECT_TRUE(t.in_dir("processed", "mixed.dat"));

    // Truncated last line: the cut record is refused, the others go through.
    std::string whole = w.file({rs[6], rs[7]});
    t.drop("cut.dat", whole.substr(0, whole.size() - 30));
    auto c = t.result("cut.dat");
    ASSERT_EQ(c.header["status"], "complete");
    EXPECT_EQ(c.lines[w.first_line()].outcome, "accepted");
    EXPECT_EQ(c.lines[w.first_line() + 1].rule, "record.truncated");

    // Wrong encoding: the whole file is refused, naming line and byte; nothing of it is applied.
    std::string wrong = csv ? cp932(w.file({rs[8]})) : w.header() + std::string(w.line(rs[8])).replace(40, 1, "\xFD");
    t.drop("wrong.dat", wrong);
    auto e = t.result("wrong.dat");
    EXPECT_EQ(e.header["status"], "failed");
    EXPECT_NE(e.header["error"].find(csv ? "encoding.utf8" : "encoding.cp932"), std::string::npos) << e.header["error"];
    EXPECT_NE(e.header["at"].find(csv ? "line 1, byte 1" : "line 1, byte 41"), std::string::npos) << e.header["at"];
    EXPECT_TRUE(t.in_dir("failed", "wrong.dat"));

    // Bigger than max_file_bytes.
    auto many = residents(200, 60);
    for (auto& m : many) m.number = rs[0].number; // never looked at: the file is refused whole
    t.drop("big.dat", w.file(many));
    auto b = t.result("big.dat");
    EXPECT_EQ(b.header["status"], "failed");
    EXPECT_NE(b.header["error"].find("file.too_big"), std::string::npos) << b.header["error"];
    EXPECT_TRUE(t.in_dir("failed", "big.dat"));

    // Replaced while being read: the adapter has read it and lets it settle; another file takes
    // its name meanwhile. Nothing of either is applied.
    t.drop("swap.dat", w.file({rs[8]}));
    bool reading = false;
    for (int i = 0; i < 6000 && !reading; ++i) {
        std::this_thread::sleep_for(5ms);
        if (fs::exists(t.dir / "legacy-file.prom"))
            reading = read_file(t.dir / "legacy-file.prom").find("renkei_legacy_file_reading{file=\"swap.dat\"}") != std::string::npos;
    }
    ASSERT_TRUE(reading) << "the adapter never read swap.dat";
    t.drop("swap.dat", w.file({rs[9]}));
    auto s = t.result("swap.dat");
    EXPECT_EQ(s.header["status"], "failed");
    EXPECT_NE(s.header["error"].find("file.replaced"), std::string::npos) << s.header["error"];
    EXPECT_TRUE(t.in_dir("failed", "swap.dat"));

    // J-LIS has exactly the accepted records: rs[0], rs[5], rs[6].
    auto jlis = t.national();
    EXPECT_EQ(jlis.size(), 3u);
    for (auto i : {0, 5, 6}) EXPECT_EQ(jlis[rs[i].code].versions, 1) << i;
    for (auto i : {1, 3, 4, 7, 8, 9}) EXPECT_EQ(jlis.count(rs[i].code), 0u) << i;
    EXPECT_TRUE(fs::is_empty(t.dir / "inbox"));
    EXPECT_TRUE(fs::is_empty(t.dir / "work"));
}

INSTANTIATE_TEST_SUITE_P(Profiles, LegacyFileProfiles,
                         ::testing::Combine(::testing::Values("csv-utf8", "fixed-cp932"), ::testing::Values("sqlite", "postgresql")),
                         [](const auto& info) { return camel(std::get<0>(info.param)) + camel(std::get<1>(info.param)); });

// The CS's host stops while a long file is half sent; after the restart the adapter re-sends the
// stored batches under the same ids and every record is recorded exactly once at every tier.
TEST_P(LegacyFileBackends, RestartInTheMiddleRecordsEachRecordOnce) {
    LegacyNet t("csv-utf8", {{"batch", "3"}, {"window", "1"}, {"jlis_resend_after_ms", "1000"}}, GetParam());
    Writer w{"csv-utf8"};
    auto rs = residents(300, 150);
    t.numbers(rs);
    t.drop("long.dat", w.file(rs));
    // Wait until some batches are answered, then stop the host.
    auto answered = [&] {
        sqlite3* db = nullptr;
        int n = -1;
        if (sqlite3_open_v2((t.dir / "state.db").c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
            sqlite3_busy_timeout(db, 5000);
            sqlite3_stmt* q = nullptr;
            if (sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM batches WHERE cs = 1", -1, &q, nullptr) == SQLITE_OK &&
                sqlite3_step(q) == SQLITE_ROW)
                n = sqlite3_column_int(q, 0);
            sqlite3_finalize(q);
        }
        sqlite3_close(db);
        return n;
    };
    int seen = 0;
    for (int i = 0; i < 12000 && seen < 3; ++i) {
        std::this_thread::sleep_for(5ms);
        seen = answered();
    }
    ASSERT_GE(seen, 3);
    t.net.remove("muni:131016");
    int at_stop = answered();
    EXPECT_LT(at_stop, 50) << "the host stopped after the whole file; the restart proves less";
    EXPECT_FALSE(fs::is_empty(t.dir / "work")) << "the half-sent file waits in work/";
    if (GetParam() == "sqlite") {
        // The state as the first build wrote it (schema version 0: each batch's payload in its
        // batches row, files and records keyed by the file's digest): the restarted adapter
        // migrates it through every version and resumes all the same.
        sqlite3* db = nullptr;
        ASSERT_EQ(sqlite3_open((t.dir / "state.db").c_str(), &db), SQLITE_OK);
        char* err = nullptr;
        int rc = sqlite3_exec(db,
                              "BEGIN; UPDATE batches SET payload = (SELECT p.payload FROM payloads p"
                              " WHERE p.digest = batches.digest AND p.chunk = batches.chunk);"
                              " DROP TABLE payloads;"
                              " CREATE TABLE files_v0 (digest TEXT PRIMARY KEY, name TEXT NOT NULL, work_path TEXT NOT NULL,"
                              " final_path TEXT NOT NULL DEFAULT '', phase TEXT NOT NULL, size INTEGER NOT NULL,"
                              " records INTEGER NOT NULL, batches INTEGER NOT NULL, claimed_ms INTEGER NOT NULL,"
                              " recorded_ms INTEGER NOT NULL DEFAULT 0, complete_ms INTEGER NOT NULL DEFAULT 0);"
                              " INSERT INTO files_v0 SELECT digest, name, work_path, final_path, phase, size, records,"
                              " batches, claimed_ms, recorded_ms, complete_ms FROM files;"
                              " CREATE TABLE records_v0 (digest TEXT NOT NULL, line INTEGER NOT NULL, code TEXT NOT NULL,"
                              " chunk INTEGER NOT NULL, idx INTEGER NOT NULL, outcome TEXT NOT NULL, by TEXT NOT NULL"
                              " DEFAULT '', field TEXT NOT NULL DEFAULT '', rule TEXT NOT NULL DEFAULT '', message TEXT"
                              " NOT NULL DEFAULT '', jlis TEXT NOT NULL DEFAULT '', PRIMARY KEY (digest, line));"
                              " INSERT INTO records_v0 SELECT f.digest, r.line, r.code, r.chunk, r.idx, r.outcome, r.by,"
                              " r.field, r.rule, r.message, r.jlis FROM records r JOIN files f ON f.id = r.file;"
                              " DROP TABLE records; DROP TABLE files;"
                              " ALTER TABLE files_v0 RENAME TO files; ALTER TABLE records_v0 RENAME TO records;"
                              " CREATE INDEX records_batch ON records (digest, chunk, idx);"
                              " PRAGMA user_version = 0; COMMIT;",
                              nullptr, nullptr, &err);
        std::string why = err ? err : "";
        sqlite3_free(err);
        sqlite3_close(db);
        ASSERT_EQ(rc, SQLITE_OK) << why;
        ASSERT_EQ(JukiBackend::sqlite_rows(t.dir / "state.db", "SELECT COUNT(*) FROM batches WHERE payload IS NULL")[0][0],
                  "0");
    }
    t.start_cs();
    // Every batch is answered by every tier (some again from saved answers after the restart; a
    // J-LIS list lost in the stop comes again when the adapter asks again).
    auto r = t.result("long.dat", {"complete"});
    ASSERT_FALSE(r.header["status"].empty())
        << "adapter batches without the CS's answer:\n"
        << t.dump(t.dir / "state.db", "SELECT chunk, batch_id, cs FROM batches WHERE cs = 0");
    EXPECT_EQ(r.header["records"], "150; accepted: 150; rejected: 0; J-LIS recorded: 150; J-LIS rejected: 0");
    ASSERT_EQ(r.lines.size(), 150u);
    for (auto& [line, o] : r.lines) {
        EXPECT_EQ(o.outcome, "accepted") << line;
        EXPECT_EQ(o.jlis, "recorded") << line;
    }
    if (GetParam() == "sqlite") {
        EXPECT_EQ(JukiBackend::sqlite_rows(t.dir / "state.db", "PRAGMA user_version")[0][0], "2");
        EXPECT_EQ(JukiBackend::sqlite_rows(t.dir / "state.db", "SELECT COUNT(*) FROM records r JOIN files f ON f.id = r.file"
                                                               " WHERE f.name = 'long.dat'")[0][0],
                  "150");
        EXPECT_EQ(JukiBackend::sqlite_rows(t.dir / "state.db", "SELECT COUNT(*) FROM batches WHERE payload IS NOT NULL")[0][0],
                  "0");
    }
    for (int i = 0; i < 2400 && t.national("jlis").size() < 150; ++i) std::this_thread::sleep_for(50ms);
    for (auto who : {"cs", "pref", "jlis"}) {
        auto file = t.national(who);
        EXPECT_EQ(file.size(), 150u) << who;
        for (auto& p : rs) EXPECT_EQ(file[p.code].versions, 1) << who << " " << p.code;
    }
}

INSTANTIATE_TEST_SUITE_P(LegacyFile, LegacyFileBackends, ::testing::Values("sqlite", "postgresql"),
                         [](const auto& info) { return camel(info.param); });

// `renkei import`: an operator hands files to the running adapter and follows them: progress lines
// while it works, then a summary with the counts and the rejected records, and an exit code a
// script can act on.
TEST(LegacyFileImportCommand, ShowsProgressThenASummaryAndExitsByOutcome) {
    LegacyNet t("csv-utf8", {{"batch", "4"}, {"window", "1"}});
    Writer w{"csv-utf8"};
    auto rs = residents(500, 120);
    t.numbers(rs);
    auto bad = rs[7];
    bad.number[11] = bad.number[11] == '9' ? '0' : bad.number[11] + 1;
    std::string body = w.header();
    for (size_t i = 0; i < rs.size(); ++i) body += w.line(i == 7 ? bad : rs[i]);
    write_file(t.tmp / "outgoing" / "daily.csv", body);

    auto run = run_renkei("import " + (t.tmp / "outgoing" / "daily.csv").string() + " --dir " + t.dir.string() +
                          " --interval 0.2 --timeout 300", true);
    EXPECT_EQ(run.code, 3) << run.output; // done, one record rejected
    std::istringstream lines(run.output);
    std::string l;
    size_t progress = 0;
    std::regex shape(R"(^\d+/120 records \(\d+%\), \d+ records/s, (about .+|unknown time) left$)");
    while (std::getline(lines, l)) progress += std::regex_match(l, shape);
    EXPECT_GE(progress, 1u) << "no progress line in:\n" << run.output;
    EXPECT_NE(run.output.find("daily.csv: complete (J-LIS answered every record) in "), std::string::npos) << run.output;
    EXPECT_NE(run.output.find("120; accepted: 119; rejected: 1; J-LIS recorded: 119; J-LIS rejected: 0"), std::string::npos)
        << run.output;
    EXPECT_NE(run.output.find("rejected records (1 of 1 shown):\n    line 9 " + bad.code +
                              ": by adapter, person.myNumber (my_number.check_digit)"),
              std::string::npos)
        << run.output;
    EXPECT_NE(run.output.find("result: " + (t.dir / "results" / "daily.csv.result").string()), std::string::npos);
    EXPECT_TRUE(t.in_dir("processed", "daily.csv"));
    EXPECT_EQ(t.national().size(), 119u);

    // A file refused whole: exit 1 with the rule; the same name again is no conflict once it left.
    write_file(t.tmp / "outgoing" / "broken.csv", cp932(w.file({rs[0]})));
    run = run_renkei("import " + (t.tmp / "outgoing" / "broken.csv").string() + " --dir " + t.dir.string(), true);
    EXPECT_EQ(run.code, 1) << run.output;
    EXPECT_NE(run.output.find("broken.csv: refused whole after "), std::string::npos) << run.output;
    EXPECT_NE(run.output.find("encoding.utf8"), std::string::npos) << run.output;
    EXPECT_TRUE(t.in_dir("failed", "broken.csv"));

    // --wait recorded stops once the CS recorded it (or later, if J-LIS answered before the first
    // look); exit 0 when nothing was rejected.
    auto more = residents(700, 3);
    t.numbers(more);
    write_file(t.tmp / "outgoing" / "more.csv", w.file(more));
    run = run_renkei("import " + (t.tmp / "outgoing" / "more.csv").string() + " --dir " + t.dir.string() +
                     " --wait recorded", true);
    EXPECT_EQ(run.code, 0) << run.output;
    EXPECT_TRUE(run.output.find("more.csv: recorded by the CS in ") != std::string::npos ||
                run.output.find("more.csv: complete (J-LIS answered every record) in ") != std::string::npos)
        << run.output;
    EXPECT_NE(run.output.find("  3; accepted: 3; rejected: 0"), std::string::npos) << run.output;

    // Usage errors: no such file, no adapter directory, a name already waiting.
    EXPECT_EQ(run_renkei("import " + (t.tmp / "nothing.csv").string() + " --dir " + t.dir.string()).code, 2);
    auto nodir = run_renkei("import " + (t.tmp / "outgoing" / "more.csv").string() + " --dir " + (t.tmp / "nowhere").string());
    EXPECT_EQ(nodir.code, 2);
    EXPECT_NE(nodir.output.find("has no inbox/"), std::string::npos) << nodir.output;
    t.net.remove("muni:131016"); // nobody takes files now
    write_file(t.dir / "inbox" / "waiting.csv", "x");
    auto taken = run_renkei("import " + (t.tmp / "outgoing" / "more.csv").string() + " --dir " + t.dir.string() +
                            " --name waiting.csv");
    EXPECT_EQ(taken.code, 2);
    EXPECT_NE(taken.output.find("already waiting in the inbox"), std::string::npos) << taken.output;
}

// `renkei load`: a municipality's file delivered on media, loaded at J-LIS straight into the
// national store (no network): the profile's rules and juki's (the PIA checks against the store and
// the 個人番号 registry), one transaction, the adapter's result layout, one audit record per run.
class LegacyLoad : public ::testing::TestWithParam<std::string> {
protected:
    TempDir tmp;
    JukiBackend backend{GetParam()};
    toml::table settings;
    fs::path config = tmp / "jlis.toml";

    void SetUp() override {
        write_file(tmp / "secret", std::string(48, 's') + "legacy-load test secret");
        settings = toml::table{{"role", "national"}, {"number_secret_file", (tmp / "secret").string()}};
        backend.add_store(settings, "jlis", tmp / "jlis" / "juki.db");
        fs::create_directories(tmp / "jlis");
        std::ostringstream c;
        c << "[node]\nid = \"jlis:juki\"\ndata_dir = \"" << (tmp / "data").string() << "\"\n\n[[plugin]]\nname = \"juki\"\n"
          << "path = \"" << plugin_path("plugins/juki", "juki") << "\"\n[plugin.settings]\n" << settings << "\n";
        write_file(config, c.str());
    }
    juki::Settings get() const {
        return [this](const char* key) { return setting_text(settings, key); };
    }
    // J-LIS generated each resident's 個人番号 beforehand (番号法8条).
    void numbers(std::vector<Resident>& rs) {
        auto registry = juki::open_numbers(get(), juki::store_location(get()));
        for (auto& r : rs) r.number = registry->assign("load-" + r.code, r.code, false, "", 0).my_number;
    }
    renkei::test::Run load(const std::string& file, const std::string& extra = "") {
        return run_renkei("load " + (tmp / file).string() + " --config " + config.string() +
                          " --operator ops:sato --purpose juki-30-7 --municipality 131016 --profile " + kProfiles +
                          "csv-utf8.toml" + extra);
    }
    std::unique_ptr<juki::Store> store() { return juki::open_store(juki::store_location(get())); }
    // Loads `file` holding `text`, which must load nothing: exit 1, `says` in the output, a result
    // with status failed whose error line starts with `error` (field TAB rule TAB).
    Result expect_nothing_loaded(const std::string& file, const std::string& text, const std::string& extra,
                                 const std::string& says, const std::string& error) {
        write_file(tmp / file, text);
        auto run = load(file, extra);
        EXPECT_EQ(run.code, 1) << run.output;
        EXPECT_NE(run.output.find(says), std::string::npos) << run.output;
        auto r = parse_result(read_file(tmp / (file + ".result")));
        EXPECT_EQ(r.header["status"], "failed");
        EXPECT_EQ(r.header["error"].rfind(error, 0), 0u) << r.header["error"];
        return r;
    }
    std::string audit_text() {
        std::string all;
        for (auto& e : fs::directory_iterator(tmp / "data" / "audit"))
            if (e.path().extension() == ".log") all += read_file(e.path());
        return all;
    }
};

TEST_P(LegacyLoad, LoadsFirstRecordsOnceAndListsEveryRejectionWithFieldAndRule) {
    Writer w{"csv-utf8"};
    auto rs = residents(300, 12);
    numbers(rs);
    // The first file: eight residents, search indexes built after the rows (threshold 1).
    write_file(tmp / "first.csv", w.file({rs.begin(), rs.begin() + 8}));
    auto run = load("first.csv", " --index-rebuild-from 1");
    ASSERT_EQ(run.code, 0) << run.output;
    EXPECT_NE(run.output.find("first.csv: loaded into jlis:juki"), std::string::npos) << run.output;
    auto first = parse_result(read_file(tmp / "first.csv.result"));
    EXPECT_EQ(first.header["status"], "loaded");
    EXPECT_EQ(first.header["records"], "8; loaded: 8; rejected: 0");
    EXPECT_TRUE(first.lines.empty());
    if (!backend.pg()) { // rebuilt by the load (before store() below could create them)
        EXPECT_EQ(backend.rows("jlis", "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name IN "
                                       "('residents_number', 'residents_name', 'residents_kana', 'residents_municipality')")[0][0],
                  "4");
    }
    {
        auto s = store();
        EXPECT_EQ(s->count(), 8u);
        auto found = s->by_number(rs[5].number);
        ASSERT_EQ(found.size(), 1u);
        EXPECT_EQ(found[0].code, rs[5].code);
    }

    // The second file: two new residents load; each other line is refused naming field and rule.
    auto again = rs[0];                       // already in the store: 出生 again
    auto bad_digit = rs[8];                   // the profile's rule
    bad_digit.number[11] = bad_digit.number[11] == '9' ? '0' : bad_digit.number[11] + 1;
    auto other_number = rs[9];                // a valid number, not the one J-LIS generated for it
    other_number.number = rs[10].number;
    auto unknown = rs[11];                    // 転居 of someone the store does not hold
    unknown.reason = "moveWithin";
    std::vector<Resident> second = {rs[10], again, bad_digit, other_number, unknown};
    auto fresh = residents(400, 1);
    numbers(fresh);
    second.push_back(fresh[0]);
    write_file(tmp / "second.csv", w.file(second));
    // A dry run first: the same checks and counts, a result, an audit record; nothing recorded.
    run = load("second.csv", " --dry-run --result " + (tmp / "second.check").string());
    ASSERT_EQ(run.code, 0) << run.output;
    EXPECT_NE(run.output.find("second.csv: checked against jlis:juki"), std::string::npos) << run.output;
    auto check = parse_result(read_file(tmp / "second.check"));
    EXPECT_EQ(check.header["status"], "checked (dry run: nothing recorded)");
    EXPECT_EQ(check.header["records"], "6; would load: 2; rejected: 4");
    EXPECT_EQ(check.lines.size(), 4u);
    EXPECT_EQ(store()->count(), 8u);
    run = load("second.csv", " --metrics " + (tmp / "load.prom").string());
    ASSERT_EQ(run.code, 0) << run.output;
    auto metrics = read_file(tmp / "load.prom");
    EXPECT_NE(metrics.find("renkei_load_records{file=\"second.csv\",state=\"done\"} 6\n"), std::string::npos) << metrics;
    EXPECT_NE(metrics.find("renkei_load_status{file=\"second.csv\",status=\"loaded\"} 1\n"), std::string::npos) << metrics;
    auto r = parse_result(read_file(tmp / "second.csv.result"));
    EXPECT_EQ(r.header["status"], "loaded");
    EXPECT_EQ(r.header["records"], "6; loaded: 2; rejected: 4");
    auto expect = [&](size_t line, const std::string& code, const std::string& by, const std::string& field,
                      const std::string& rule) {
        auto it = r.lines.find(line);
        ASSERT_NE(it, r.lines.end()) << "no line " << line;
        EXPECT_EQ(it->second.code, code);
        EXPECT_EQ(it->second.outcome, "rejected");
        EXPECT_EQ(it->second.by, by);
        EXPECT_EQ(it->second.field, field);
        EXPECT_EQ(it->second.rule, rule) << it->second.message;
    };
    expect(3, again.code, "jlis:juki", "person.residentCode", "juki.birth_exists");
    expect(4, bad_digit.code, "load", "person.myNumber", "my_number.check_digit");
    expect(5, other_number.code, "jlis:juki", "person.myNumber", "juki.pia.number_mismatch");
    expect(6, unknown.code, "jlis:juki", "person.residentCode", "juki.unknown_resident");
    EXPECT_EQ(r.lines.size(), 4u);
    {
        auto s = store();
        EXPECT_EQ(s->count(), 10u);
        for (auto* in : {&rs[10], &fresh[0]}) { // the two that passed, copied out of a chunk with refusals
            auto got = s->get(in->code);
            ASSERT_TRUE(got) << in->code;
            EXPECT_EQ(got->my_number, in->number);
            juki::RecordReader rec(got->record);
            EXPECT_EQ(std::string(rec.get().getPerson().getName().getKanji().cStr()), in->kanji) << in->code;
        }
        EXPECT_FALSE(s->get(bad_digit.code));
        EXPECT_FALSE(s->get(other_number.code));
    }

    // A file named without a folder, as an operator types it in the media's folder: the result
    // goes beside it.
    auto third = residents(410, 1);
    numbers(third);
    write_file(tmp / "third.csv", w.file(third));
    auto cwd = fs::current_path();
    fs::current_path(tmp.path());
    run = run_renkei("load third.csv --config " + config.string() + " --operator ops:sato --purpose juki-30-7"
                     " --municipality 131016 --profile " + kProfiles + "csv-utf8.toml");
    fs::current_path(cwd);
    EXPECT_EQ(run.code, 0) << run.output;
    EXPECT_EQ(parse_result(read_file(tmp / "third.csv.result")).header["records"], "1; loaded: 1; rejected: 0");

    // A result is never overwritten: the same file again does not start.
    run = load("second.csv");
    EXPECT_EQ(run.code, 2) << run.output;
    EXPECT_NE(run.output.find("a load never overwrites a result"), std::string::npos) << run.output;

    // Each run is one audit record with the operator, the purpose and the counts; the chain holds.
    auto audit = audit_text();
    EXPECT_NE(audit.find("records: 8; loaded: 8; rejected: 0"), std::string::npos);
    EXPECT_NE(audit.find("records: 6; loaded: 2; rejected: 4"), std::string::npos);
    EXPECT_NE(audit.find("\tjuki.load\tmuni:131016\tjlis:juki\tjuki-30-7\tops:sato\tok\t"), std::string::npos) << audit;
    EXPECT_EQ(audit.find(rs[10].number), std::string::npos) << "a 個人番号 in the audit trail";
    auto verified = verify_audit(tmp / "data" / "audit");
    EXPECT_TRUE(verified.ok) << verified.error;
    EXPECT_EQ(verified.records, 4u);
    EXPECT_NE(audit.find("\tjuki.load.dry_run\tmuni:131016\tjlis:juki\tjuki-30-7\tops:sato\tok\t"), std::string::npos)
        << audit;
}

TEST_P(LegacyLoad, AFileThatCannotBeUsedLoadsNothingAndSaysWhy) {
    Writer w{"csv-utf8"};
    auto rs = residents(500, 5);
    numbers(rs);
    // Too big: refused unread.
    expect_nothing_loaded("big.csv", w.file(rs), " --max-bytes 100", "nothing loaded: file (file.too_big)",
                          "file\tfile.too_big\tfile: ");
    // A header that lacks a column the profile maps: refused whole, nothing of it in the store.
    auto text = w.file(rs);
    text.replace(text.find("氏名フリガナ"), std::string("氏名フリガナ").size(), "ふりがな");
    auto r = expect_nothing_loaded("header.csv", text, "", "csv.header", "person.name.kana\tcsv.header\t");
    EXPECT_EQ(r.header["records"], "0; loaded: 0; rejected: 0");
    EXPECT_EQ(store()->count(), 0u);
    auto audit = audit_text();
    EXPECT_NE(audit.find("\tjuki.load\tmuni:131016\tjlis:juki\tjuki-30-7\tops:sato\tfailed\t"), std::string::npos) << audit;
    EXPECT_NE(audit.find("file (file.too_big)"), std::string::npos) << audit;
    // Bad options stop before anything is read or audited.
    auto bad = run_renkei("load " + (tmp / "big.csv").string() + " --config " + config.string() +
                          " --operator ops:sato --purpose juki-30-7 --municipality 131017 --profile " + kProfiles + "csv-utf8.toml");
    EXPECT_EQ(bad.code, 2) << bad.output;
    EXPECT_NE(bad.output.find("--municipality"), std::string::npos) << bad.output;
    auto none = run_renkei("load " + (tmp / "big.csv").string() + " --config " + config.string() +
                           " --plugin other --operator ops:sato --purpose juki-30-7 --municipality 131016 --profile " +
                           kProfiles + "csv-utf8.toml --result " + (tmp / "other.result").string());
    EXPECT_EQ(none.code, 2) << none.output;
    EXPECT_NE(none.output.find("no plugin named 'other'"), std::string::npos) << none.output;
    EXPECT_EQ(verify_audit(tmp / "data" / "audit").records, 2u);
}

// A store that fails in the middle of the file (here a trigger refuses one resident's row, as a
// full disk or a constraint would) keeps nothing of it: the rows written before the failure go too.
TEST_P(LegacyLoad, AStoreFailureInTheMiddleKeepsNothingOfTheFile) {
    Writer w{"csv-utf8"};
    auto rs = residents(600, 40);
    numbers(rs);
    store(); // creates the tables
    const std::string refuse = "NEW.code = '" + rs[30].code + "'";
    if (backend.pg()) {
        backend.rows("jlis", "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF " + refuse +
                                 " THEN RAISE EXCEPTION 'disk full (injected)'; END IF; RETURN NEW; END $$;"
                                 " CREATE TRIGGER refuse BEFORE INSERT ON residents FOR EACH ROW EXECUTE FUNCTION refuse();"
                                 " SELECT 1");
    } else {
        sqlite3* db = nullptr;
        ASSERT_EQ(sqlite3_open((tmp / "jlis" / "juki.db").c_str(), &db), SQLITE_OK);
        std::string trigger = "CREATE TRIGGER refuse BEFORE INSERT ON residents WHEN " + refuse +
                              " BEGIN SELECT RAISE(ABORT, 'disk full (injected)'); END;";
        int rc = sqlite3_exec(db, trigger.c_str(), nullptr, nullptr, nullptr);
        std::string why = sqlite3_errmsg(db);
        sqlite3_close(db);
        ASSERT_EQ(rc, SQLITE_OK) << why;
    }
    expect_nothing_loaded("all.csv", w.file(rs), " --index-rebuild-from 1", "disk full (injected)", "store\tstore.write\t");
    EXPECT_EQ(backend.rows("jlis", "SELECT count(*) FROM residents")[0][0], "0");
    EXPECT_EQ(backend.rows("jlis", backend.pg() ? "SELECT count(*) FROM pg_indexes WHERE schemaname = current_schema()"
                                                  " AND indexname = 'residents_number'"
                                                : "SELECT count(*) FROM sqlite_master WHERE type = 'index'"
                                                  " AND name = 'residents_number'")[0][0],
              "1")
        << "a dropped search index comes back with the rollback";
    EXPECT_NE(audit_text().find("\tfailed\t"), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(LegacyLoad, LegacyLoad, ::testing::Values("sqlite", "postgresql"),
                         [](const auto& info) { return camel(info.param); });
