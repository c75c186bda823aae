#include <renkei/validate.hpp>

#include <gtest/gtest.h>

#include <random>

namespace v = renkei::validate;

TEST(MyNumber, AcceptsValidNumbers) {
    for (const char* n : {"123456789018", "000000000000", "987654321093", "111111111118", "202311220014"})
        EXPECT_FALSE(v::my_number("person.myNumber", n)) << n;
}

TEST(MyNumber, RejectsWrongCheckDigitNamingFieldAndRule) {
    auto r = v::my_number("person.myNumber", "123456789013");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->field, "person.myNumber");
    EXPECT_EQ(r->rule, "check digit (番号法施行規則第5条)");
    EXPECT_EQ(r->message, "person.myNumber: check digit is 3, expected 8 (check digit (番号法施行規則第5条))");
}

TEST(MyNumber, RejectsFormErrors) {
    EXPECT_TRUE(v::my_number("f", "12345678901"));    // 11 digits
    EXPECT_TRUE(v::my_number("f", "1234567890180"));  // 13 digits
    EXPECT_TRUE(v::my_number("f", ""));
    EXPECT_TRUE(v::my_number("f", "12345678901a"));
    EXPECT_TRUE(v::my_number("f", "1234 5678901"));
    auto fw = v::my_number("f", "１２３４５６７８９０１８");
    ASSERT_TRUE(fw);
    EXPECT_NE(fw->message.find("full-width"), std::string::npos) << fw->message;
}

TEST(MyNumber, EverySingleDigitChangeIsCaught) {
    const std::string good = "123456789018";
    for (size_t pos = 0; pos < 12; ++pos)
        for (char d = '0'; d <= '9'; ++d) {
            if (d == good[pos]) continue;
            std::string bad = good;
            bad[pos] = d;
            // mod 11 with weights 2..7 catches every single-digit change (the weights are < 11).
            EXPECT_TRUE(v::my_number("f", bad)) << bad;
        }
}

TEST(MyNumber, ComputedCheckDigitValidatesAndNoOtherDigitDoes) {
    std::mt19937 rng(20261122);
    std::uniform_int_distribution<int> digit(0, 9);
    for (int i = 0; i < 2000; ++i) {
        std::string prefix;
        for (int k = 0; k < 11; ++k) prefix.push_back(static_cast<char>('0' + digit(rng)));
        int c = v::my_number_check_digit(prefix);
        ASSERT_GE(c, 0);
        ASSERT_LE(c, 9);
        for (int d = 0; d <= 9; ++d)
            EXPECT_EQ(!v::my_number("f", prefix + std::to_string(d)), d == c) << prefix << d;
    }
    EXPECT_EQ(v::my_number_check_digit("1234"), -1);
}

TEST(ResidentCode, FormOnly) {
    EXPECT_FALSE(v::resident_code("person.residentCode", "12345678901"));
    auto r = v::resident_code("person.residentCode", "1234567890");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->field, "person.residentCode");
    EXPECT_TRUE(v::resident_code("f", "1234567890x"));
    EXPECT_TRUE(v::resident_code("f", "123456789012"));
}

TEST(LocalGovCode, RealCodesAccepted) {
    for (const char* c : {"131016", "011002", "271004", "130001", "012025", "401307"})
        EXPECT_FALSE(v::local_gov_code("address.localGovCode", c)) << c;
}

TEST(LocalGovCode, Rejections) {
    auto r = v::local_gov_code("address.localGovCode", "131017");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->field, "address.localGovCode");
    EXPECT_NE(r->message.find("expected 6"), std::string::npos) << r->message;
    EXPECT_TRUE(v::local_gov_code("f", "13101"));
    EXPECT_TRUE(v::local_gov_code("f", "1310166"));
    EXPECT_TRUE(v::local_gov_code("f", "13a016"));
    auto pref = v::local_gov_code("f", "481003"); // no prefecture 48
    ASSERT_TRUE(pref);
    EXPECT_NE(pref->rule.find("01-47"), std::string::npos);
    for (size_t pos = 0; pos < 5; ++pos) {
        std::string bad = "131016";
        bad[pos] = bad[pos] == '9' ? '0' : static_cast<char>(bad[pos] + 1);
        if (bad.substr(0, 2) == "00" || std::stoi(bad.substr(0, 2)) > 47) continue;
        EXPECT_TRUE(v::local_gov_code("f", bad)) << bad;
    }
}

