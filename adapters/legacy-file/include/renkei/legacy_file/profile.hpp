// A vendor profile: how one 既存住基システム writes its record files (encoding, CSV or fixed-width
// layout, which column or byte range carries which 本人確認情報 item, code tables, date formats),
// and the municipality's 外字 table. A new vendor is a new profile (docs/vendor-profiles.md).
//
// Pure data and pure functions: no plugin, host or Cap'n Proto dependency, so the adapter, the
// tests and the fuzz targets share exactly the same code.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace renkei::legacy_file {

// A profile or 外字 table that cannot be used; what() reads "<file>:<line>: <key>: <what is wrong>".
class ProfileError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

enum class Encoding { utf8, cp932 };
enum class Format { csv, fixed };
enum class LineEnd { lf, crlf, none }; // fixed-width: what ends a record ("none": back to back)

// 異動事由, with the ordinals of juki.capnp's ChangeReason (the adapter static_asserts they match).
enum class Reason : uint16_t {
    unspecified = 0, moveIn = 1, moveOut = 2, moveWithin = 3, birth = 4, death = 5, entryByOffice = 6,
    correctionByOffice = 7, removalByOffice = 8, residentCodeChange = 9, myNumberChange = 10, itemChange = 11
};
// 性別, with the ordinals of common.capnp's Sex.
enum class Sex : uint16_t { unknown = 0, male = 1, female = 2 };

// How a date is written: western (yyyymmdd, yyyy-mm-dd, yyyy/mm/dd) or 和暦 (gyymmdd: an era
// digit 1 明治, 2 大正, 3 昭和, 4 平成, 5 令和 or letter M T S H R, then year of the era, month, day).
enum class DateFormat { yyyymmdd, yyyy_mm_dd, yyyy_slash_mm_dd, gyymmdd };

// The 本人確認情報 items a profile maps (schema names, as juki's refusals name them).
enum class Item {
    residentCode, myNumber, kanji, kana, dateOfBirth, sex, address, localGovCode, townCode, formerSurname,
    formerSurnameKana, aliasName, reason, changeDate, previousResidentCode, previousMunicipality, operatorId,
    terminalId
};
inline constexpr size_t kItemCount = 18;
const char* item_name(Item item); // "person.residentCode", "person.name.kanji", "reason", ...

struct FieldSpec {
    Item item{};
    // Where the value comes from: one of a CSV column (by header name or 1-based index), a byte
    // range of a fixed-width record, or a constant.
    std::string column;          // csv: header name
    size_t index = 0;            // csv: 1-based column number (0: by name)
    size_t offset = 0, width = 0; // fixed: bytes
    std::optional<std::string> value; // a constant
    bool trim = true;            // strip leading and trailing ASCII and full-width spaces
    bool halfwidth_kana = false; // convert half-width katakana (ｶﾞ) to full-width (ガ)
    DateFormat date = DateFormat::yyyymmdd;
    std::map<std::string, std::string> codes; // reason / sex: vendor code -> schema value
    int line = 0;                // where the profile declares it (for messages)
};

struct Profile {
    std::string name, description, source; // source: the profile file, for messages
    Encoding encoding = Encoding::utf8;
    Format format = Format::csv;
    // csv
    bool header = true;
    char delimiter = ',';
    char quote = '"';
    // fixed
    size_t record_bytes = 0;
    LineEnd line_end = LineEnd::crlf;
    // both
    size_t skip_records = 0;          // leading records that are not data (after the csv header)
    bool require_final_newline = true; // a last line without its line end was cut short
    size_t max_records = 100000;
    size_t max_line_bytes = 65536;
    std::filesystem::path gaiji_table; // absolute, or empty when the profile names none
    std::vector<FieldSpec> fields;     // one per mapped item, in declaration order

    const FieldSpec* field(Item item) const;
};

// Parses a profile from TOML text. `source` names it in messages; relative paths in it (the 外字
// table) resolve against `base_dir`. Throws ProfileError.
Profile parse_profile(std::string_view toml_text, const std::string& source,
                      const std::filesystem::path& base_dir);
Profile load_profile(const std::filesystem::path& file);

// A municipality's 外字 table: the private-use code a vendor's system writes for a character that
// has no standard code, and the canonical form the 住基ネット carries (a standard character, a
// character with its variation selector, or the network's private-use code for it).
struct GaijiTable {
    std::string municipality; // 全国地方公共団体コード the table belongs to
    std::string source;
    std::map<char32_t, std::u32string> map;
};
GaijiTable parse_gaiji_table(std::string_view toml_text, const std::string& source);
GaijiTable load_gaiji_table(const std::filesystem::path& file);

bool is_private_use(char32_t c);

} // namespace renkei::legacy_file
