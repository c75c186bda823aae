// adapters/legacy-file's parser library: the shipped vendor profiles and 外字 table, their sample
// files, and every kind of bad input a vendor file can bring (each refused naming line, field, rule).
#include <renkei/legacy_file/parser.hpp>

#include "test_support.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>

using namespace renkei::legacy_file;
using renkei::test::read_file;

namespace {

const std::string kDir = std::string(RENKEI_SOURCE_DIR) + "/adapters/legacy-file/profiles/";

struct Shipped {
    Profile csv = load_profile(kDir + "csv-utf8.toml");
    Profile fixed = load_profile(kDir + "fixed-cp932.toml");
    GaijiTable gaiji = load_gaiji_table(kDir + "gaiji-131016.toml");
    ParseOptions options() const {
        ParseOptions o;
        o.municipalities = {"131016"};
        o.gaiji = &gaiji;
        return o;
    }
    std::string csv_sample = read_file(kDir + "samples/csv-utf8-sample.csv");
    std::string fixed_sample = read_file(kDir + "samples/fixed-cp932-sample.dat");
};

// The CSV sample with line `n` (1-based) changed by `edit`.
std::string csv_edit(std::string text, size_t n, const std::function<void(std::vector<std::string>&)>& edit) {
    std::vector<std::string> lines;
    size_t pos = 0;
    while (pos < text.size()) {
        auto nl = text.find("\r\n", pos);
        lines.push_back(text.substr(pos, nl - pos));
        pos = nl + 2;
    }
    std::vector<std::string> cells;
    std::string cell;
    for (char c : lines[n - 1]) {
        if (c == ',') {
            cells.push_back(cell);
            cell.clear();
        } else {
            cell += c;
        }
    }
    cells.push_back(cell);
    edit(cells);
    std::string joined;
    for (size_t i = 0; i < cells.size(); ++i) joined += (i ? "," : "") + cells[i];
    lines[n - 1] = joined;
    std::string out;
    for (auto& l : lines) out += l + "\r\n";
    return out;
}

// The fixed sample with `bytes` written at `offset` of record `n` (1-based).
std::string fixed_edit(std::string data, size_t n, size_t offset, const std::string& bytes) {
    data.replace((n - 1) * 273 + offset, bytes.size(), bytes);
    return data;
}

std::string rules(const ParseResult& r) {
    std::string out;
    for (auto& x : r.rejected) out += std::to_string(x.line) + " " + x.field + " " + x.rule + "\n";
    return out;
}

} // namespace

