# juki: 住基ネット 本人確認情報. Every message type, who sends it to whom and its legal basis are
# listed in ../README.md. Evolve only by Cap'n Proto's rules (add fields at the end).
@0xce8464b69540f243;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("renkei::juki");

using Common = import "/common.capnp";

# ---------------------------------------------------------------- 個人番号 generation (番号法8条)

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

# ---------------------------------------------------------------- 本人確認情報 and its update chain

# 異動事由: why a record was entered, corrected or deleted.
enum ChangeReason @0x8f3c2a71d0b4e695 {
  unspecified @0;
  moveIn @1;               # 転入 (from another municipality)
  moveOut @2;              # 転出 (to another municipality): the record leaves this municipality
  moveWithin @3;           # 転居 (address change inside the municipality): only the address may change
  birth @4;                # 出生
  death @5;                # 死亡: the record is deleted (kept for the retention period)
  entryByOffice @6;        # 職権記載
  correctionByOffice @7;   # 職権修正
  removalByOffice @8;      # 職権消除: deleted
  residentCodeChange @9;   # 住民票コード変更 (住基法30条の4): previousResidentCode names the old code
  myNumberChange @10;      # 個人番号変更 (番号法7条2項)
  itemChange @11;          # 記載事項の変更 (氏名, 旧氏, 通称, 性別 ...) on a notification
}

# 本人確認情報 as J-LIS keeps it (機構保存本人確認情報ファイル, seed-004b §1.2): the 4情報, the
# two numbers, 旧氏 and 通称, and the change that produced this version of the record.
struct IdentityRecord @0xa2c7e05b91f34d68 {
  person @0 :Common.Person;      # name (kanji, kana, 清音 kana, 外字数), birth, sex, address with codes,
                                 # 住民票コード, 個人番号, 旧氏, 通称
  formerSurnameKana @1 :Text;    # 旧氏 ふりがな
  formerSurnameGaiji @2 :UInt16; # 旧氏 外字数
  reason @3 :ChangeReason;       # 異動事由
  changeDate @4 :Common.Date;    # 異動年月日
  previousResidentCode @5 :Text; # residentCodeChange only: the code this record replaces
  previousMunicipality @6 :Text; # moveIn only: 転出元 全国地方公共団体コード (gets the 転入通知)
  operatorId @7 :Text;           # 操作者ID at the municipality
  terminalId @8 :Text;           # 操作端末ID
}

# 本人確認情報の通知. The 住民記録システム sends it to its own CS; the CS records the records and
# sends them to its prefecture (住基法30条の6); the prefecture records them and promptly sends
# them to J-LIS (30条の7), which records them. Each hop answers with an UpdateCountList.
struct IdentityUpdate @0xe6b1d84f2a9c0357 {
  batchId @0 :Text;              # unique per sender; the UpdateCountList answering it names it
  municipality @1 :Text;         # 全国地方公共団体コード of the municipality whose CS recorded them
  records @2 :List(IdentityRecord);
  recordedAtMs @3 :Int64;        # when the CS recorded them (the deadline counts from here)
}

# 更新件数リスト: what a hop recorded of one IdentityUpdate, so the sender reconciles (第6 7(2),(4)).
# `digest` is SHA-256 over the SHA-256 of each recorded record's canonical bytes, in order, so a
# list that counts right but recorded something else does not reconcile either.
struct UpdateCountList @0xc93d7a1e05b24f86 {
  batchId @0 :Text;
  municipality @1 :Text;
  recordedBy @2 :Text;           # node id of the hop that recorded (pref:NN or jlis:juki)
  received @3 :UInt32;
  recorded @4 :UInt32;
  rejected @5 :List(Rejection);
  digest @6 :Data;
  relayedFor @7 :Text;           # set by a prefecture passing J-LIS's list on to the CS: "jlis:juki"
}

# A record a hop refused, with the field and the rule (J-LIS's PIA checks, validators).
struct Rejection @0xf0a4b2c8d6e13957 {
  index @0 :UInt32;              # position in IdentityUpdate.records
  residentCode @1 :Text;
  field @2 :Text;
  rule @3 :Text;
  message @4 :Text;
}

# A local operator asks its own juki what is still unconfirmed, what is late (past the start of
# business on the next operating day, from the host's calendar) and which alarms were raised.
struct StatusRequest @0xe9f2e364c0b47879 {}
struct ChainStatus @0xfa03f475d1c5898a {
  pending @0 :UInt32;            # batches awaiting a 更新件数リスト
  late @1 :UInt32;               # of those, past their deadline
  lateBatches @2 :List(Text);
  alarms @3 :List(Text);         # reconciliation mismatches and refused sends, oldest first
}

# ---------------------------------------------------------------- queries and provision (照会・提供)

# One key of a query. Which fields are set are the query's conditions; every key of one query
# uses exactly the conditions the envelope declares (so a batch cannot smuggle a weaker one).
struct QueryKey @0x9a5e3f0c1b7d2468 {
  myNumber @0 :Text;
  residentCode @1 :Text;
  name @2 :Text;                 # 漢字氏名 or カタカナ
  dateOfBirth @3 :Common.Date;   # year 0: not given
  sex @4 :Common.Sex;            # unknown: not given
  address @5 :Text;
}

# 本人確認情報の照会 (住基法30条の9 ff. and 別表): a municipality, prefecture or agency asks J-LIS (or
# a prefecture, for its residents). The envelope purpose names the 別表 affair; batch: many keys.
struct IdentityQuery @0xb1d6e83a4c2f9057 {
  keys @0 :List(QueryKey);
}

