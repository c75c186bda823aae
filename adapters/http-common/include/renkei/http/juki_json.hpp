// JSON for juki's types, as the HTTP adapters speak them. Reading is strict: an unknown member, a
// wrong JSON type or an impossible value is a FieldError naming the field by its JSON path
// ("records[3].person.dateOfBirth") and the rule ("date.day", "json.unknown_field", ...). Messages
// never echo the value (they end up in logs).
#pragma once

#include <juki.capnp.h>
#include <nlohmann/json.hpp>

#include <stdexcept>
#include <string>
#include <vector>

namespace renkei::http {

using json = nlohmann::json;

class FieldError : public std::runtime_error {
public:
    FieldError(std::string field, std::string rule, const std::string& message)
        : std::runtime_error(message), field_(std::move(field)), rule_(std::move(rule)) {}
    const std::string& field() const { return field_; }
    const std::string& rule() const { return rule_; }

private:
    std::string field_, rule_;
};

// Refuses members of `j` (an object, else json.type) other than `allowed`.
void only_members(const json& j, const std::string& at, std::initializer_list<const char*> allowed);
// The string member `key` of `j` ("" when absent and not required); json.type / json.required.
std::string string_member(const json& j, const std::string& at, const char* key, bool required = false);

std::string date_text(schema::Date::Reader d); // "YYYY-MM-DD", "" for year 0
// "YYYY-MM-DD" or "YYYYMMDD", a real date (validate::date rules).
void read_date(const json& v, const std::string& field, schema::Date::Builder b);
schema::Sex read_sex(const json& v, const std::string& field);
const char* sex_text(schema::Sex s);

void read_person(const json& j, const std::string& at, schema::Person::Builder p);
json person_json(schema::Person::Reader p);

juki::ChangeReason read_reason(const json& v, const std::string& field);
const char* reason_text(juki::ChangeReason r); // "birth", "moveIn", ... (the schema's names)

// An IdentityRecord (the 住民記録システム's 本人確認情報 with its 異動). Only the JSON shape and the
// values' own rules are checked here; juki's validate_record applies the record rules after.
void read_record(const json& j, const std::string& at, juki::IdentityRecord::Builder r);

json count_list_json(juki::UpdateCountList::Reader l);

// A query key: 個人番号, 住民票コード, or 4情報 (name with dateOfBirth and sex, or with address).
// Checks each value and that the key identifies a person (第4 4(5)).
void read_query_key(const json& j, const std::string& at, juki::QueryKey::Builder k);
// The conditions a key uses, by the names juki and the access policy use.
std::vector<std::string> key_conditions(juki::QueryKey::Reader k);
const char* status_text(juki::QueryResult::Status s); // "found", "notFound", "ambiguous", "removed"

} // namespace renkei::http