TEST(LegacyProfile, ShippedProfilesReadTheirSamplesCompletely) {
    Shipped s;
    auto c = parse(s.csv_sample, s.csv, s.options());
    ASSERT_FALSE(c.failure) << c.failure->message;
    EXPECT_EQ(rules(c), "");
    ASSERT_EQ(c.records.size(), 5u);
    auto f = parse(s.fixed_sample, s.fixed, s.options());
    ASSERT_FALSE(f.failure) << f.failure->message;
    EXPECT_EQ(rules(f), "");
    ASSERT_EQ(f.records.size(), 5u);
    // Both layouts carry the same residents: same items after conversion.
    for (size_t i = 0; i < 5; ++i) {
        auto &a = c.records[i], &b = f.records[i];
        EXPECT_EQ(a.resident_code, b.resident_code);
        EXPECT_EQ(a.my_number, b.my_number);
        EXPECT_EQ(a.kanji, b.kanji) << i;
        EXPECT_EQ(a.kana, b.kana) << i; // half-width ﾀｶﾊｼ ﾀﾛｳ became タカハシ　タロウ
        EXPECT_EQ(a.birth.year, b.birth.year);
        EXPECT_EQ(a.birth.month, b.birth.month);
        EXPECT_EQ(a.birth.day, b.birth.day);
        EXPECT_EQ(a.change.year, b.change.year);
        EXPECT_EQ(a.sex, b.sex);
        EXPECT_EQ(a.reason, b.reason);
        EXPECT_EQ(a.address, b.address);
        EXPECT_EQ(a.former_surname, b.former_surname);
        EXPECT_EQ(a.former_surname_kana, b.former_surname_kana);
        EXPECT_EQ(a.previous_municipality, b.previous_municipality);
    }
    EXPECT_EQ(c.records[0].line, 2u) << "line 1 is the header";
    EXPECT_EQ(f.records[0].line, 1u);
    EXPECT_EQ(c.records[0].reason, Reason::birth);
    EXPECT_EQ(c.records[0].birth.year, 2026);
    EXPECT_EQ(f.records[0].change.year, 2026) << "令和8年 is 2026";
    EXPECT_EQ(f.records[1].birth.year, 1985) << "昭和60年 is 1985";
    EXPECT_EQ(f.records[4].kana, "ワタナベ　アオイ") << "ﾍﾞ combines into ベ";
    // 外字: U+E010 maps to the network's private-use U+F0010 (still a 外字, counted); U+E000
    // maps to the standard 髙 (resolved, not counted).
    EXPECT_EQ(c.records[1].kanji, "髙\xF3\xB0\x80\x90　太郎");
    EXPECT_EQ(c.records[1].name_gaiji, 1);
    EXPECT_EQ(f.records[3].kanji, "髙橋　蓮");
    EXPECT_EQ(f.records[3].name_gaiji, 0);
    EXPECT_EQ(c.records[2].former_surname, "鈴木");
    EXPECT_EQ(c.records[0].seion_kana, "チヨタ　ハナコ");
    EXPECT_EQ(c.records[0].town_code, "001002");
    EXPECT_EQ(c.records[0].operator_id, "op-0042");
}

TEST(LegacyProfile, WrongEncodingFailsTheWholeFileNamingLineAndByte) {
    Shipped s;
    // The fixed sample is CP932: as UTF-8 it is invalid in its first record, at the first kanji.
    auto r = parse(s.fixed_sample, s.csv, s.options());
    ASSERT_TRUE(r.failure);
    EXPECT_EQ(r.failure->rule, "encoding.utf8");
    EXPECT_EQ(r.failure->line, 1u);
    EXPECT_EQ(r.failure->byte, 33u);
    EXPECT_NE(r.failure->message.find("line 1, byte 33"), std::string::npos) << r.failure->message;
    EXPECT_TRUE(r.records.empty());
    EXPECT_TRUE(r.rejected.empty());
    // The CSV sample (UTF-8) given to the CP932 profile.
    auto u = parse(s.csv_sample, s.fixed, s.options());
    ASSERT_TRUE(u.failure);
    EXPECT_EQ(u.failure->rule, "encoding.cp932");
    // A byte CP932 does not define (0xFD) in record 3.
    auto bad = fixed_edit(s.fixed_sample, 3, 40, "\xFD");
    auto b = parse(bad, s.fixed, s.options());
    ASSERT_TRUE(b.failure);
    EXPECT_EQ(b.failure->rule, "encoding.cp932");
    EXPECT_EQ(b.failure->line, 3u);
    EXPECT_EQ(b.failure->byte, 41u);
}

TEST(LegacyProfile, TruncatedLastLineIsRefusedAndTheRestKept) {
    Shipped s;
    auto c = parse(s.csv_sample.substr(0, s.csv_sample.size() - 20), s.csv, s.options());
    ASSERT_FALSE(c.failure);
    EXPECT_EQ(c.records.size(), 4u);
    EXPECT_EQ(rules(c), "6 record record.truncated\n");
    // Fixed: cut inside the last record (and inside a double-byte character of it).
    auto f = parse(s.fixed_sample.substr(0, s.fixed_sample.size() - 200), s.fixed, s.options());
    ASSERT_FALSE(f.failure) << f.failure->message;
    EXPECT_EQ(f.records.size(), 4u);
    EXPECT_EQ(rules(f), "5 record record.truncated\n");
    // Without its final CRLF only.
    auto g = parse(s.fixed_sample.substr(0, s.fixed_sample.size() - 2), s.fixed, s.options());
    EXPECT_EQ(rules(g), "5 record record.truncated\n");
}