TEST(Dates, RealCalendar) {
    EXPECT_FALSE(v::date("d", 2024, 2, 29));
    EXPECT_FALSE(v::date("d", 2000, 2, 29));
    EXPECT_TRUE(v::date("d", 1900, 2, 29));
    EXPECT_TRUE(v::date("d", 2023, 2, 29));
    EXPECT_TRUE(v::date("d", 2023, 13, 1));
    EXPECT_TRUE(v::date("d", 2023, 0, 1));
    EXPECT_TRUE(v::date("d", 2023, 4, 31));
    EXPECT_TRUE(v::date("d", 2023, 1, 0));
    EXPECT_TRUE(v::date("d", 1799, 1, 1));
    auto r = v::date("person.dateOfBirth", 2023, 2, 29);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->field, "person.dateOfBirth");
    EXPECT_EQ(r->rule, "real calendar date");
}

TEST(Dates, Text) {
    v::Ymd d;
    EXPECT_FALSE(v::date_text("d", "1985-04-01", &d));
    EXPECT_EQ(d.year, 1985);
    EXPECT_EQ(d.month, 4);
    EXPECT_EQ(d.day, 1);
    EXPECT_FALSE(v::date_text("d", "20240229"));
    EXPECT_TRUE(v::date_text("d", "2023-02-29"));
    EXPECT_TRUE(v::date_text("d", "2023/02/28"));
    EXPECT_TRUE(v::date_text("d", "2023-2-28"));
    EXPECT_TRUE(v::date_text("d", "abcdefgh"));
    EXPECT_TRUE(v::date_text("d", ""));
}

TEST(SexCode, Defined) {
    for (int c : {0, 1, 2, 9}) EXPECT_FALSE(v::sex_code("person.sex", c));
    for (int c : {3, 8, -1, 10}) EXPECT_TRUE(v::sex_code("person.sex", c));
}

TEST(Text, Utf8AndLimits) {
    EXPECT_FALSE(v::text("name", "山田 太郎", 10));
    EXPECT_TRUE(v::text("name", "", 10));
    EXPECT_TRUE(v::text("name", "山田太郎", 3));
    EXPECT_TRUE(v::text("name", std::string("\xE5\xB1", 2), 10));      // truncated
    EXPECT_TRUE(v::text("name", std::string("\xC0\xAF", 2), 10));      // overlong '/'
    EXPECT_TRUE(v::text("name", std::string("\xED\xA0\x80", 3), 10));  // surrogate
    EXPECT_TRUE(v::text("name", "a\nb", 10));
    EXPECT_FALSE(v::text("name", "\U000F0001", 10)); // a private-use 外字 code point is valid text
}

TEST(Katakana, OnlyFullWidthKatakana) {
    EXPECT_FALSE(v::katakana("name.kana", "ヤマダ　タロウ"));
    EXPECT_FALSE(v::katakana("name.kana", "スミス・ジョーンズ"));
    EXPECT_TRUE(v::katakana("name.kana", "やまだ"));
    EXPECT_TRUE(v::katakana("name.kana", "ﾔﾏﾀﾞ")); // half-width
    EXPECT_TRUE(v::katakana("name.kana", "ヤマダ1"));
}

TEST(Require, ThrowsWithFieldAndRule) {
    try {
        v::require(v::my_number("person.myNumber", "123456789013"));
        FAIL();
    } catch (const v::Invalid& e) {
        EXPECT_EQ(e.field(), "person.myNumber");
        EXPECT_EQ(e.rule(), "check digit (番号法施行規則第5条)");
    }
    EXPECT_NO_THROW(v::require(v::my_number("f", "123456789018")));
}
