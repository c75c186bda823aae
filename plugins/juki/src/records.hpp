// The rules a 本人確認情報 record must pass before any juki role records it: the field rules
// (validators naming the field and rule), and the chain rules against what the store already holds
// (J-LIS's PIA checks, seed-004b L1006-1007, applied at every tier that holds the person).
#pragma once

#include "identity_store.hpp"
#include "numbers.hpp"

#include <optional>
#include <string>
#include <vector>

namespace renkei::juki {

struct Refusal {
    std::string field, rule, message;
};

// Field rules for one record of a batch notified by `municipality` (its 6-digit code).
std::optional<Refusal> validate_record(IdentityRecord::Reader r, const std::string& municipality);

// Rules against the store: `current` is what the store holds for the record's 住民票コード,
// `previous` (住民票コード変更 only) what it holds for previousResidentCode.
std::optional<Refusal> check_against(IdentityRecord::Reader r, const std::optional<Resident>& current,
                                     const std::optional<Resident>& previous);

// J-LIS: the 個人番号 must be the one `numbers` generated for the latest 住民票コード (seed-004b L1006).
std::optional<Refusal> number_check(Numbers& numbers, IdentityRecord::Reader r);

// Whether this 異動事由 deletes the record from the municipality (転出, 死亡, 職権消除).
bool removes(ChangeReason reason);

// Names of the 本人確認情報 items that differ between two records ("name.kanji", "address.text", ...).
std::vector<std::string> differing_fields(IdentityRecord::Reader a, IdentityRecord::Reader b);

const char* reason_name(ChangeReason reason); // "転入", "転出", ...

} // namespace renkei::juki
