// Uses the host's crypto the way a business plugin would: it never holds a key.
//   signer.Sign  -> replies signer.Signed with the host's Ed25519 signature over the payload
//   signer.Seal  -> replies signer.Sealed with the payload sealed to node settings.recipient
//   signer.Open  -> replies signer.Opened with the payload opened with this node's sealing key
#include <renkei/sdk.hpp>

namespace {

kj::ArrayPtr<const kj::byte> bytes(const std::vector<uint8_t>& v) { return {v.data(), v.size()}; }

class Signer : public renkei::sdk::Plugin {
public:
    using Plugin::Plugin;
    void handle(const renkei::sdk::Message& m) override {
        auto t = m.type();
        if (t == "signer.Sign")
            host().reply(m, "signer.Signed", bytes(host().sign("node", m.payload())));
        else if (t == "signer.Seal")
            host().reply(m, "signer.Sealed", bytes(host().seal(host().config_or("recipient", ""), m.payload())));
        else if (t == "signer.Open")
            host().reply(m, "signer.Opened", bytes(host().open(m.payload())));
    }
};

} // namespace

RENKEI_PLUGIN(Signer, "signer", "0.0.1", RENKEI_KIND_BUSINESS, "signer.Sign", "signer.Seal", "signer.Open")