TEST(LegacyProfile, EachBadItemIsRefusedNamingFieldAndRule) {
    Shipped s;
    auto csv = [&](size_t line, size_t col, const std::string& value) {
        return parse(csv_edit(s.csv_sample, line, [&](auto& c) { c[col] = value; }), s.csv, s.options());
    };
    EXPECT_EQ(rules(csv(2, 1, "100000000014")), "2 person.myNumber my_number.check_digit\n");
    EXPECT_EQ(rules(csv(3, 0, "1310100002")), "3 person.residentCode resident_code.length\n");
    EXPECT_EQ(rules(csv(3, 0, "１3101000029")), "3 person.residentCode resident_code.digits\n");
    EXPECT_EQ(rules(csv(4, 9, "131017")), "4 person.address.localGovCode local_gov_code.check_digit\n");
    EXPECT_EQ(rules(csv(4, 9, "131024")), "4 person.address.localGovCode municipality.unknown\n");
    EXPECT_EQ(rules(csv(5, 6, "2023-02-29")), "5 person.dateOfBirth date.day\n");
    EXPECT_EQ(rules(csv(5, 3, "2026-13-01")), "5 changeDate date.month\n");
    EXPECT_EQ(rules(csv(5, 3, "20261101")), "5 changeDate date.format\n");
    EXPECT_EQ(rules(csv(2, 2, "引越")), "2 reason reason.code\n");
    EXPECT_EQ(rules(csv(2, 7, "M")), "2 person.sex sex.code\n");
    EXPECT_EQ(rules(csv(2, 5, "ちよだ　はなこ")), "2 person.name.kana katakana.character\n");
    EXPECT_EQ(rules(csv(2, 4, "千代田\xEE\x80\x85花子")), "2 person.name.kanji gaiji.unmapped\n"); // U+E005
    EXPECT_EQ(rules(csv(2, 13, "999999")), "2 previousMunicipality local_gov_code.prefecture\n");
    auto many = csv(2, 15, "op,x"); // an extra column
    EXPECT_EQ(rules(many), "2 record csv.columns\n");
    auto quote = parse(csv_edit(s.csv_sample, 2, [](auto& c) { c[4] = "\"千代田"; }), s.csv, s.options());
    EXPECT_EQ(rules(quote), "2 record csv.quote\n");
    // Each refusal leaves the other records: 5 lines, one refused, four kept.
    auto one = csv(2, 1, "100000000014");
    EXPECT_EQ(one.records.size(), 4u);
    EXPECT_EQ(one.rejected[0].resident_code, "13101000011");
    EXPECT_EQ(one.rejected[0].message.find("100000000014"), std::string::npos) << "messages never echo a 個人番号";

    // Fixed width: 和暦 outside its era, a bad check digit, a field that cuts a character.
    EXPECT_EQ(rules(parse(fixed_edit(s.fixed_sample, 2, 112, "4310501"), s.fixed, s.options())),
              "2 person.dateOfBirth date.era\n") << "平成31年5月1日 is 令和元年";
    EXPECT_EQ(rules(parse(fixed_edit(s.fixed_sample, 2, 112, "4010107"), s.fixed, s.options())),
              "2 person.dateOfBirth date.era\n") << "平成 began on 1989-01-08";
    EXPECT_EQ(rules(parse(fixed_edit(s.fixed_sample, 2, 112, "3600230"), s.fixed, s.options())),
              "2 person.dateOfBirth date.day\n");
    EXPECT_EQ(rules(parse(fixed_edit(s.fixed_sample, 1, 11, "100000000019"), s.fixed, s.options())),
              "1 person.myNumber my_number.check_digit\n");
    EXPECT_EQ(rules(parse(fixed_edit(s.fixed_sample, 1, 23, "99"), s.fixed, s.options())), "1 reason reason.code\n");
    // A record one byte short (a byte lost mid-line) is refused by its length.
    std::string shortened = s.fixed_sample;
    shortened.erase(273 + 100, 1);
    EXPECT_EQ(rules(parse(shortened, s.fixed, s.options())), "2 record record.length\n");
}