struct QueryResult @0xd2e7f94b5a3c0168 {
  index @0 :UInt32;              # position in IdentityQuery.keys
  status @1 :Status;
  person @2 :Common.Person;      # 本人確認情報 only; myNumber only for 番号法 affairs
  enum Status { found @0; notFound @1; ambiguous @2; removed @3; }
}

struct IdentityAnswer @0xe3f8a05c6b4d1279 {
  results @0 :List(QueryResult);
}

# 利用者情報照会 for card management: by 住民票コード only (seed-004b L1019).
struct UserInfoQuery @0xf409b16d7c5e238a {
  residentCode @0 :Text;
}
struct UserInfoAnswer @0x851a0c27e8d6f49b {
  found @0 :Bool;
  record @1 :IdentityRecord;
}

# A person's 開示請求: every provision of their 本人確認情報 this node recorded (7 years).
struct DisclosureRequest @0x962b1d38f9e7a5ac {
  residentCode @0 :Text;
}
struct ProvisionEntry @0xa73c2e490af8b6bd {
  atMs @0 :Int64;
  recipient @1 :Text;            # 提供先
  affair @2 :Text;               # 提供理由 (purpose)
  outcome @3 :Text;              # provided | notFound | refused
  operatorId @4 :Text;
  detail @5 :Text;
}
struct DisclosureAnswer @0xb84d3f5a1b09c7ce {
  residentCode @0 :Text;
  entries @1 :List(ProvisionEntry);
}

# ---------------------------------------------------------------- CS-to-CS notices (第3 3(3): never
# through a prefecture or J-LIS server; the host refuses to relay them there)

# 転入通知 (住基法9条1項): the new municipality tells the old one the person moved in.
struct MoveInNotice @0xc95e4f6b2c1ad8df {
  person @0 :Common.Person;      # at the new address
  moveInDate @1 :Common.Date;
  newMunicipality @2 :Text;
  oldMunicipality @3 :Text;
}

# 住民票記載事項通知 (住基法9条2項) and 戸籍の附票記載事項通知 (19条1項), carried by juki until fuhyo.
struct RecordNotice @0xd06f5a7c3d2be9e0 {
  kind @0 :Kind;
  person @1 :Common.Person;
  items @2 :List(Item);          # the items notified, by name
  enum Kind { residentRecord @0; familyRegisterAnnex @1; }
  struct Item { name @0 :Text; value @1 :Text; }
}

# 住民票の写しの交付の特例 (広域交付, 住基法12条の4): the issuing municipality, having checked the
# person's identity, asks the residence municipality; the answer carries the copy's items.
struct CopyRequest @0xe17a6b8d4e3cf0f1 {
  residentCode @0 :Text;
  name @1 :Text;
  dateOfBirth @2 :Common.Date;
  identityDocument @3 :Text;     # how identity was checked (個人番号カード, 施行規則4条2項 書類)
  withHousehold @4 :Bool;        # 世帯全員
  issuingMunicipality @5 :Text;
}
struct CopyAnswer @0xf28b7c9e5f4d0102 {
  issued @0 :Bool;
  refusal @1 :Text;
  person @2 :Common.Person;
  items @3 :List(RecordNotice.Item);
}

# 転入届の特例 (住基法24条の2): the old municipality sends the 転出証明書 information to the new one.
struct MoveOutCertificate @0x839c8d0f6a5e1213 {
  person @0 :Common.Person;
  moveOutDate @1 :Common.Date;   # 転出予定年月日
  destination @2 :Text;          # 転出先 住所
  oldMunicipality @3 :Text;
  newMunicipality @4 :Text;
}

# ---------------------------------------------------------------- consistency check (整合性確認)

# A local operator asks its CS to start a consistency check: the CS streams its residents to J-LIS.
struct ConsistencyStart @0x8b14f586e2d6a9ab {
  checkId @0 :Text;
  chunkSize @1 :UInt32;          # records per chunk (0: 1000)
}

# A CS sends its full set in chunks (stream); J-LIS compares as they arrive and answers once the
# last chunk is in. Chunks may arrive in any order; `chunk` counts from 0.
struct ConsistencyChunk @0x94ad9e1f7b6f2324 {
  checkId @0 :Text;
  municipality @1 :Text;
  chunk @2 :UInt32;
  last @3 :Bool;                 # the final chunk (its number tells how many there are)
  records @4 :List(IdentityRecord);
}

struct Difference @0xa5beaf208c703435 {
  residentCode @0 :Text;
  kind @1 :Kind;
  fields @2 :List(Text);         # differing: the field names
  registeredAt @3 :Text;         # registeredElsewhere: the municipality J-LIS has
  enum Kind { missingAtNational @0; missingAtMunicipality @1; differing @2; registeredElsewhere @3; }
}

# J-LIS's answer: counts and the differences (at most `limit` listed; the counts are complete).
struct ConsistencyReport @0xb6cfb0319d814546 {
  checkId @0 :Text;
  municipality @1 :Text;
  compared @2 :UInt64;
  matching @3 :UInt64;
  missingAtNational @4 :UInt64;
  missingAtMunicipality @5 :UInt64;
  differing @6 :UInt64;
  registeredElsewhere @7 :UInt64;
  differences @8 :List(Difference);
  truncated @9 :Bool;
}

# ---------------------------------------------------------------- erasure (第6 8)

# Asks this node's juki to erase what is past its retention periods now (it also does so daily).
struct EraseExpired @0xc7d0c142ae925657 {
  nowMs @0 :Int64;               # 0: the host's clock
}
struct Erased @0xd8e1d253bfa36768 {
  history @0 :UInt64;            # history versions erased
  removedResidents @1 :UInt64;   # deleted residents erased entirely
  provisions @2 :UInt64;         # provision records past 7 years (or as configured)
}
