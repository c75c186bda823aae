// Validators for the identifiers and personal-data items every business plugin handles.
//
// Header-only and dependent only on the C++17 standard library, so that plugins built out of tree
// against the SDK and the host apply exactly the same rules.
//
//   auto r = renkei::validate::my_number("person.myNumber", text);
//   if (!r) reply_fault(r.field, r.rule, r.message);
//   renkei::validate::require(renkei::validate::resident_code("person.residentCode", code));
//
// Every validator takes the name of the field to report and returns a Result. On failure, `rule`
// is a stable machine-readable id ("my_number.check_digit", listed below) and `message` reads
// "<field>: <what is wrong>". Messages never echo the value itself: these fields are personal
// information (特定個人情報), and messages end up in logs and faults. They name a position
// ("character 3") or a component ("month 13"), never the value.
//
// Rule ids:
//   my_number.length  my_number.digits  my_number.check_digit
//   resident_code.length  resident_code.digits
//   local_gov_code.length  local_gov_code.digits  local_gov_code.prefecture
//   local_gov_code.check_digit
//   date.format  date.year  date.month  date.day
//   sex_code.value
//   katakana.empty  katakana.length  katakana.utf8  katakana.character
//   name.empty  name.length  name.utf8  name.control
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace renkei::validate {

// The outcome of one validation. Converts to true when the value is valid.
struct Result {
    bool ok = true;
    std::string field;    // the field name the caller passed, e.g. "person.myNumber"
    std::string rule;     // stable rule id, e.g. "my_number.check_digit"
    std::string message;  // "<field>: <what is wrong>", safe to log

    explicit operator bool() const noexcept { return ok; }
};

// Thrown by require(...) and by the check-digit calculators on bad input.
class Invalid : public std::invalid_argument {
public:
    Invalid(std::string field, std::string rule, const std::string& message)
        : std::invalid_argument(message), field_(std::move(field)), rule_(std::move(rule)) {}
    const std::string& field() const noexcept { return field_; }
    const std::string& rule() const noexcept { return rule_; }

private:
    std::string field_;
    std::string rule_;
};

// Throws Invalid carrying the result's field, rule and message if the result is a failure.
inline void require(const Result& result) {
    if (!result.ok) throw Invalid(result.field, result.rule, result.message);
}

// A calendar date (proleptic Gregorian, which is the calendar in force for every valid year).
struct Date {
    int year = 0;
    int month = 0;
    int day = 0;
    friend bool operator==(const Date& a, const Date& b) noexcept {
        return a.year == b.year && a.month == b.month && a.day == b.day;
    }
    friend bool operator!=(const Date& a, const Date& b) noexcept { return !(a == b); }
};

inline constexpr int kMinYear = 1800;
inline constexpr int kMaxYear = 9999;

// 性別 codes. The J-LIS record layouts (seed-004b) name the field but give no code values; these
// are the values of ISO/IEC 5218, which the juki layouts are understood to follow (unverified).
enum class Sex : char { not_known = '0', male = '1', female = '2', not_applicable = '9' };

namespace detail {

inline Result fail(std::string_view field, const char* rule, const std::string& what) {
    Result r;
    r.ok = false;
    r.field = std::string(field);
    r.rule = rule;
    r.message = r.field + ": " + what;
    return r;
}

inline bool is_ascii_digit(char c) noexcept { return c >= '0' && c <= '9'; }

// Decodes the well-formed UTF-8 sequence starting at text[i] (Unicode 15 Table 3-7: no overlong
// forms, no surrogates, nothing above U+10FFFF) and advances i past it. Returns nullopt, leaving i
// unchanged, if the bytes at i are not well-formed.
inline std::optional<char32_t> next_code_point(std::string_view text, std::size_t& i) noexcept {
    const std::size_t n = text.size();
    if (i >= n) return std::nullopt;
    const auto b0 = static_cast<unsigned char>(text[i]);
    if (b0 < 0x80) {
        ++i;
        return char32_t{b0};
    }
    std::size_t len = 0;
    unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    char32_t cp = 0;
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        len = 2; cp = b0 & 0x1F;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
        len = 3; cp = b0 & 0x0F;
        if (b0 == 0xE0) lo = 0xA0;  // overlong
        if (b0 == 0xED) hi = 0x9F;  // surrogates
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        len = 4; cp = b0 & 0x07;
        if (b0 == 0xF0) lo = 0x90;  // overlong
        if (b0 == 0xF4) hi = 0x8F;  // above U+10FFFF
    } else {
        return std::nullopt;
    }
    if (n - i < len) return std::nullopt;
    for (std::size_t k = 1; k < len; ++k) {
        const auto b = static_cast<unsigned char>(text[i + k]);
        if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) return std::nullopt;
        cp = (cp << 6) | (b & 0x3F);
    }
    i += len;
    return cp;
}