TEST(LegacyProfile, DuplicateRecordIsRefusedNamingTheFirst) {
    Shipped s;
    auto text = s.csv_sample;
    auto second = text.find("\r\n") + 2;
    auto end = text.find("\r\n", second) + 2;
    text += text.substr(second, end - second); // line 2 again as line 7
    auto r = parse(text, s.csv, s.options());
    EXPECT_EQ(rules(r), "7 record record.duplicate\n");
    EXPECT_NE(r.rejected[0].message.find("line 2"), std::string::npos) << r.rejected[0].message;
    EXPECT_EQ(r.records.size(), 5u);
}

TEST(LegacyProfile, ManyChangesOfOneResidentAreDistinctUntilOneRepeats) {
    // One resident's 転入 on 3,000 different days, then a 転出 on the first of those days (another
    // 異動事由), then the 転入 of day 1,500 again: only the last line is a duplicate.
    Shipped s;
    auto text = s.csv_sample;
    const std::string header = text.substr(0, text.find("\r\n") + 2);
    auto second = text.find("\r\n", header.size()) + 2;
    const std::string line = text.substr(second, text.find("\r\n", second) - second); // 13101000029, 転入
    auto on_day = [&](int day, const std::string& reason) {
        std::string out = line;
        auto first = out.find(',', out.find(',') + 1) + 1, second_end = out.find(',', first);
        out.replace(first, second_end - first, reason);
        auto date_at = out.find(',', first) + 1;
        auto ymd = std::chrono::year_month_day(std::chrono::sys_days(std::chrono::year(2001) / 1 / 1) + std::chrono::days(day));
        char date[16];
        std::snprintf(date, sizeof date, "%04d-%02u-%02u", static_cast<int>(ymd.year()), static_cast<unsigned>(ymd.month()),
                      static_cast<unsigned>(ymd.day()));
        out.replace(date_at, 10, date);
        return out + "\r\n";
    };
    std::string file = header;
    for (int day = 0; day < 3000; ++day) file += on_day(day, "転入");
    file += on_day(0, "転出");
    file += on_day(1499, "転入");
    auto r = parse(file, s.csv, s.options());
    EXPECT_EQ(rules(r), "3003 record record.duplicate\n");
    ASSERT_EQ(r.rejected.size(), 1u);
    EXPECT_NE(r.rejected[0].message.find("line 1501"), std::string::npos) << r.rejected[0].message;
    EXPECT_EQ(r.records.size(), 3001u);
}

TEST(LegacyProfile, HeaderWithoutAMappedColumnFailsTheFile) {
    Shipped s;
    auto text = s.csv_sample;
    text.replace(text.find("個人番号"), std::string("個人番号").size(), "マイナンバー");
    auto r = parse(text, s.csv, s.options());
    ASSERT_TRUE(r.failure);
    EXPECT_EQ(r.failure->rule, "csv.header");
    EXPECT_EQ(r.failure->field, "person.myNumber");
}

TEST(LegacyProfile, TooManyRecordsFailTheFile) {
    Shipped s;
    auto p = s.fixed;
    p.max_records = 3;
    auto r = parse(s.fixed_sample, p, s.options());
    ASSERT_TRUE(r.failure);
    EXPECT_EQ(r.failure->rule, "file.records");
}

TEST(LegacyProfile, KanaConversions) {
    EXPECT_EQ(fullwidth_kana("ｶﾞｯｺｳ ﾊﾟﾝ ｳﾞｨｰ"), "ガッコウ　パン　ヴィー");
    EXPECT_EQ(seion("ガッコウ　パン　ヴィー"), "カツコウ　ハン　ウイー");
    EXPECT_EQ(seion("ヂヅデドバビブベボ"), "チツテトハヒフヘホ");
    EXPECT_EQ(seion("ナニヌネノ"), "ナニヌネノ");
}

