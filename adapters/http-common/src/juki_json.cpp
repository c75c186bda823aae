#include <renkei/http/juki_json.hpp>

#include <renkei/validate.hpp>

#include <algorithm>
#include <cstdio>

namespace renkei::http {
namespace {

void check(const validate::Result& r) {
    if (!r) throw FieldError(r.field, r.rule, r.message);
}

std::string path(const std::string& at, const char* key) { return at.empty() ? key : at + "." + key; }

const struct {
    juki::ChangeReason reason;
    const char* name;
} kReasons[] = {
    {juki::ChangeReason::MOVE_IN, "moveIn"},
    {juki::ChangeReason::MOVE_OUT, "moveOut"},
    {juki::ChangeReason::MOVE_WITHIN, "moveWithin"},
    {juki::ChangeReason::BIRTH, "birth"},
    {juki::ChangeReason::DEATH, "death"},
    {juki::ChangeReason::ENTRY_BY_OFFICE, "entryByOffice"},
    {juki::ChangeReason::CORRECTION_BY_OFFICE, "correctionByOffice"},
    {juki::ChangeReason::REMOVAL_BY_OFFICE, "removalByOffice"},
    {juki::ChangeReason::RESIDENT_CODE_CHANGE, "residentCodeChange"},
    {juki::ChangeReason::MY_NUMBER_CHANGE, "myNumberChange"},
    {juki::ChangeReason::ITEM_CHANGE, "itemChange"},
};

uint16_t small_count(const json& j, const std::string& at, const char* key) {
    if (!j.contains(key)) return 0;
    auto& v = j.at(key);
    if (!v.is_number_unsigned() || v.get<uint64_t>() > 1000)
        throw FieldError(path(at, key), "json.type", path(at, key) + ": must be a whole number 0..1000");
    return static_cast<uint16_t>(v.get<uint64_t>());
}

} // namespace

void only_members(const json& j, const std::string& at, std::initializer_list<const char*> allowed) {
    if (!j.is_object()) throw FieldError(at, "json.type", (at.empty() ? "body" : at) + ": must be a JSON object");
    for (auto& item : j.items()) {
        const std::string& k = item.key(); // named, not bound: clang before 16 cannot capture a binding
        if (std::none_of(allowed.begin(), allowed.end(), [&](const char* a) { return k == a; })) {
            // The member's name may be anything a caller sent: show it only if it is short and plain.
            bool plain = k.size() <= 40 && std::all_of(k.begin(), k.end(), [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; });
            std::string field = path(at, plain ? k.c_str() : "?");
            throw FieldError(field, "json.unknown_field", field + ": is not a member of this object");
        }
    }
}

std::string string_member(const json& j, const std::string& at, const char* key, bool required) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) {
        if (required) throw FieldError(path(at, key), "json.required", path(at, key) + ": required");
        return {};
    }
    if (!it->is_string()) throw FieldError(path(at, key), "json.type", path(at, key) + ": must be a string");
    return it->get<std::string>();
}

std::string date_text(schema::Date::Reader d) {
    if (d.getYear() == 0) return {};
    char b[16];
    std::snprintf(b, sizeof b, "%04u-%02u-%02u", d.getYear(), d.getMonth(), d.getDay());
    return b;
}

void read_date(const json& v, const std::string& field, schema::Date::Builder b) {
    if (!v.is_string()) throw FieldError(field, "json.type", field + ": must be a string YYYY-MM-DD");
    validate::Date d;
    check(validate::date(field, v.get<std::string>(), &d));
    b.setYear(static_cast<uint16_t>(d.year));
    b.setMonth(static_cast<uint8_t>(d.month));
    b.setDay(static_cast<uint8_t>(d.day));
}

schema::Sex read_sex(const json& v, const std::string& field) {
    if (v.is_string()) {
        auto s = v.get<std::string>();
        if (s == "male" || s == "1") return schema::Sex::MALE;
        if (s == "female" || s == "2") return schema::Sex::FEMALE;
    }
    throw FieldError(field, "sex.value", field + ": must be \"male\" or \"female\" (or 1 / 2)");
}

const char* sex_text(schema::Sex s) {
    return s == schema::Sex::MALE ? "male" : s == schema::Sex::FEMALE ? "female" : "unknown";
}

