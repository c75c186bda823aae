# What one host sends another over a CURVE link.
@0x968c843957961ce0;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("renkei::wire");
using Env = import "/envelope.capnp";

struct Frame @0xd569b2bb3b2e4bb5 {
  union {
    envelope @0 :Env.SignedEnvelope;  # custody of one envelope passes to the receiver once acked
    ack @1 :List(Data);               # ids of envelopes the receiver has taken custody of
  }
}