TEST(LegacyProfile, ProfileErrorsNameFileLineAndKey) {
    auto error_of = [](const std::string& text) {
        try {
            parse_profile(text, "p.toml", ".");
        } catch (const ProfileError& e) {
            return std::string(e.what());
        }
        return std::string("no error");
    };
    std::string base = "name = \"x\"\nencoding = \"utf-8\"\nformat = \"csv\"\n";
    EXPECT_EQ(error_of("name = \"x\"\nencoding = \"latin-1\"\nformat = \"csv\"\n"),
              "p.toml:2: encoding: must be utf-8 or cp932");
    EXPECT_NE(error_of(base + "[field.person.nmae]\ncolumn = \"a\"\n").find("p.toml:4: field.person.nmae: not a 本人確認情報 item"),
              std::string::npos);
    EXPECT_NE(error_of(base + "[field.person.residentCode]\ncolumn = \"a\"\n").find("field.person.myNumber: required"),
              std::string::npos);
    auto fixed = "name = \"x\"\nencoding = \"cp932\"\nformat = \"fixed\"\n[fixed]\nrecord_bytes = 10\n"
                 "[field.person.residentCode]\noffset = 5\nwidth = 11\n";
    EXPECT_NE(error_of(fixed).find("p.toml:6: field.person.residentCode: offset + width (16) is beyond fixed.record_bytes (10)"),
              std::string::npos)
        << error_of(fixed);
    EXPECT_NE(error_of("name = \"x\"\nencoding = \"utf-8\"\nformat = \"csv\"\nbogus = 1\n").find("p.toml:4: bogus: unknown key"),
              std::string::npos);
    EXPECT_NE(error_of("name = \n").find("p.toml:1:"), std::string::npos) << "TOML syntax errors carry the line";
}

TEST(LegacyProfile, GaijiTableRules) {
    auto error_of = [](const std::string& text) {
        try {
            parse_gaiji_table(text, "g.toml");
        } catch (const ProfileError& e) {
            return std::string(e.what());
        }
        return std::string("no error");
    };
    EXPECT_NE(error_of("municipality = \"131017\"\n").find("g.toml:1: municipality: municipality: check digit"),
              std::string::npos)
        << error_of("municipality = \"131017\"\n");
    EXPECT_NE(error_of("municipality = \"131016\"\n[[char]]\nvendor = \"U+4E00\"\ncanonical = \"U+4E00\"\n")
                  .find("g.toml:3: char[0].vendor: must be a private-use code point"),
              std::string::npos);
    EXPECT_NE(error_of("municipality = \"131016\"\n[[char]]\nvendor = \"U+E000\"\ncanonical = \"U+9AD9\"\n"
                       "[[char]]\nvendor = \"U+E000\"\ncanonical = \"U+9AD8\"\n")
                  .find("mapped twice"),
              std::string::npos);
    auto g = parse_gaiji_table("municipality = \"131016\"\n[[char]]\nvendor = \"U+E003\"\ncanonical = \"U+845B U+E0100\"\n", "g");
    EXPECT_EQ(g.map.at(0xE003), std::u32string(U"\u845B\U000E0100"));
}

TEST(LegacyProfile, ArbitraryBytesNeverThrow) {
    Shipped s;
    std::string junk;
    for (int i = 0; i < 4096; ++i) junk += static_cast<char>((i * 131 + 7) % 256);
    EXPECT_NO_THROW(parse(junk, s.csv, s.options()));
    EXPECT_NO_THROW(parse(junk, s.fixed, s.options()));
    EXPECT_NO_THROW(parse("", s.csv, s.options()));
    EXPECT_NO_THROW(parse("\r\n\r\n", s.fixed, s.options()));
}
