#include "records.hpp"

#include <renkei/validate.hpp>

namespace renkei::juki {
namespace {

std::optional<Refusal> from(const validate::Result& r) {
    if (r) return std::nullopt;
    return Refusal{r.field, r.rule, r.message};
}

Refusal refusal(std::string field, std::string rule, std::string message) {
    return Refusal{std::move(field), std::move(rule), std::move(message)};
}

} // namespace

const char* reason_name(ChangeReason reason) {
    switch (reason) {
    case ChangeReason::MOVE_IN: return "転入";
    case ChangeReason::MOVE_OUT: return "転出";
    case ChangeReason::MOVE_WITHIN: return "転居";
    case ChangeReason::BIRTH: return "出生";
    case ChangeReason::DEATH: return "死亡";
    case ChangeReason::ENTRY_BY_OFFICE: return "職権記載";
    case ChangeReason::CORRECTION_BY_OFFICE: return "職権修正";
    case ChangeReason::REMOVAL_BY_OFFICE: return "職権消除";
    case ChangeReason::RESIDENT_CODE_CHANGE: return "住民票コード変更";
    case ChangeReason::MY_NUMBER_CHANGE: return "個人番号変更";
    case ChangeReason::ITEM_CHANGE: return "記載事項変更";
    default: return "(異動事由なし)";
    }
}

bool removes(ChangeReason reason) {
    return reason == ChangeReason::MOVE_OUT || reason == ChangeReason::DEATH ||
           reason == ChangeReason::REMOVAL_BY_OFFICE;
}

std::optional<Refusal> validate_record(IdentityRecord::Reader r, const std::string& municipality) {
    auto p = r.getPerson();
    if (auto e = from(validate::resident_code("person.residentCode", p.getResidentCode().cStr()))) return e;
    if (auto e = from(validate::name("person.name.kanji", p.getName().getKanji().cStr(), 60))) return e;
    if (auto e = from(validate::katakana("person.name.kana", p.getName().getKana().cStr(), 100))) return e;
    auto dob = p.getDateOfBirth();
    if (auto e = from(validate::date("person.dateOfBirth", dob.getYear(), dob.getMonth(), dob.getDay()))) return e;
    if (p.getSex() == schema::Sex::UNKNOWN)
        return refusal("person.sex", "juki.sex", "person.sex: required (male or female) in 本人確認情報");
    if (auto e = from(validate::name("person.address.text", p.getAddress().getText().cStr(), 200))) return e;
    std::string lg = p.getAddress().getLocalGovCode();
    if (auto e = from(validate::local_gov_code("person.address.localGovCode", lg))) return e;
    if (lg != municipality)
        return refusal("person.address.localGovCode", "juki.municipality",
                       "person.address.localGovCode: " + lg + " is not the notifying municipality " + municipality);
    if (auto e = from(validate::my_number("person.myNumber", p.getMyNumber().cStr()))) return e;
    if (p.hasFormerSurname() && p.getFormerSurname().size() > 0)
        if (auto e = from(validate::name("person.formerSurname", p.getFormerSurname().cStr(), 30))) return e;
    if (r.getReason() == ChangeReason::UNSPECIFIED)
        return refusal("reason", "juki.reason", "reason: 異動事由 is required");
    auto d = r.getChangeDate();
    if (auto e = from(validate::date("changeDate", d.getYear(), d.getMonth(), d.getDay()))) return e;
    if (r.getReason() == ChangeReason::RESIDENT_CODE_CHANGE) {
        if (auto e = from(validate::resident_code("previousResidentCode", r.getPreviousResidentCode().cStr()))) return e;
        if (r.getPreviousResidentCode() == p.getResidentCode())
            return refusal("previousResidentCode", "juki.code_change", "previousResidentCode: equals the new 住民票コード");
    }
    if (r.getReason() == ChangeReason::MOVE_IN && r.getPreviousMunicipality().size() > 0)
        if (auto e = from(validate::local_gov_code("previousMunicipality", r.getPreviousMunicipality().cStr()))) return e;
    return std::nullopt;
}

std::vector<std::string> differing_fields(IdentityRecord::Reader a, IdentityRecord::Reader b) {
    std::vector<std::string> out;
    auto pa = a.getPerson(), pb = b.getPerson();
    auto cmp = [&](const char* name, bool same) {
        if (!same) out.emplace_back(name);
    };
    cmp("name.kanji", pa.getName().getKanji() == pb.getName().getKanji());
    cmp("name.kana", pa.getName().getKana() == pb.getName().getKana());
    cmp("name.gaijiCount", pa.getName().getGaijiCount() == pb.getName().getGaijiCount());
    cmp("dateOfBirth", date_text(pa.getDateOfBirth()) == date_text(pb.getDateOfBirth()));
    cmp("sex", pa.getSex() == pb.getSex());
    cmp("address.text", pa.getAddress().getText() == pb.getAddress().getText());
    cmp("address.localGovCode", pa.getAddress().getLocalGovCode() == pb.getAddress().getLocalGovCode());
    cmp("address.townCode", pa.getAddress().getTownCode() == pb.getAddress().getTownCode());
    cmp("myNumber", pa.getMyNumber() == pb.getMyNumber());
    cmp("formerSurname", pa.getFormerSurname() == pb.getFormerSurname());
    cmp("aliasName", pa.getAliasName() == pb.getAliasName());
    return out;
}

std::optional<Refusal> check_against(IdentityRecord::Reader r, const std::optional<Resident>& current,
                                     const std::optional<Resident>& previous) {
    std::string code = r.getPerson().getResidentCode();
    bool active = current && !current->removed;
    switch (r.getReason()) {
    case ChangeReason::MOVE_IN:
        if (active)
            return refusal("reason", "juki.pia.move_in_registered",
                           "reason: 転入 for " + code + ", who is already registered (in " + current->municipality +
                               "); the 転出 must come first");
        return std::nullopt;
    case ChangeReason::BIRTH:
        if (current)
            return refusal("person.residentCode", "juki.birth_exists",
                           "person.residentCode: 出生 for " + code + ", which is already recorded");
        return std::nullopt;
    case ChangeReason::ENTRY_BY_OFFICE:
        if (active)
            return refusal("reason", "juki.entry_registered",
                           "reason: 職権記載 for " + code + ", who is already registered in " + current->municipality);
        return std::nullopt;
    case ChangeReason::RESIDENT_CODE_CHANGE:
        if (!previous || previous->removed)
            return refusal("previousResidentCode", "juki.unknown_resident",
                           "previousResidentCode: " + std::string(r.getPreviousResidentCode()) +
                               " is not a registered resident");
        if (current)
            return refusal("person.residentCode", "juki.code_in_use",
                           "person.residentCode: " + code + " is already in use");
        return std::nullopt;
    default: break;
    }
    if (!active)
        return refusal("person.residentCode", "juki.unknown_resident",
                       "person.residentCode: update (" + std::string(reason_name(r.getReason())) + ") for " + code +
                           (current ? ", whose record was deleted" : ", which is not a registered resident"));
    if (current->municipality != std::string(r.getPerson().getAddress().getLocalGovCode()))
        return refusal("person.address.localGovCode", "juki.other_municipality",
                       "person.address.localGovCode: " + code + " is registered in " + current->municipality);
    if (r.getReason() == ChangeReason::MOVE_WITHIN) {
        RecordReader old(current->record);
        for (auto& f : differing_fields(old.get(), r))
            if (f.rfind("address.", 0) != 0)
                return refusal("reason", "juki.pia.move_within_changes_more",
                               "reason: 転居 may change only the address; " + f + " differs from the record");
    }
    return std::nullopt;
}

std::optional<Refusal> number_check(Numbers& numbers, IdentityRecord::Reader r) {
    std::string code = r.getReason() == ChangeReason::RESIDENT_CODE_CHANGE ? std::string(r.getPreviousResidentCode())
                                                                           : std::string(r.getPerson().getResidentCode());
    std::string number = r.getPerson().getMyNumber();
    auto current = numbers.current(code);
    if (!current) {
        // After a 住民票コード change the registry knows the new code already (a redelivery).
        if (r.getReason() == ChangeReason::RESIDENT_CODE_CHANGE) current = numbers.current(r.getPerson().getResidentCode());
        if (!current)
            return Refusal{"person.myNumber", "juki.pia.number_not_generated",
                           "person.myNumber: J-LIS generated no 個人番号 for 住民票コード " + code + " (番号法8条)"};
    }
    if (*current != number)
        return Refusal{"person.myNumber", "juki.pia.number_mismatch",
                       "person.myNumber: " + number + " is not the 個人番号 of the latest 住民票コード " + code};
    return std::nullopt;
}

} // namespace renkei::juki