// Checks that `text` is exactly `digits` ASCII digits. `kind` prefixes the rule ids.
// Characters are checked before the length, so that full-width digits (a common paste from
// Japanese input methods) get a precise message instead of a confusing length count.
inline Result fixed_digits(std::string_view field, std::string_view text, std::size_t digits,
                           const char* rule_length, const char* rule_digits) {
    std::size_t i = 0, chars = 0;
    while (i < text.size()) {
        ++chars;
        const std::size_t at = i;
        const auto cp = next_code_point(text, i);
        if (!cp) {
            return fail(field, rule_digits,
                        "character " + std::to_string(chars) +
                            " is not an ASCII digit (invalid UTF-8 at byte " +
                            std::to_string(at + 1) + ")");
        }
        if (*cp >= U'０' && *cp <= U'９') {
            return fail(field, rule_digits,
                        "character " + std::to_string(chars) +
                            " is a full-width digit; only ASCII digits 0-9 are allowed");
        }
        if (*cp > 0x7F || !is_ascii_digit(static_cast<char>(*cp))) {
            return fail(field, rule_digits,
                        "character " + std::to_string(chars) +
                            " is not an ASCII digit; only 0-9 are allowed");
        }
    }
    if (chars != digits) {
        return fail(field, rule_length,
                    "must be exactly " + std::to_string(digits) + " digits, got " +
                        std::to_string(chars));
    }
    return {};
}

// Parses exactly `width` ASCII digits at text[pos]; nullopt if any is not a digit.
inline std::optional<int> digits_at(std::string_view text, std::size_t pos, std::size_t width) {
    int v = 0;
    for (std::size_t k = 0; k < width; ++k) {
        const char c = text[pos + k];
        if (!is_ascii_digit(c)) return std::nullopt;
        v = v * 10 + (c - '0');
    }
    return v;
}

inline int my_number_check_digit_of_valid_base(std::string_view first11) noexcept {
    // 番号法施行規則第5条: P_n is the n-th digit counting from the lowest base digit (the one just
    // left of the check digit), Q_n = n+1 for n = 1..6 and n-5 for n = 7..11.
    int sum = 0;
    for (int n = 1; n <= 11; ++n) {
        const int p = first11[static_cast<std::size_t>(11 - n)] - '0';
        const int q = n <= 6 ? n + 1 : n - 5;
        sum += p * q;
    }
    const int r = sum % 11;
    return r <= 1 ? 0 : 11 - r;
}

inline int local_gov_check_digit_of_valid_base(std::string_view first5) noexcept {
    // Weights 6,5,4,3,2 from the left; check digit = ones digit of 11 - (sum mod 11), so a
    // remainder of 0 gives 1 and a remainder of 1 gives 0.
    static constexpr int kWeights[5] = {6, 5, 4, 3, 2};
    int sum = 0;
    for (std::size_t k = 0; k < 5; ++k) sum += (first5[k] - '0') * kWeights[k];
    return (11 - sum % 11) % 10;
}

} // namespace detail

// ---------------------------------------------------------------------------------------------
// 個人番号 (My Number)

// The check digit (0..9) for an 11-digit base, per 番号法施行規則第5条.
// Throws Invalid (field "my_number base") unless `first11` is exactly 11 ASCII digits.
inline int compute_my_number_check_digit(std::string_view first11) {
    require(detail::fixed_digits("my_number base", first11, 11, "my_number.length",
                                 "my_number.digits"));
    return detail::my_number_check_digit_of_valid_base(first11);
}

// Exactly 12 ASCII digits whose last digit is the check digit of the first 11.
inline Result my_number(std::string_view field, std::string_view text) {
    Result r = detail::fixed_digits(field, text, 12, "my_number.length", "my_number.digits");
    if (!r) return r;
    const int expected = detail::my_number_check_digit_of_valid_base(text.substr(0, 11));
    const int actual = text[11] - '0';
    if (actual != expected) {
        return detail::fail(field, "my_number.check_digit",
                            "check digit is " + std::to_string(actual) + ", expected " +
                                std::to_string(expected) + " (番号法施行規則第5条)");
    }
    return r;
}