void read_person(const json& j, const std::string& at, schema::Person::Builder p) {
    only_members(j, at, {"name", "dateOfBirth", "sex", "address", "residentCode", "myNumber", "formerSurname", "aliasName"});
    if (!j.contains("name")) throw FieldError(path(at, "name"), "json.required", path(at, "name") + ": required");
    auto& n = j.at("name");
    auto np = path(at, "name");
    only_members(n, np, {"kanji", "kana", "gaijiCount", "seionKana"});
    auto name = p.initName();
    name.setKanji(string_member(n, np, "kanji", true));
    name.setKana(string_member(n, np, "kana"));
    name.setSeionKana(string_member(n, np, "seionKana"));
    name.setGaijiCount(small_count(n, np, "gaijiCount"));
    if (!j.contains("dateOfBirth"))
        throw FieldError(path(at, "dateOfBirth"), "json.required", path(at, "dateOfBirth") + ": required");
    read_date(j.at("dateOfBirth"), path(at, "dateOfBirth"), p.initDateOfBirth());
    if (!j.contains("sex")) throw FieldError(path(at, "sex"), "json.required", path(at, "sex") + ": required");
    p.setSex(read_sex(j.at("sex"), path(at, "sex")));
    if (!j.contains("address"))
        throw FieldError(path(at, "address"), "json.required", path(at, "address") + ": required");
    auto& a = j.at("address");
    auto ap = path(at, "address");
    only_members(a, ap, {"text", "localGovCode", "townCode", "gaijiCount"});
    auto addr = p.initAddress();
    addr.setText(string_member(a, ap, "text", true));
    addr.setLocalGovCode(string_member(a, ap, "localGovCode", true));
    addr.setTownCode(string_member(a, ap, "townCode"));
    addr.setGaijiCount(small_count(a, ap, "gaijiCount"));
    p.setResidentCode(string_member(j, at, "residentCode", true));
    p.setMyNumber(string_member(j, at, "myNumber"));
    p.setFormerSurname(string_member(j, at, "formerSurname"));
    p.setAliasName(string_member(j, at, "aliasName"));
}

json person_json(schema::Person::Reader p) {
    json name{{"kanji", p.getName().getKanji().cStr()}, {"kana", p.getName().getKana().cStr()},
              {"gaijiCount", p.getName().getGaijiCount()}};
    if (p.getName().getSeionKana().size()) name["seionKana"] = p.getName().getSeionKana().cStr();
    json address{{"text", p.getAddress().getText().cStr()}, {"localGovCode", p.getAddress().getLocalGovCode().cStr()}};
    if (p.getAddress().getTownCode().size()) address["townCode"] = p.getAddress().getTownCode().cStr();
    if (p.getAddress().getGaijiCount()) address["gaijiCount"] = p.getAddress().getGaijiCount();
    json j{{"name", name}, {"dateOfBirth", date_text(p.getDateOfBirth())}, {"sex", sex_text(p.getSex())},
           {"address", address}, {"residentCode", p.getResidentCode().cStr()}};
    if (p.getMyNumber().size()) j["myNumber"] = p.getMyNumber().cStr();
    if (p.getFormerSurname().size()) j["formerSurname"] = p.getFormerSurname().cStr();
    if (p.getAliasName().size()) j["aliasName"] = p.getAliasName().cStr();
    return j;
}

juki::ChangeReason read_reason(const json& v, const std::string& field) {
    if (v.is_string())
        for (auto& r : kReasons)
            if (v.get<std::string>() == r.name) return r.reason;
    throw FieldError(field, "juki.reason",
                     field + ": must be one of moveIn, moveOut, moveWithin, birth, death, entryByOffice, "
                             "correctionByOffice, removalByOffice, residentCodeChange, myNumberChange, itemChange");
}

const char* reason_text(juki::ChangeReason reason) {
    for (auto& r : kReasons)
        if (r.reason == reason) return r.name;
    return "unspecified";
}

