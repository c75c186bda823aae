// A resident's 本人確認情報 as plain fields, and how they fill an IdentityRecord: for municipal-system
// adapters, the demo, tests and benchmarks that produce records.
#pragma once

#include <juki.capnp.h>

#include <cstdint>
#include <string>

namespace renkei::juki {

struct ResidentFields {
    std::string code, kanji, kana;  // 住民票コード, 氏名 (漢字, カタカナ)
    int year = 1980, month = 1, day = 1;
    schema::Sex sex = schema::Sex::FEMALE;
    std::string address, municipality, my_number; // 住所, its 全国地方公共団体コード, 個人番号
    uint16_t gaiji = 0;             // 外字 in the name
};

// Fills `r` with `p` as changed by `reason` on 2026-11-20 (異動年月日); `previous_municipality`
// names the 転出元 of a 転入.
inline void fill_record(IdentityRecord::Builder r, const ResidentFields& p, ChangeReason reason,
                        const std::string& previous_municipality = {}) {
    auto q = r.initPerson();
    q.initName().setKanji(p.kanji);
    q.getName().setKana(p.kana);
    q.getName().setGaijiCount(p.gaiji);
    auto d = q.initDateOfBirth();
    d.setYear(static_cast<uint16_t>(p.year));
    d.setMonth(static_cast<uint8_t>(p.month));
    d.setDay(static_cast<uint8_t>(p.day));
    q.setSex(p.sex);
    q.initAddress().setText(p.address);
    q.getAddress().setLocalGovCode(p.municipality);
    q.setResidentCode(p.code);
    q.setMyNumber(p.my_number);
    r.setReason(reason);
    r.setPreviousMunicipality(previous_municipality);
    auto c = r.initChangeDate();
    c.setYear(2026);
    c.setMonth(11);
    c.setDay(20);
}

} // namespace renkei::juki