// ---------------------------------------------------------------------------------------------
// 住民票コード (resident record code)

// Exactly 11 ASCII digits. Its check-digit scheme is not public, so only the form is checked.
inline Result resident_code(std::string_view field, std::string_view text) {
    return detail::fixed_digits(field, text, 11, "resident_code.length", "resident_code.digits");
}

// ---------------------------------------------------------------------------------------------
// 全国地方公共団体コード (local government code, 6 digits with check digit)

// The check digit (0..9) for a 5-digit code (JIS X 0401 prefecture + JIS X 0402 municipality).
// Throws Invalid (field "local_gov_code base") unless `first5` is exactly 5 ASCII digits.
inline int compute_local_gov_check_digit(std::string_view first5) {
    require(detail::fixed_digits("local_gov_code base", first5, 5, "local_gov_code.length",
                                 "local_gov_code.digits"));
    return detail::local_gov_check_digit_of_valid_base(first5);
}

// Exactly 6 ASCII digits: a prefecture number 01..47 (JIS X 0401), three municipality digits, and
// the check digit of the first five.
inline Result local_gov_code(std::string_view field, std::string_view text) {
    Result r = detail::fixed_digits(field, text, 6, "local_gov_code.length",
                                    "local_gov_code.digits");
    if (!r) return r;
    const int prefecture = *detail::digits_at(text, 0, 2);
    if (prefecture < 1 || prefecture > 47) {
        return detail::fail(field, "local_gov_code.prefecture",
                            "prefecture number " + std::string(text.substr(0, 2)) +
                                " is outside 01..47 (JIS X 0401)");
    }
    const int expected = detail::local_gov_check_digit_of_valid_base(text.substr(0, 5));
    const int actual = text[5] - '0';
    if (actual != expected) {
        return detail::fail(field, "local_gov_code.check_digit",
                            "check digit is " + std::to_string(actual) + ", expected " +
                                std::to_string(expected) + " (全国地方公共団体コード)");
    }
    return r;
}

// ---------------------------------------------------------------------------------------------
// Dates

constexpr bool is_leap_year(int year) noexcept {
    return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
}

// Days in `month` (1..12) of `year`; 0 for a month outside 1..12.
constexpr int days_in_month(int year, int month) noexcept {
    constexpr int kDays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (month < 1 || month > 12) return 0;
    return month == 2 && is_leap_year(year) ? 29 : kDays[month - 1];
}

// A real Gregorian date with year in kMinYear..kMaxYear.
inline Result date(std::string_view field, int year, int month, int day) {
    if (year < kMinYear || year > kMaxYear) {
        return detail::fail(field, "date.year",
                            "year " + std::to_string(year) + " is outside " +
                                std::to_string(kMinYear) + ".." + std::to_string(kMaxYear));
    }
    if (month < 1 || month > 12) {
        return detail::fail(field, "date.month",
                            "month " + std::to_string(month) + " is outside 1..12");
    }
    const int last = days_in_month(year, month);
    if (day < 1 || day > last) {
        return detail::fail(field, "date.day",
                            "day " + std::to_string(day) + " is outside 1.." +
                                std::to_string(last) + " for that month");
    }
    return {};
}

// "YYYY-MM-DD" or "YYYYMMDD" (ASCII digits only, nothing around it) naming a valid date.
// On success, stores the date in *out if out is not null.
inline Result date(std::string_view field, std::string_view text, Date* out = nullptr) {
    std::optional<int> y, m, d;
    if (text.size() == 10 && text[4] == '-' && text[7] == '-') {
        y = detail::digits_at(text, 0, 4);
        m = detail::digits_at(text, 5, 2);
        d = detail::digits_at(text, 8, 2);
    } else if (text.size() == 8) {
        y = detail::digits_at(text, 0, 4);
        m = detail::digits_at(text, 4, 2);
        d = detail::digits_at(text, 6, 2);
    }
    if (!y || !m || !d) {
        return detail::fail(field, "date.format",
                            "must be a date written YYYY-MM-DD or YYYYMMDD in ASCII digits");
    }
    Result r = date(field, *y, *m, *d);
    if (r && out != nullptr) *out = Date{*y, *m, *d};
    return r;
}

