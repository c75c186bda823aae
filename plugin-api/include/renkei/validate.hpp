// Validators for the identifiers and values every business plugin handles. Header-only and
// dependent on the C++ standard library alone, so plugins built out of tree share them with the
// host. Each check returns a Violation naming the field and the rule, or nothing when valid.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace renkei::validate {

struct Violation {
    std::string field;   // e.g. "person.myNumber"
    std::string rule;    // e.g. "check digit (番号法施行規則第5条)"
    std::string message; // "<field>: <what is wrong> (<rule>)"
};
using Result = std::optional<Violation>;

// Thrown by require(): carries the field and the rule.
class Invalid : public std::invalid_argument {
public:
    explicit Invalid(const Violation& v) : std::invalid_argument(v.message), field_(v.field), rule_(v.rule) {}
    const std::string& field() const noexcept { return field_; }
    const std::string& rule() const noexcept { return rule_; }

private:
    std::string field_, rule_;
};

inline void require(const Result& r) {
    if (r) throw Invalid(*r);
}

namespace detail {
inline Violation violation(std::string_view field, std::string_view rule, const std::string& what) {
    return Violation{std::string(field), std::string(rule),
                     std::string(field) + ": " + what + " (" + std::string(rule) + ")"};
}
inline bool ascii_digits(std::string_view s) {
    for (char c : s)
        if (c < '0' || c > '9') return false;
    return true;
}
// Names the first offending character so that e.g. full-width digits are easy to spot.
inline std::string digits_problem(std::string_view s, size_t want) {
    if (s.size() != want) {
        // Full-width digits are 3 bytes each in UTF-8: say so rather than just "wrong length".
        if (s.size() == want * 3 && s.size() > 0 && static_cast<unsigned char>(s[0]) == 0xEF)
            return "must be " + std::to_string(want) + " ASCII digits, got full-width characters";
        return "must be exactly " + std::to_string(want) + " digits, got " + std::to_string(s.size()) +
               " characters";
    }
    for (size_t i = 0; i < s.size(); ++i)
        if (s[i] < '0' || s[i] > '9')
            return "must be " + std::to_string(want) + " ASCII digits; position " + std::to_string(i + 1) +
                   " is not a digit";
    return {};
}
} // namespace detail

inline constexpr std::string_view kMyNumberRule = "check digit (番号法施行規則第5条)";
inline constexpr std::string_view kLocalGovRule = "check digit of the 全国地方公共団体コード";

// 個人番号 check digit over the first 11 digits (番号法施行規則第5条): P_n is the n-th digit counted
// from the lowest (n = 1..11), Q_n = n + 1 for n <= 6 and n - 5 for n >= 7; r = Σ P_n·Q_n mod 11;
// the check digit is 0 when r <= 1, otherwise 11 - r. Returns -1 if `first11` is malformed.
inline int my_number_check_digit(std::string_view first11) {
    if (first11.size() != 11 || !detail::ascii_digits(first11)) return -1;
    int sum = 0;
    for (int n = 1; n <= 11; ++n) {
        int p = first11[11 - n] - '0';
        int q = n <= 6 ? n + 1 : n - 5;
        sum += p * q;
    }
    int r = sum % 11;
    return r <= 1 ? 0 : 11 - r;
}

// 個人番号: 12 ASCII digits, the last the check digit above.
inline Result my_number(std::string_view field, std::string_view value) {
    if (auto p = detail::digits_problem(value, 12); !p.empty())
        return detail::violation(field, "12-digit 個人番号", p);
    int want = my_number_check_digit(value.substr(0, 11));
    int got = value[11] - '0';
    if (got != want)
        return detail::violation(field, kMyNumberRule,
                                 "check digit is " + std::to_string(got) + ", expected " + std::to_string(want));
    return std::nullopt;
}

// 住民票コード: 11 ASCII digits. Its check-digit formula is set by the Minister and not public, so
// only the form is checked here.
inline Result resident_code(std::string_view field, std::string_view value) {
    if (auto p = detail::digits_problem(value, 11); !p.empty())
        return detail::violation(field, "11-digit 住民票コード (住基法施行規則第1条)", p);
    return std::nullopt;
}

// 全国地方公共団体コード check digit over the first five digits: the ones digit of
// 11 - (Σ d_i × (6,5,4,3,2) mod 11). Returns -1 if `first5` is malformed.
inline int local_gov_check_digit(std::string_view first5) {
    if (first5.size() != 5 || !detail::ascii_digits(first5)) return -1;
    int sum = 0;
    for (int i = 0; i < 5; ++i) sum += (first5[i] - '0') * (6 - i);
    return (11 - sum % 11) % 10;
}

