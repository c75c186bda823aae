#include <renkei/legacy_file/parser.hpp>

#include <renkei/validate.hpp>

#include <cerrno>
#include <iconv.h>
#include <algorithm>
#include <array>
#include <cstdint>
#include <map>
#include <random>
#include <stdexcept>
#include <variant>

namespace renkei::legacy_file {
namespace {

namespace v = renkei::validate;

void put_utf8(std::string& out, char32_t c) {
    if (c < 0x80) {
        out += static_cast<char>(c);
    } else if (c < 0x800) {
        out += static_cast<char>(0xC0 | (c >> 6));
        out += static_cast<char>(0x80 | (c & 0x3F));
    } else if (c < 0x10000) {
        out += static_cast<char>(0xE0 | (c >> 12));
        out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (c & 0x3F));
    } else {
        out += static_cast<char>(0xF0 | (c >> 18));
        out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (c & 0x3F));
    }
}

// Code points of well-formed UTF-8 (the parser checks the encoding before anything else).
std::u32string code_points(std::string_view s) {
    std::u32string out;
    size_t i = 0;
    while (i < s.size()) {
        auto c = v::detail::next_code_point(s, i);
        if (!c) { // cannot happen after the encoding check; stay total anyway
            out.push_back(0xFFFD);
            ++i;
            continue;
        }
        out.push_back(*c);
    }
    return out;
}

std::string utf8_of(const std::u32string& s) {
    std::string out;
    for (auto c : s) put_utf8(out, c);
    return out;
}

