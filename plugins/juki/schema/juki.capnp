# juki: 住基ネット 本人確認情報. This first part carries 個人番号 generation (番号法8条); the
# update chain, queries, notices and the consistency check follow (see README.md).
@0xce8464b69540f243;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("renkei::juki");

# A municipality's CS asks J-LIS for the 個人番号 to assign to a 住民票コード (番号法8条1項), or
# for a new one replacing the current one (番号法7条2項: change when the number may be misused).
struct NumberRequest @0xb7e3c0a94e1d2f61 {
  residentCode @0 :Text;   # 住民票コード, 11 digits
  change @1 :Bool;         # true: generate a new number replacing the current one
  reason @2 :Text;         # for a change: why (recorded in the history)
}

# J-LIS's answer: the number assigned (the same one again for a retried request).
struct NumberAssigned @0xd41a6c2e9b7f3058 {
  residentCode @0 :Text;
  myNumber @1 :Text;       # 個人番号, 12 digits, the last the check digit of 施行規則5条
  previous @2 :Text;       # for a change: the number it replaces
  generation @3 :UInt32;   # 1 for the first number of this person, +1 per change
}
