# The message every renkei node routes. Evolve only by Cap'n Proto's rules: add fields at the end
# with the next ordinal, never renumber, retype or move a field. Signed bytes are
# capnp::canonicalize(Envelope), so only changes that keep the canonical encoding are allowed.
@0xe923039888ee7b11;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("renkei::schema");

struct Envelope @0xed0e6d7a0fdc1fb8 {
  id @0 :Data;              # 16 random bytes, unique per message; the host fills it when empty
  correlationId @1 :Data;   # id of the message this one answers (empty for a request)
  type @2 :Text;            # "<plugin>.<Message>", e.g. "juki.IdentityUpdate"
  from @3 :Text;            # node id of the originating party, e.g. "muni:131016"
  to @4 :Text;              # node id of the destination party, e.g. "jlis:juki"
  sentAtUnixMs @5 :Int64;   # when the originating host accepted it (UTC)
  purpose @6 :Text;         # purpose / legal-basis code, e.g. "juki-beppyo1:1"
  operatorId @7 :Text;      # the person or system that caused the message (for the audit trail)
  payload @8 :Data;         # canonical bytes of the domain message named by `type`
  hopCount @9 :UInt8;       # incremented per host; the router drops a message at its hop limit
  fault @10 :Fault;         # set on an error reply (type "<original>.Fault"), otherwise absent
  conditions @11 :List(Text); # query conditions present in the payload (e.g. "myNumber", "name",
                              # "dateOfBirth"), checked by the receiving host's access policy;
                              # the receiving plugin refuses a payload that uses others
}

# A refusal or failure reported back to the sender of `correlationId`.
struct Fault @0x902bc1aef093ffb3 {
  code @0 :UInt32;          # a renkei_status value (plugin.h)
  field @1 :Text;           # the field that broke a rule, e.g. "person.myNumber"; empty if none
  rule @2 :Text;            # the rule, e.g. "check digit (番号法施行規則第5条)"
  message @3 :Text;         # human-readable summary
}

# What travels between hosts: the canonical Envelope bytes and the sending host's signature over
# exactly those bytes, so the receiver verifies before parsing and logs exactly what was signed.
struct SignedEnvelope @0xaedaa556466b15a8 {
  body @0 :Data;            # capnp::canonicalize(Envelope) (single segment, no segment table)
  alg @1 :SignatureAlg;
  keyId @2 :Text;           # node id whose signing key made `signature`
  signature @3 :Data;       # over `body` (single) or over the Merkle root (batch)
  merkleProof @4 :List(Data); # batch only: sibling hashes from this leaf up to the root
  leafIndex @5 :UInt32;       # batch only: position of this envelope among the batch leaves
  batchSize @6 :UInt32;       # batch only: number of leaves in the batch
}

enum SignatureAlg @0x9db83700713c3ae0 {
  ed25519 @0;               # Ed25519 over `body`
  ed25519MerkleSha256 @1;   # Ed25519 over a SHA-256 Merkle root of a batch of bodies
}