// Parses a date as date(field, text) does, or throws Invalid.
inline Date require_date(std::string_view field, std::string_view text) {
    Date parsed;
    require(date(field, text, &parsed));
    return parsed;
}

// ---------------------------------------------------------------------------------------------
// 性別 (sex code)

// Exactly one of "1" (male), "2" (female), "9" (not applicable), "0" (not known).
inline Result sex_code(std::string_view field, std::string_view text, Sex* out = nullptr) {
    if (text.size() == 1 &&
        (text[0] == '0' || text[0] == '1' || text[0] == '2' || text[0] == '9')) {
        if (out != nullptr) *out = static_cast<Sex>(text[0]);
        return {};
    }
    return detail::fail(field, "sex_code.value",
                        "must be one of 1 (male), 2 (female), 9 (not applicable), 0 (not known)");
}

// ---------------------------------------------------------------------------------------------
// Text

// A kana reading (ふりがな): non-blank, at most max_chars characters, each one full-width katakana
// (U+30A1..U+30F6, ァ..ヶ), the long vowel mark ー, the middle dot ・ or the full-width space.
inline Result katakana(std::string_view field, std::string_view text, std::size_t max_chars) {
    std::size_t i = 0, chars = 0;
    bool blank = true;
    while (i < text.size()) {
        ++chars;
        const std::size_t at = i;
        const auto cp = detail::next_code_point(text, i);
        if (!cp) {
            return detail::fail(field, "katakana.utf8",
                                "invalid UTF-8 at byte " + std::to_string(at + 1));
        }
        const char32_t c = *cp;
        if (c == U'　') continue;  // full-width space separates family and given names
        blank = false;
        if ((c >= U'ァ' && c <= U'ヶ') || c == U'ー' || c == U'・') continue;

        const std::string pos = "character " + std::to_string(chars);
        const char* why = " is not full-width katakana, ー, ・ or the full-width space";
        if (c >= U'ぁ' && c <= U'ゖ') {
            why = " is hiragana; only full-width katakana is allowed";
        } else if (c >= 0xFF61 && c <= 0xFF9F) {
            why = " is half-width katakana; use full-width katakana";
        } else if (c == U' ') {
            why = " is an ASCII space; use the full-width space U+3000";
        } else if (c == 0x3099 || c == 0x309A) {
            why = " is a combining (semi-)voiced sound mark; use the precomposed katakana";
        }
        return detail::fail(field, "katakana.character", pos + why);
    }
    if (blank) return detail::fail(field, "katakana.empty", "must not be empty or blank");
    if (chars > max_chars) {
        return detail::fail(field, "katakana.length",
                            "has " + std::to_string(chars) + " characters, at most " +
                                std::to_string(max_chars) + " allowed");
    }
    return {};
}

// A name (氏名 and similar free text): well-formed UTF-8, non-blank, at most max_chars characters
// (code points), and free of control characters, line separators and bidirectional-override
// characters (which would let a value break or disguise log lines and printed forms).
// Private-use characters are accepted: municipal systems map 外字 there.
inline Result name(std::string_view field, std::string_view text, std::size_t max_chars) {
    std::size_t i = 0, chars = 0;
    bool blank = true;
    while (i < text.size()) {
        ++chars;
        const std::size_t at = i;
        const auto cp = detail::next_code_point(text, i);
        if (!cp) {
            return detail::fail(field, "name.utf8",
                                "invalid UTF-8 at byte " + std::to_string(at + 1));
        }
        const char32_t c = *cp;
        const bool control = c < 0x20 || (c >= 0x7F && c <= 0x9F) || c == 0x2028 ||
                             c == 0x2029 || (c >= 0x202A && c <= 0x202E) ||
                             (c >= 0x2066 && c <= 0x2069);
        if (control) {
            return detail::fail(field, "name.control",
                                "character " + std::to_string(chars) +
                                    " is a control or bidirectional formatting character");
        }
        if (c != U' ' && c != U'　') blank = false;
    }
    if (blank) return detail::fail(field, "name.empty", "must not be empty or blank");
    if (chars > max_chars) {
        return detail::fail(field, "name.length",
                            "has " + std::to_string(chars) + " characters, at most " +
                                std::to_string(max_chars) + " allowed");
    }
    return {};
}

} // namespace renkei::validate
