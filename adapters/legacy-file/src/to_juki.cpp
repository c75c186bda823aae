#include <renkei/legacy_file/to_juki.hpp>

namespace renkei::legacy_file {

static_assert(static_cast<int>(Reason::itemChange) == static_cast<int>(juki::ChangeReason::ITEM_CHANGE));
static_assert(static_cast<int>(Reason::residentCodeChange) == static_cast<int>(juki::ChangeReason::RESIDENT_CODE_CHANGE));
static_assert(static_cast<int>(Reason::moveIn) == static_cast<int>(juki::ChangeReason::MOVE_IN));
static_assert(static_cast<int>(Sex::female) == static_cast<int>(renkei::schema::Sex::FEMALE));

void fill(juki::IdentityRecord::Builder out, const Record& r, const std::string& operator_id) {
    auto p = out.initPerson();
    auto n = p.initName();
    n.setKanji(r.kanji);
    n.setKana(r.kana);
    n.setGaijiCount(r.name_gaiji);
    n.setSeionKana(r.seion_kana);
    auto set_date = [](renkei::schema::Date::Builder d, const Date& x) {
        d.setYear(static_cast<uint16_t>(x.year));
        d.setMonth(static_cast<uint8_t>(x.month));
        d.setDay(static_cast<uint8_t>(x.day));
    };
    set_date(p.initDateOfBirth(), r.birth);
    p.setSex(static_cast<renkei::schema::Sex>(r.sex));
    auto a = p.initAddress();
    a.setText(r.address);
    a.setLocalGovCode(r.local_gov_code);
    a.setTownCode(r.town_code);
    a.setGaijiCount(r.address_gaiji);
    p.setResidentCode(r.resident_code);
    p.setMyNumber(r.my_number);
    p.setFormerSurname(r.former_surname);
    p.setAliasName(r.alias_name);
    out.setFormerSurnameKana(r.former_surname_kana);
    out.setFormerSurnameGaiji(r.former_surname_gaiji);
    out.setReason(static_cast<juki::ChangeReason>(r.reason));
    set_date(out.initChangeDate(), r.change);
    out.setPreviousResidentCode(r.previous_resident_code);
    out.setPreviousMunicipality(r.previous_municipality);
    out.setOperatorId(r.operator_id.empty() ? operator_id : r.operator_id);
    out.setTerminalId(r.terminal_id);
}

} // namespace renkei::legacy_file
