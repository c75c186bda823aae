# Types shared by every business plugin. Validation rules live in renkei/validate.hpp.
@0xeaae2664a938ef5e;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("renkei::schema");

# A calendar date (western calendar). Validators reject impossible dates.
struct Date @0xe049a27633a8a0ff {
  year @0 :UInt16;
  month @1 :UInt8;
  day @2 :UInt8;
}

enum Sex @0xaf44f2b3f8c66d9b {
  unknown @0;
  male @1;
  female @2;
}

# 氏名. Non-standard characters (外字) are carried in their canonical form (a code from the
# municipality's 外字 table, written as a private-use character) and counted in gaijiCount.
struct Name @0xaf10ae08b82a0979 {
  kanji @0 :Text;           # 漢字氏名 (UTF-8)
  kana @1 :Text;            # 氏名のカタカナ (katakana)
  gaijiCount @2 :UInt16;    # number of 外字 in `kanji`
  seionKana @3 :Text;       # 清音化かな (kana with voicing marks removed), for matching
}

# 住所 with its codes.
struct Address @0xa4f68d46e2e36f5b {
  text @0 :Text;            # 住所 as written
  localGovCode @1 :Text;    # 全国地方公共団体コード (6 digits incl. check digit)
  townCode @2 :Text;        # 町字コード (optional, as the municipality assigns)
  gaijiCount @3 :UInt16;
}

# The 4情報 plus the two numbers.
struct Person @0xd7207c14ddad20aa {
  name @0 :Name;
  dateOfBirth @1 :Date;
  sex @2 :Sex;
  address @3 :Address;
  residentCode @4 :Text;    # 住民票コード (11 digits)
  myNumber @5 :Text;        # 個人番号 (12 digits, last is the check digit)
  formerSurname @6 :Text;   # 旧氏 (optional)
  aliasName @7 :Text;       # 通称 (optional)
}
