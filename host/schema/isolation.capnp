# The conversation between the host and an isolated plugin's child process over ipc://.
# The child loads the same .so and speaks for it; the host keeps keys, routing and policy.
@0xac4bce23c3f8aecb;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("renkei::ipc");

struct Frame @0xa63b5ee78daeae11 {
  union {
    hello @0 :Hello;        # child -> host, after the library loaded and passed the ABI checks
    init @1 :Init;          # host -> child, answering hello
    ready @2 :Void;         # child -> host, after create + start succeeded
    loadError @3 :Text;     # child -> host, the plugin could not be loaded, created or started
    deliver @4 :Deliver;    # host -> child
    ack @5 :Ack;            # child -> host, the plugin's status for one delivery
    call @6 :Call;          # child -> host, a host-API call the plugin made
    reply @7 :Reply;        # host -> child, the answer to a call
    shutdown @8 :Void;      # host -> child, stop and exit
  }
}

struct Hello @0xfad2d04111475d8f {
  name @0 :Text;
  version @1 :Text;
  kind @2 :UInt32;
  abiMajor @3 :UInt32;
  abiMinor @4 :UInt32;
  messageTypes @5 :List(Text);
  pid @6 :Int32;
}

struct Init @0xbbb2a5aae8760a6f {
  instanceName @0 :Text;
  settingsToml @1 :Text;  # the [plugin.settings] table, serialised
}

struct Deliver @0xa0922e7aed8e81a4 {
  seq @0 :UInt64;
  envelope @1 :Data;
}

struct Ack @0xe340b31d259cbf5a {
  seq @0 :UInt64;
  status @1 :Int32;
  message @2 :Text;
}

struct Call @0x8fd2a8d70761a342 {
  id @0 :UInt64;
  union {
    send @1 :Data;
    sign :group { keyName @2 :Text; data @3 :Data; }
    verify :group { nodeId @4 :Text; data @5 :Data; signature @6 :Data; }
    seal :group { recipient @7 :Text; data @8 :Data; }
    open @9 :Data;
  }
}

struct Reply @0x9270a94b746bcdd4 {
  id @0 :UInt64;
  status @1 :Int32;
  message @2 :Text;
  data @3 :Data;
}