// 全国地方公共団体コード: 6 ASCII digits, prefecture part 01-47, last digit the check digit.
inline Result local_gov_code(std::string_view field, std::string_view value) {
    if (auto p = detail::digits_problem(value, 6); !p.empty())
        return detail::violation(field, "6-digit 全国地方公共団体コード", p);
    int pref = (value[0] - '0') * 10 + (value[1] - '0');
    if (pref < 1 || pref > 47)
        return detail::violation(field, "都道府県コード 01-47",
                                 "prefecture part is " + std::string(value.substr(0, 2)));
    int want = local_gov_check_digit(value.substr(0, 5));
    int got = value[5] - '0';
    if (got != want)
        return detail::violation(field, kLocalGovRule,
                                 "check digit is " + std::to_string(got) + ", expected " + std::to_string(want));
    return std::nullopt;
}

inline bool leap_year(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }
inline int days_in_month(int y, int m) {
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && leap_year(y) ? 29 : days[m - 1];
}

// A real Gregorian date, year 1800..9999.
inline Result date(std::string_view field, int year, int month, int day) {
    if (year < 1800 || year > 9999)
        return detail::violation(field, "year 1800-9999", "year " + std::to_string(year) + " is out of range");
    if (month < 1 || month > 12)
        return detail::violation(field, "month 1-12", "month " + std::to_string(month) + " does not exist");
    if (day < 1 || day > days_in_month(year, month))
        return detail::violation(field, "real calendar date",
                                 std::to_string(year) + "-" + std::to_string(month) + " has no day " +
                                     std::to_string(day));
    return std::nullopt;
}

struct Ymd {
    int year = 0, month = 0, day = 0;
};

// Parses "YYYY-MM-DD" or "YYYYMMDD" and checks the date; on failure `out` is untouched.
inline Result date_text(std::string_view field, std::string_view text, Ymd* out = nullptr) {
    std::string digits;
    if (text.size() == 10 && text[4] == '-' && text[7] == '-')
        digits = std::string(text.substr(0, 4)) + std::string(text.substr(5, 2)) + std::string(text.substr(8, 2));
    else if (text.size() == 8)
        digits = std::string(text);
    if (digits.size() != 8 || !detail::ascii_digits(digits))
        return detail::violation(field, "date as YYYY-MM-DD or YYYYMMDD", "'" + std::string(text) + "' is not a date");
    Ymd d{std::stoi(digits.substr(0, 4)), std::stoi(digits.substr(4, 2)), std::stoi(digits.substr(6, 2))};
    if (auto v = date(field, d.year, d.month, d.day)) return v;
    if (out != nullptr) *out = d;
    return std::nullopt;
}

// 性別 code as the juki record layout carries it: 1 male, 2 female, 9 not applicable, 0 unknown.
inline Result sex_code(std::string_view field, int code) {
    if (code == 0 || code == 1 || code == 2 || code == 9) return std::nullopt;
    return detail::violation(field, "性別 code 1 (male), 2 (female), 9 (not applicable) or 0 (unknown)",
                             "code " + std::to_string(code) + " is not defined");
}

// Decodes one UTF-8 scalar at `i` (advancing it); returns -1 on malformed input.
inline int32_t next_code_point(std::string_view s, size_t& i) {
    auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
    unsigned char c = b(i);
    int len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    if (len == 0 || i + len > s.size()) return -1;
    int32_t cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
    for (int k = 1; k < len; ++k) {
        if ((b(i + k) & 0xC0) != 0x80) return -1;
        cp = (cp << 6) | (b(i + k) & 0x3F);
    }
    static const int32_t min_for_len[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_for_len[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return -1; // overlong, surrogate
    i += len;
    return cp;
}

// A name or address: valid UTF-8, no control characters, 1..max_code_points characters.
inline Result text(std::string_view field, std::string_view value, size_t max_code_points) {
    size_t count = 0;
    for (size_t i = 0; i < value.size();) {
        size_t at = i;
        int32_t cp = next_code_point(value, i);
        if (cp < 0) return detail::violation(field, "valid UTF-8", "malformed UTF-8 at byte " + std::to_string(at));
        if (cp < 0x20 || cp == 0x7F)
            return detail::violation(field, "no control characters", "control character at byte " + std::to_string(at));
        ++count;
    }
    if (count == 0) return detail::violation(field, "not empty", "is empty");
    if (count > max_code_points)
        return detail::violation(field, "at most " + std::to_string(max_code_points) + " characters",
                                 std::to_string(count) + " characters");
    return std::nullopt;
}

// 氏名のカタカナ: full-width katakana (ァ-ヶ), the long vowel mark, the middle dot and the
// full-width space only.
inline Result katakana(std::string_view field, std::string_view value, size_t max_code_points = 100) {
    if (auto v = text(field, value, max_code_points)) return v;
    for (size_t i = 0; i < value.size();) {
        size_t at = i;
        int32_t cp = next_code_point(value, i);
        bool ok = (cp >= 0x30A1 && cp <= 0x30F6) || cp == 0x30FC || cp == 0x30FB || cp == 0x3000;
        if (!ok)
            return detail::violation(field, "full-width katakana",
                                     "character at byte " + std::to_string(at) + " is not katakana");
    }
    return std::nullopt;
}

} // namespace renkei::validate
