// Fuzz target: the envelope decoder that every frame from another host or a plugin goes through.
// Any input must either decode or raise EnvelopeError; nothing else may escape or crash.
#include <renkei/envelope.hpp>

#include <cstdint>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    try {
        auto v = renkei::EnvelopeView::decode(data, size, 1u << 20);
        auto e = v.get();
        (void)e.getFault().getMessage(); // walk the optional parts too
        (void)renkei::stamp_outgoing(v.bytes(), "muni:131016", 0, 1u << 20);
    } catch (const renkei::EnvelopeError&) {
    }
    try {
        (void)renkei::stamp_outgoing(kj::ArrayPtr<const kj::byte>(data, size), "muni:131016", 0, 1u << 20);
    } catch (const renkei::EnvelopeError&) {
    }
    return 0;
}

std::vector<std::vector<uint8_t>> fuzz_seeds() {
    std::vector<std::vector<uint8_t>> out;
    for (int variant = 0; variant < 3; ++variant) {
        capnp::MallocMessageBuilder mb;
        auto e = mb.initRoot<renkei::schema::Envelope>();
        auto id = renkei::new_message_id();
        e.setId(kj::ArrayPtr<const kj::byte>(id.data(), id.size()));
        e.setType("juki.IdentityUpdate");
        e.setFrom("muni:131016");
        e.setTo("pref:13");
        e.setPurpose("juki-30-6");
        e.setPayload(renkei::bytes_of(std::string(static_cast<size_t>(variant) * 40, 'x')));
        if (variant == 2) e.initFault().setMessage("refused");
        auto flat = capnp::messageToFlatArray(mb);
        auto b = flat.asBytes();
        out.emplace_back(b.begin(), b.end());
    }
    return out;
}