// Strips leading and trailing ' ', '\t' and U+3000 (full-width space, E3 80 80). On the bytes: in
// well-formed UTF-8 (checked before anything else) E3 80 80 is always that character whole.
std::string trim(std::string_view s) {
    constexpr std::string_view kIdeographic = "\xE3\x80\x80";
    while (true) {
        if (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
        else if (s.substr(0, 3) == kIdeographic) s.remove_prefix(3);
        else break;
    }
    while (true) {
        if (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
        else if (s.size() >= 3 && s.substr(s.size() - 3) == kIdeographic) s.remove_suffix(3);
        else break;
    }
    return std::string(s);
}

// The 0-based index of the first invalid UTF-8 byte, or npos.
size_t invalid_utf8_at(std::string_view s) {
    size_t i = 0;
    while (i < s.size()) {
        size_t at = i;
        if (!v::detail::next_code_point(s, i)) return at;
    }
    return std::string_view::npos;
}

struct Iconv {
    iconv_t cd = iconv_open("UTF-8", "CP932");
    ~Iconv() {
        if (cd != reinterpret_cast<iconv_t>(-1)) iconv_close(cd);
    }
};

// One physical line (or fixed record) of the file: its bytes and where it is.
struct Line {
    size_t number = 0;     // 1-based
    std::string_view bytes; // without the line end
    bool terminated = true;
};

std::vector<Line> split_lines(std::string_view data) {
    std::vector<Line> out;
    size_t pos = 0, number = 0;
    while (pos < data.size()) {
        size_t nl = data.find('\n', pos);
        Line l;
        l.number = ++number;
        if (nl == std::string_view::npos) {
            l.bytes = data.substr(pos);
            l.terminated = false;
            pos = data.size();
        } else {
            l.bytes = data.substr(pos, nl - pos);
            pos = nl + 1;
        }
        if (!l.bytes.empty() && l.bytes.back() == '\r') l.bytes.remove_suffix(1);
        out.push_back(l);
    }
    return out;
}

// Splits one CSV line (UTF-8). Returns false with `why` on a malformed quote.
bool split_csv(std::string_view line, char delimiter, char quote, std::vector<std::string>& out, std::string& why) {
    // The cells of the previous line are overwritten in place: their buffers are reused.
    size_t n = 0;
    auto next = [&]() -> std::string& {
        if (n == out.size()) out.emplace_back();
        auto& field = out[n++];
        field.clear();
        return field;
    };
    size_t i = 0;
    while (true) {
        std::string& field = next();
        if (i < line.size() && line[i] == quote) {
            ++i;
            bool closed = false;
            while (i < line.size()) {
                if (line[i] == quote) {
                    if (i + 1 < line.size() && line[i + 1] == quote) {
                        field += quote;
                        i += 2;
                        continue;
                    }
                    closed = true;
                    ++i;
                    break;
                }
                field += line[i++];
            }
            if (!closed) {
                why = "column " + std::to_string(n) + ": a quoted field is not closed on its line";
                out.resize(n);
                return false;
            }
            if (i < line.size() && line[i] != delimiter) {
                why = "column " + std::to_string(n) + ": text after the closing quote";
                out.resize(n);
                return false;
            }
        } else {
            size_t end = std::min(line.find(delimiter, i), line.size());
            field.assign(line.substr(i, end - i));
            i = end;
        }
        if (i >= line.size()) break;
        ++i; // the delimiter
        if (i == line.size()) {
            next(); // a trailing delimiter: one more empty field
            break;
        }
    }
    out.resize(n);
    return true;
}

struct Era {
    char digit, letter;
    const char* name;
    Date start; // first day
};
constexpr Era kEras[] = {{'1', 'M', "明治", {1868, 1, 1}},
                         {'2', 'T', "大正", {1912, 7, 30}},
                         {'3', 'S', "昭和", {1926, 12, 25}},
                         {'4', 'H', "平成", {1989, 1, 8}},
                         {'5', 'R', "令和", {2019, 5, 1}}};

long day_number(const Date& d) { return d.year * 10000L + d.month * 100L + d.day; }

Rejection reject(size_t line, const std::string& field, const std::string& rule, const std::string& message) {
    Rejection r;
    r.line = line;
    r.field = field;
    r.rule = rule;
    r.message = field + ": " + message;
    return r;
}

Rejection from(size_t line, const v::Result& r) {
    Rejection out;
    out.line = line;
    out.field = r.field;
    out.rule = r.rule;
    out.message = r.message;
    return out;
}

// Half-width katakana FF66..FF9D in order.
const char32_t kHalfwidth[] = U"ヲァィゥェォャュョッーアイウエオカキクケコサシスセソタチツテトナニヌネノハヒフヘホマミムメモヤユヨラリルレロワン";

bool voiceable(char32_t c) {
    return (c >= U'カ' && c <= U'ト' && c != U'ッ' && ((c <= U'チ' && (c - U'カ') % 2 == 0) || c == U'ツ' || c == U'テ' || c == U'ト')) ||
           c == U'ハ' || c == U'ヒ' || c == U'フ' || c == U'ヘ' || c == U'ホ';
}
bool semi_voiceable(char32_t c) { return c == U'ハ' || c == U'ヒ' || c == U'フ' || c == U'ヘ' || c == U'ホ'; }

// Maps the vendor's private-use codes through the 外字 table; counts what stays private-use.
std::optional<Rejection> map_gaiji(size_t line, const std::string& field, std::string& text, uint16_t* count,
                                   const GaijiTable* table) {
    bool any = false; // most text has no private-use character: left as it is
    for (size_t i = 0; i < text.size() && !any;) {
        auto c = v::detail::next_code_point(text, i);
        if (!c) break;
        any = is_private_use(*c);
    }
    if (!any) {
        if (count) *count = 0;
        return std::nullopt;
    }
    auto cps = code_points(text);
    std::u32string out;
    size_t position = 0;
    for (auto c : cps) {
        ++position;
        if (!is_private_use(c)) {
            out.push_back(c);
            continue;
        }
        if (!table || !table->map.count(c)) {
            char code[16];
            std::snprintf(code, sizeof code, "U+%04X", static_cast<unsigned>(c));
            return reject(line, field, "gaiji.unmapped",
                          "character " + std::to_string(position) + " is the private-use code " + code +
                              ", which the 外字 table" + (table ? " (" + table->source + ")" : std::string(" (none configured)")) +
                              " does not map");
        }
        out += table->map.at(c);
    }
    uint16_t n = 0;
    for (auto c : out)
        if (is_private_use(c)) ++n;
    if (count) *count = n;
    text = utf8_of(out);
    return std::nullopt;
}

// The 異動 of a file seen so far, by (住民票コード, 異動事由, 異動年月日), with the line of each: an
// open-addressing table (linear probing, never more than half full) of two words and a line per
// entry, so nothing is allocated per record. It is hashed under a random key of this process, so
// a file cannot be written to pile its records into one run of the table.
class SeenChanges {
public:
    // Room for `expected` changes: parse() counts the file's data lines first.
    explicit SeenChanges(size_t expected) {
        std::random_device rd;
        for (auto& k : key_) k = (uint64_t(rd()) << 32) ^ rd();
        size_t n = 16;
        while (n < 2 * expected) n *= 2;
        slots_.resize(n);
    }
    // The line that brought the same 異動 before, or 0 after recording `line` as its first.
    // `code`: 11 ASCII digits (checked before).
    size_t first_or_add(std::string_view code, Reason reason, long day, size_t line) {
        uint64_t a = 0;
        for (char c : code) a = a * 10 + static_cast<uint64_t>(c - '0');
        a = (a << 16 | static_cast<uint16_t>(reason)) + 1; // 0: an empty slot
        const uint64_t b = static_cast<uint64_t>(day);
        for (size_t i = slot_of(a, b);; i = (i + 1) & (slots_.size() - 1)) {
            auto& s = slots_[i];
            if (s.a == a && s.b == b) return s.line;
            if (s.a != 0) continue;
            if ((size_ + 1) * 2 > slots_.size()) throw std::logic_error("legacy-file parser: more records than data lines");
            s = {a, b, line};
            ++size_;
            return 0;
        }
    }

private:
    struct Slot {
        uint64_t a = 0, b = 0;
        size_t line = 0;
    };
    static uint64_t mix(uint64_t x) { // MurmurHash3's 64-bit finaliser
        x ^= x >> 33;
        x *= 0xff51afd7ed558ccdULL;
        x ^= x >> 33;
        x *= 0xc4ceb9fe1a85ec53ULL;
        return x ^ (x >> 33);
    }
    size_t slot_of(uint64_t a, uint64_t b) const {
        return static_cast<size_t>(mix(mix(a ^ key_[0]) ^ b ^ key_[1])) & (slots_.size() - 1);
    }
    std::vector<Slot> slots_;
    size_t size_ = 0;
    uint64_t key_[2];
};

class RecordParser {
public:
    RecordParser(const Profile& p, const ParseOptions& o, size_t expected) : p_(p), o_(o), seen_(expected) {}

    // Raw (UTF-8, not yet trimmed) value of each mapped item of one record, in profile order.
    std::variant<Record, Rejection> convert(size_t line, const std::vector<std::string_view>& raw) {
        Record r;
        r.line = line;
        std::array<std::string, kItemCount> val; // an item the profile does not map stays empty
        for (size_t i = 0; i < p_.fields.size(); ++i) {
            auto& f = p_.fields[i];
            std::string_view in = f.value ? std::string_view(*f.value) : raw[i];
            std::string s = f.trim ? trim(in) : std::string(in);
            if (f.halfwidth_kana) s = fullwidth_kana(s);
            val[static_cast<size_t>(f.item)] = std::move(s);
        }
        auto get = [&](Item it) -> std::string& { return val[static_cast<size_t>(it)]; };
        auto fail = [&](Rejection x) {
            x.line = line;
            x.resident_code = r.resident_code;
            return x;
        };
        r.resident_code = std::move(get(Item::residentCode));
        auto name = [](Item it) { return std::string(item_name(it)); };
        if (auto e = v::resident_code(name(Item::residentCode), r.resident_code); !e) return fail(from(line, e));
        r.my_number = std::move(get(Item::myNumber));
        if (auto e = v::my_number(name(Item::myNumber), r.my_number); !e) return fail(from(line, e));
        r.kanji = std::move(get(Item::kanji));
        if (auto e = map_gaiji(line, name(Item::kanji), r.kanji, &r.name_gaiji, o_.gaiji)) return fail(*e);
        if (auto e = v::name(name(Item::kanji), r.kanji, 60); !e) return fail(from(line, e));
        r.kana = std::move(get(Item::kana));
        if (auto e = v::katakana(name(Item::kana), r.kana, 100); !e) return fail(from(line, e));
        r.seion_kana = seion(r.kana);
        Rejection why;
        if (auto d = parse_date(get(Item::dateOfBirth), p_.field(Item::dateOfBirth)->date, name(Item::dateOfBirth), why))
            r.birth = *d;
        else
            return fail(why);
        {
            auto& f = *p_.field(Item::sex);
            auto& s = get(Item::sex);
            auto it = f.codes.find(s);
            std::string target = f.value && f.codes.empty() ? s : (it == f.codes.end() ? "" : it->second);
            if (target == "male") r.sex = Sex::male;
            else if (target == "female") r.sex = Sex::female;
            else
                return fail(reject(line, name(Item::sex), "sex.code",
                                   s.empty() ? "is empty" : "the value is not in the profile's sex codes (" + p_.source + ")"));
        }
        r.address = std::move(get(Item::address));
        if (auto e = map_gaiji(line, name(Item::address), r.address, &r.address_gaiji, o_.gaiji)) return fail(*e);
        if (auto e = v::name(name(Item::address), r.address, 200); !e) return fail(from(line, e));
        r.local_gov_code = std::move(get(Item::localGovCode));
        if (auto e = v::local_gov_code(name(Item::localGovCode), r.local_gov_code); !e) return fail(from(line, e));
        if (!o_.municipalities.empty() && !o_.municipalities.count(r.local_gov_code)) {
            std::string list;
            for (auto& m : o_.municipalities) list += (list.empty() ? "" : ", ") + m;
            return fail(reject(line, name(Item::localGovCode), "municipality.unknown",
                               r.local_gov_code + " is not a municipality this adapter notifies (" + list + ")"));
        }
        r.town_code = std::move(get(Item::townCode));
        if (!r.town_code.empty()) {
            bool digits = r.town_code.size() <= 12;
            for (char c : r.town_code) digits = digits && c >= '0' && c <= '9';
            if (!digits) return fail(reject(line, name(Item::townCode), "town_code.digits", "must be at most 12 ASCII digits"));
        }
        r.former_surname = std::move(get(Item::formerSurname));
        if (!r.former_surname.empty()) {
            if (auto e = map_gaiji(line, name(Item::formerSurname), r.former_surname, &r.former_surname_gaiji, o_.gaiji))
                return fail(*e);
            if (auto e = v::name(name(Item::formerSurname), r.former_surname, 30); !e) return fail(from(line, e));
        }
        r.former_surname_kana = std::move(get(Item::formerSurnameKana));
        if (!r.former_surname_kana.empty())
            if (auto e = v::katakana(name(Item::formerSurnameKana), r.former_surname_kana, 60); !e) return fail(from(line, e));
        r.alias_name = std::move(get(Item::aliasName));
        if (!r.alias_name.empty()) {
            if (auto e = map_gaiji(line, name(Item::aliasName), r.alias_name, nullptr, o_.gaiji)) return fail(*e);
            if (auto e = v::name(name(Item::aliasName), r.alias_name, 60); !e) return fail(from(line, e));
        }
        {
            auto& f = *p_.field(Item::reason);
            auto& s = get(Item::reason);
            auto it = f.codes.find(s);
            std::string target = f.value && f.codes.empty() ? s : (it == f.codes.end() ? "" : it->second);
            static const std::map<std::string, Reason> kNames = {
                {"moveIn", Reason::moveIn}, {"moveOut", Reason::moveOut}, {"moveWithin", Reason::moveWithin},
                {"birth", Reason::birth}, {"death", Reason::death}, {"entryByOffice", Reason::entryByOffice},
                {"correctionByOffice", Reason::correctionByOffice}, {"removalByOffice", Reason::removalByOffice},
                {"residentCodeChange", Reason::residentCodeChange}, {"myNumberChange", Reason::myNumberChange},
                {"itemChange", Reason::itemChange}};
            auto n = kNames.find(target);
            if (n == kNames.end())
                return fail(reject(line, name(Item::reason), "reason.code",
                                   s.empty() ? "is empty" : "異動事由 code \"" + s + "\" is not in the profile's table (" + p_.source + ")"));
            r.reason = n->second;
        }
        if (auto d = parse_date(get(Item::changeDate), p_.field(Item::changeDate)->date, name(Item::changeDate), why))
            r.change = *d;
        else
            return fail(why);
        r.previous_resident_code = std::move(get(Item::previousResidentCode));
        if (r.reason == Reason::residentCodeChange || !r.previous_resident_code.empty()) {
            if (auto e = v::resident_code(name(Item::previousResidentCode), r.previous_resident_code); !e)
                return fail(from(line, e));
            if (r.previous_resident_code == r.resident_code)
                return fail(reject(line, name(Item::previousResidentCode), "juki.code_change", "equals the new 住民票コード"));
        }
        r.previous_municipality = std::move(get(Item::previousMunicipality));
        if (!r.previous_municipality.empty())
            if (auto e = v::local_gov_code(name(Item::previousMunicipality), r.previous_municipality); !e)
                return fail(from(line, e));
        r.operator_id = std::move(get(Item::operatorId));
        r.terminal_id = std::move(get(Item::terminalId));
        for (auto [it, text] : {std::pair{Item::operatorId, &r.operator_id}, std::pair{Item::terminalId, &r.terminal_id}})
            if (!text->empty())
                if (auto e = v::name(name(it), *text, 40); !e) return fail(from(line, e));
        // The same 異動 twice in one file.
        if (size_t first = seen_.first_or_add(r.resident_code, r.reason, day_number(r.change), line))
            return fail(reject(line, "record", "record.duplicate",
                               "the same 住民票コード, 異動事由 and 異動年月日 as line " + std::to_string(first)));
        return r;
    }

private:
    const Profile& p_;
    const ParseOptions& o_;
    SeenChanges seen_;
};

FileFailure file_failure(const std::string& rule, const std::string& message, size_t line = 0, size_t byte = 0) {
    FileFailure f;
    f.field = "file";
    f.rule = rule;
    f.message = "file: " + message;
    f.line = line;
    f.byte = byte;
    return f;
}

} // namespace

std::optional<std::string> cp932_to_utf8(std::string_view bytes, size_t* bad_offset) {
    thread_local Iconv conv;
    if (conv.cd == reinterpret_cast<iconv_t>(-1)) {
        if (bad_offset) *bad_offset = 0;
        return std::nullopt;
    }
    iconv(conv.cd, nullptr, nullptr, nullptr, nullptr);
    std::string out(bytes.size() * 3 + 4, '\0');
    char* in = const_cast<char*>(bytes.data());
    size_t in_left = bytes.size();
    char* o = out.data();
    size_t out_left = out.size();
    while (in_left > 0) {
        size_t rc = iconv(conv.cd, &in, &in_left, &o, &out_left);
        if (rc == static_cast<size_t>(-1)) {
            if (errno == E2BIG) { // cannot happen with 3 bytes out per byte in; stay safe anyway
                size_t used = static_cast<size_t>(o - out.data());
                out.resize(out.size() * 2);
                o = out.data() + used;
                out_left = out.size() - used;
                continue;
            }
            if (bad_offset) *bad_offset = static_cast<size_t>(in - bytes.data());
            return std::nullopt;
        }
    }
    out.resize(static_cast<size_t>(o - out.data()));
    return out;
}

std::string fullwidth_kana(std::string_view utf8) {
    auto cps = code_points(utf8);
    std::u32string out;
    for (auto c : cps) {
        if (c >= 0xFF66 && c <= 0xFF9D) {
            out.push_back(kHalfwidth[c - 0xFF66]);
        } else if (c == 0xFF9E) { // ﾞ
            if (!out.empty() && voiceable(out.back())) out.back() += 1;
            else if (!out.empty() && out.back() == U'ウ') out.back() = U'ヴ';
            else out.push_back(U'゛');
        } else if (c == 0xFF9F) { // ﾟ
            if (!out.empty() && semi_voiceable(out.back())) out.back() += 2;
            else out.push_back(U'゜');
        } else if (c == 0xFF65) {
            out.push_back(U'・');
        } else if (c == U' ') {
            out.push_back(U'\u3000'); // half-width names separate family and given name with a space
        } else {
            out.push_back(c);
        }
    }
    return utf8_of(out);
}

std::string seion(std::string_view utf8) {
    auto cps = code_points(utf8);
    for (auto& c : cps) {
        if (c == U'ヴ') c = U'ウ';
        else if (c == U'ッ') c = U'ツ';
        else if (c == U'ヮ') c = U'ワ';
        else if (c == U'ヵ') c = U'カ';
        else if (c == U'ヶ') c = U'ケ';
        else if (c == U'ァ' || c == U'ィ' || c == U'ゥ' || c == U'ェ' || c == U'ォ' || c == U'ャ' || c == U'ュ' || c == U'ョ') c += 1;
        else if (c > U'カ' && voiceable(c - 1)) c -= 1;
        else if (c > U'ハ' && semi_voiceable(c - 2) && !voiceable(c - 1)) c -= 2;
    }
    return utf8_of(cps);
}

std::optional<Date> parse_date(std::string_view text, DateFormat format, const std::string& field, Rejection& why) {
    auto digits = [&](size_t pos, size_t n) -> std::optional<int> {
        if (pos + n > text.size()) return std::nullopt;
        int value = 0;
        for (size_t i = pos; i < pos + n; ++i) {
            if (text[i] < '0' || text[i] > '9') return std::nullopt;
            value = value * 10 + (text[i] - '0');
        }
        return value;
    };
    std::optional<int> y, m, d;
    const char* shape = "";
    const Era* era = nullptr;
    switch (format) {
    case DateFormat::yyyymmdd:
        shape = "yyyymmdd";
        if (text.size() == 8) y = digits(0, 4), m = digits(4, 2), d = digits(6, 2);
        break;
    case DateFormat::yyyy_mm_dd:
    case DateFormat::yyyy_slash_mm_dd: {
        char sep = format == DateFormat::yyyy_mm_dd ? '-' : '/';
        shape = format == DateFormat::yyyy_mm_dd ? "yyyy-mm-dd" : "yyyy/mm/dd";
        if (text.size() == 10 && text[4] == sep && text[7] == sep) y = digits(0, 4), m = digits(5, 2), d = digits(8, 2);
        break;
    }
    case DateFormat::gyymmdd:
        shape = "gyymmdd (和暦: era 1-5 or M T S H R, then year of the era, month, day)";
        if (text.size() == 7) {
            for (auto& e : kEras)
                if (text[0] == e.digit || text[0] == e.letter) era = &e;
            auto ey = digits(1, 2);
            if (era && ey) {
                if (*ey == 0) {
                    why = reject(0, field, "date.era", std::string("year 0 of ") + era->name + " does not exist (元年 is 1)");
                    return std::nullopt;
                }
                y = era->start.year + *ey - 1;
                m = digits(3, 2);
                d = digits(5, 2);
            }
        }
        break;
    }
    if (!y || !m || !d) {
        why = reject(0, field, "date.format", std::string("must be a date written ") + shape);
        return std::nullopt;
    }
    if (auto r = v::date(field, *y, *m, *d); !r) {
        why = from(0, r);
        return std::nullopt;
    }
    Date out{*y, *m, *d};
    if (era) {
        if (day_number(out) < day_number(era->start)) {
            why = reject(0, field, "date.era", std::string("the date is before the first day of ") + era->name);
            return std::nullopt;
        }
        for (auto& next : kEras)
            if (next.start.year > era->start.year && day_number(out) >= day_number(next.start)) {
                why = reject(0, field, "date.era",
                             std::string("the date is after the end of ") + era->name + " (it is in " + next.name + ")");
                return std::nullopt;
            }
    }
    return out;
}

ParseResult parse(std::string_view data, const Profile& p, const ParseOptions& o) {
    ParseResult result;
    auto fail = [&](FileFailure f) {
        result.records.clear();
        result.rejected.clear();
        result.failure = std::move(f);
        return result;
    };
    // An MS-DOS end-of-file mark and a UTF-8 byte order mark carry no data.
    while (!data.empty() && data.back() == '\x1A') data.remove_suffix(1);
    if (p.encoding == Encoding::utf8 && data.substr(0, 3) == "\xEF\xBB\xBF") data.remove_prefix(3);

    std::vector<Line> lines;
    if (p.format == Format::fixed && p.line_end == LineEnd::none) {
        for (size_t pos = 0, n = 0; pos < data.size(); pos += p.record_bytes) {
            Line l;
            l.number = ++n;
            l.bytes = data.substr(pos, p.record_bytes);
            l.terminated = l.bytes.size() == p.record_bytes;
            lines.push_back(l);
        }
    } else {
        lines = split_lines(data);
    }

    // The encoding of the whole file first: a file in the wrong encoding is unusable.
    bool non_ascii = false;
    for (auto& l : lines) {
        if (p.encoding == Encoding::utf8) {
            if (auto at = invalid_utf8_at(l.bytes); at != std::string_view::npos)
                return fail(file_failure("encoding.utf8",
                                         "not valid UTF-8 at line " + std::to_string(l.number) + ", byte " +
                                             std::to_string(at + 1) + " (the profile " + p.name + " expects UTF-8)",
                                         l.number, at + 1));
        } else {
            size_t bad = 0;
            if (!cp932_to_utf8(l.bytes, &bad)) {
                // A line cut inside a double-byte character at its very end is a truncated record,
                // not a wrong encoding; the per-record checks say so.
                bool cut_at_end = !l.terminated && bad + 1 == l.bytes.size();
                if (!cut_at_end)
                    return fail(file_failure("encoding.cp932",
                                             "not valid CP932 (Shift_JIS) at line " + std::to_string(l.number) +
                                                 ", byte " + std::to_string(bad + 1) + " (the profile " + p.name +
                                                 " expects CP932)",
                                             l.number, bad + 1));
            }
            for (char c : l.bytes) non_ascii = non_ascii || static_cast<unsigned char>(c) >= 0x80;
        }
    }
    if (p.encoding == Encoding::cp932 && non_ascii && invalid_utf8_at(data) == std::string_view::npos)
        return fail(file_failure("encoding.cp932",
                                 "the file is UTF-8, not CP932 (its Japanese text is well-formed UTF-8, which CP932 text "
                                 "practically never is); the profile " +
                                     p.name + " expects CP932"));

    auto decode = [&](std::string_view bytes) -> std::optional<std::string> {
        if (p.encoding == Encoding::utf8) return std::string(bytes);
        return cp932_to_utf8(bytes);
    };

    // CSV: the header names the columns.
    std::vector<size_t> column_of(p.fields.size(), 0); // 1-based column per field (0: constant)
    size_t columns = 0;
    size_t first = 0;
    std::vector<std::string> cells;
    std::string why;
    if (p.format == Format::csv) {
        for (size_t i = 0; i < p.fields.size(); ++i) column_of[i] = p.fields[i].index;
        if (p.header) {
            while (first < lines.size() && lines[first].bytes.empty()) ++first;
            if (first == lines.size()) return result; // an empty file: nothing to do
            auto& h = lines[first++];
            auto text = decode(h.bytes);
            if (!text || !split_csv(*text, p.delimiter, p.quote, cells, why))
                return fail(file_failure("csv.header", "the header line " + std::to_string(h.number) + " is malformed: " + why,
                                         h.number));
            columns = cells.size();
            for (size_t i = 0; i < p.fields.size(); ++i) {
                auto& f = p.fields[i];
                if (f.value || f.index) continue;
                for (size_t c = 0; c < cells.size(); ++c)
                    if (trim(cells[c]) == f.column) column_of[i] = c + 1;
                if (!column_of[i]) {
                    auto ff = file_failure("csv.header", "the header (line " + std::to_string(h.number) + ") has no column \"" +
                                                             f.column + "\", which the profile maps to " + item_name(f.item),
                                           h.number);
                    ff.field = item_name(f.item);
                    return fail(ff);
                }
            }
        }
        for (size_t i = 0; i < p.fields.size(); ++i)
            if (p.fields[i].index && columns && p.fields[i].index > columns)
                return fail(file_failure("csv.header", "the profile maps column " + std::to_string(p.fields[i].index) +
                                                           " but the header has " + std::to_string(columns)));
    }

    // More records than the profile allows fail the file before any is taken (on_records never
    // sees a record of a failed file).
    const bool blank_skipped = p.line_end != LineEnd::none || p.format == Format::csv; // blank lines carry nothing
    size_t data_lines = 0;
    for (size_t li = first; li < lines.size(); ++li) data_lines += !(blank_skipped && lines[li].bytes.empty());
    data_lines -= std::min(data_lines, p.skip_records);
    if (data_lines > p.max_records)
        return fail(file_failure("file.records", "more than " + std::to_string(p.max_records) +
                                                     " records (limits.max_records of the profile); split the file"));
    // Room for every record up front: the vector never moves (see ParseOptions::on_records).
    size_t expected = data_lines;
    result.records.reserve(expected);
    RecordParser rp(p, o, expected);
    size_t skipped = 0;
    // Each mapped item's text, viewed in `cells` (CSV) or in `texts` (fixed width, decoded per field).
    std::vector<std::string_view> raw(p.fields.size());
    std::vector<std::string> texts(p.fields.size());
    for (size_t li = first; li < lines.size(); ++li) {
        auto& l = lines[li];
        if (blank_skipped && l.bytes.empty()) continue;
        if (skipped < p.skip_records) {
            ++skipped;
            continue;
        }
        ++result.lines;
        auto refuse = [&](const std::string& field, const std::string& rule, const std::string& message) {
            result.rejected.push_back(reject(l.number, field, rule, message));
        };
        if (!l.terminated && p.require_final_newline) {
            refuse("record", "record.truncated",
                   p.format == Format::fixed && p.line_end == LineEnd::none
                       ? "the last record has " + std::to_string(l.bytes.size()) + " of " + std::to_string(p.record_bytes) +
                             " bytes: the file was cut short"
                       : "the last line has no line end: the file was cut short");
            continue;
        }
        if (l.bytes.size() > p.max_line_bytes) {
            refuse("record", "record.too_long", "the line has " + std::to_string(l.bytes.size()) + " bytes, at most " +
                                                    std::to_string(p.max_line_bytes) + " allowed (limits.max_line_bytes)");
            continue;
        }
        if (p.format == Format::fixed) {
            if (l.bytes.size() != p.record_bytes) {
                refuse("record", "record.length", "the record has " + std::to_string(l.bytes.size()) + " bytes, the profile's " +
                                                      std::to_string(p.record_bytes));
                continue;
            }
            bool ok = true;
            for (size_t i = 0; i < p.fields.size() && ok; ++i) {
                auto& f = p.fields[i];
                if (f.value) continue;
                auto text = decode(l.bytes.substr(f.offset, f.width));
                if (!text) {
                    refuse(item_name(f.item), "field.split_character",
                           std::string(item_name(f.item)) + ": bytes " + std::to_string(f.offset + 1) + ".." +
                               std::to_string(f.offset + f.width) + " cut a double-byte character (check the profile's offsets)");
                    ok = false;
                    break;
                }
                texts[i] = std::move(*text);
                raw[i] = texts[i];
            }
            if (!ok) continue;
        } else {
            auto text = decode(l.bytes);
            if (!text) { // a CP932 line cut inside its last character
                refuse("record", "record.truncated", "the line ends inside a double-byte character");
                continue;
            }
            if (!split_csv(*text, p.delimiter, p.quote, cells, why)) {
                refuse("record", "csv.quote", why);
                continue;
            }
            size_t want = columns;
            if (!want)
                for (auto& f : p.fields) want = std::max(want, f.index);
            if ((columns && cells.size() != columns) || (!columns && cells.size() < want)) {
                refuse("record", "csv.columns", "the line has " + std::to_string(cells.size()) + " columns, the header " +
                                                    std::to_string(want));
                continue;
            }
            for (size_t i = 0; i < p.fields.size(); ++i)
                raw[i] = column_of[i] ? std::string_view(cells[column_of[i] - 1]) : std::string_view();
        }
        auto out = rp.convert(l.number, raw);
        if (auto* rec = std::get_if<Record>(&out)) {
            result.records.push_back(std::move(*rec));
            if (o.on_records && result.records.size() % std::max<size_t>(o.every, 1) == 0)
                o.on_records(result.records.data(), result.records.size());
        }
        else result.rejected.push_back(std::move(std::get<Rejection>(out)));
    }
    return result;
}

} // namespace renkei::legacy_file