void read_record(const json& j, const std::string& at, juki::IdentityRecord::Builder r) {
    only_members(j, at, {"person", "formerSurnameKana", "formerSurnameGaiji", "reason", "changeDate",
                         "previousResidentCode", "previousMunicipality", "operatorId", "terminalId"});
    if (!j.contains("person")) throw FieldError(path(at, "person"), "json.required", path(at, "person") + ": required");
    read_person(j.at("person"), path(at, "person"), r.initPerson());
    r.setFormerSurnameKana(string_member(j, at, "formerSurnameKana"));
    r.setFormerSurnameGaiji(small_count(j, at, "formerSurnameGaiji"));
    if (!j.contains("reason")) throw FieldError(path(at, "reason"), "json.required", path(at, "reason") + ": required");
    r.setReason(read_reason(j.at("reason"), path(at, "reason")));
    if (!j.contains("changeDate"))
        throw FieldError(path(at, "changeDate"), "json.required", path(at, "changeDate") + ": required");
    read_date(j.at("changeDate"), path(at, "changeDate"), r.initChangeDate());
    r.setPreviousResidentCode(string_member(j, at, "previousResidentCode"));
    r.setPreviousMunicipality(string_member(j, at, "previousMunicipality"));
    auto op = string_member(j, at, "operatorId"), term = string_member(j, at, "terminalId");
    if (op.size() > 64) throw FieldError(path(at, "operatorId"), "json.length", path(at, "operatorId") + ": at most 64 bytes");
    if (term.size() > 64) throw FieldError(path(at, "terminalId"), "json.length", path(at, "terminalId") + ": at most 64 bytes");
    r.setOperatorId(op);
    r.setTerminalId(term);
}

json count_list_json(juki::UpdateCountList::Reader l) {
    json rejected = json::array();
    for (auto x : l.getRejected())
        rejected.push_back({{"index", x.getIndex()}, {"residentCode", x.getResidentCode().cStr()},
                            {"field", x.getField().cStr()}, {"rule", x.getRule().cStr()}, {"message", x.getMessage().cStr()}});
    return json{{"batchId", l.getBatchId().cStr()}, {"municipality", l.getMunicipality().cStr()},
                {"recordedBy", l.getRecordedBy().cStr()}, {"received", l.getReceived()}, {"recorded", l.getRecorded()},
                {"rejected", rejected}};
}

void read_query_key(const json& j, const std::string& at, juki::QueryKey::Builder k) {
    only_members(j, at, {"myNumber", "residentCode", "name", "dateOfBirth", "sex", "address"});
    auto number = string_member(j, at, "myNumber"), code = string_member(j, at, "residentCode");
    auto name = string_member(j, at, "name"), address = string_member(j, at, "address");
    if (!number.empty()) check(validate::my_number(path(at, "myNumber"), number));
    if (!code.empty()) check(validate::resident_code(path(at, "residentCode"), code));
    if (!name.empty()) check(validate::name(path(at, "name"), name, 60));
    if (!address.empty()) check(validate::name(path(at, "address"), address, 200));
    k.setMyNumber(number);
    k.setResidentCode(code);
    k.setName(name);
    k.setAddress(address);
    if (j.contains("dateOfBirth") && !j.at("dateOfBirth").is_null())
        read_date(j.at("dateOfBirth"), path(at, "dateOfBirth"), k.initDateOfBirth());
    if (j.contains("sex") && !j.at("sex").is_null()) k.setSex(read_sex(j.at("sex"), path(at, "sex")));
    auto c = key_conditions(k.asReader());
    auto has = [&](const char* f) { return std::find(c.begin(), c.end(), f) != c.end(); };
    bool ok = has("myNumber") || has("residentCode") || (has("name") && has("dateOfBirth") && has("sex")) ||
              (has("name") && has("address"));
    if (!ok)
        throw FieldError(at, "query.conditions",
                         (at.empty() ? std::string("key") : at) +
                             ": must give a 個人番号, a 住民票コード, or the name with dateOfBirth and sex, or the name "
                             "with address (第4 4(5): never the name alone)");
}

std::vector<std::string> key_conditions(juki::QueryKey::Reader k) {
    std::vector<std::string> c;
    if (k.getMyNumber().size()) c.emplace_back("myNumber");
    if (k.getResidentCode().size()) c.emplace_back("residentCode");
    if (k.getName().size()) c.emplace_back("name");
    if (k.getDateOfBirth().getYear() != 0) c.emplace_back("dateOfBirth");
    if (k.getSex() != schema::Sex::UNKNOWN) c.emplace_back("sex");
    if (k.getAddress().size()) c.emplace_back("address");
    return c;
}

const char* status_text(juki::QueryResult::Status s) {
    switch (s) {
    case juki::QueryResult::Status::FOUND: return "found";
    case juki::QueryResult::Status::NOT_FOUND: return "notFound";
    case juki::QueryResult::Status::AMBIGUOUS: return "ambiguous";
    case juki::QueryResult::Status::REMOVED: return "removed";
    }
    return "unknown";
}

} // namespace renkei::http
