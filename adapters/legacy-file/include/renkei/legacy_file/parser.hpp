// Record-file parsing: the bytes of one file and a profile in, the 本人確認情報 records and the
// per-line rejections out (each naming the line, the field and the rule), or one failure for a
// file that cannot be used at all (wrong encoding, a header that lacks a mapped column, too many
// records). A pure function: it never throws on any input (fuzzed by tests/fuzz/legacy_*_fuzz.cpp).
#pragma once

#include "profile.hpp"

#include <functional>
#include <set>

namespace renkei::legacy_file {

struct Date {
    int year = 0, month = 0, day = 0;
};

// One record as the schema carries it (juki.IdentityRecord), text in UTF-8, 外字 canonical.
struct Record {
    size_t line = 0; // 1-based line (fixed-width without line ends: record number)
    std::string resident_code, my_number, kanji, kana, seion_kana, address, local_gov_code, town_code,
        former_surname, former_surname_kana, alias_name, previous_resident_code, previous_municipality,
        operator_id, terminal_id;
    uint16_t name_gaiji = 0, address_gaiji = 0, former_surname_gaiji = 0;
    Date birth, change;
    Sex sex = Sex::unknown;
    Reason reason = Reason::unspecified;
};

// A line refused before anything was sent; never echoes personal values (validate.hpp's rule).
struct Rejection {
    size_t line = 0;
    std::string resident_code; // as read, when the line got that far
    std::string field, rule, message;
};

// Why a whole file is unusable. `line` and `byte` (1-based, byte within the line) locate it when
// they apply (0 otherwise).
struct FileFailure {
    std::string field, rule, message;
    size_t line = 0, byte = 0;
};

struct ParseOptions {
    std::set<std::string> municipalities; // codes this node may notify (empty: any valid code)
    const GaijiTable* gaiji = nullptr;    // nullptr: every private-use character is unmapped
    // Called on parse()'s thread each time `every` more records were taken: records[0, n) are
    // final and another thread may read them while parse() goes on (their vector has its whole
    // capacity reserved before the first record, so it never moves, not even when the result is
    // returned). A consumer must still wait for parse() to return before it trusts the file: a
    // file-level failure found later (too many records) empties the result.
    std::function<void(const Record* records, size_t n)> on_records;
    size_t every = 1000;
};

struct ParseResult {
    std::vector<Record> records;
    std::vector<Rejection> rejected;
    std::optional<FileFailure> failure; // set: records and rejected are empty
    size_t lines = 0;                   // data lines seen
};

ParseResult parse(std::string_view bytes, const Profile& profile, const ParseOptions& options);

// Helpers the parser uses, exposed for tests.
// Decodes `bytes` from CP932 to UTF-8; nullopt (with the 0-based offset of the bad byte) when
// they are not valid CP932 or end inside a double-byte character.
std::optional<std::string> cp932_to_utf8(std::string_view bytes, size_t* bad_offset = nullptr);
// Half-width katakana (U+FF61..U+FF9F, with ﾞ ﾟ combined) to full-width katakana.
std::string fullwidth_kana(std::string_view utf8);
// 清音化: voiced and semi-voiced katakana to their plain forms, small kana to large.
std::string seion(std::string_view utf8);
// Parses a date in `format`; on failure fills field/rule/message naming `field`.
std::optional<Date> parse_date(std::string_view text, DateFormat format, const std::string& field,
                               Rejection& why);

} // namespace renkei::legacy_file
