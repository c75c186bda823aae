// Fuzz target: the envelope decoder that every frame from another host or a plugin goes through,
// and the bundle decoder in front of it on host-to-host links. Any input must either decode or
// raise EnvelopeError (a bundle: be refused with a reason, nothing handed on); nothing else may
// escape or crash.
#include <renkei/envelope.hpp>
#include <renkei/frame_bundle.hpp>

#include <cstdint>
#include <cstdlib>
#include <vector>

namespace {

void envelope(const uint8_t* data, size_t size) {
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
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (!renkei::frame_bundle::is_bundle(data, size)) {
        envelope(data, size);
        return 0;
    }
    size_t frames = 0;
    auto why = renkei::frame_bundle::decode(data, size, [&](const uint8_t* f, size_t n) {
        if (n == 0 || f < data || f + n > data + size) std::abort(); // a frame outside the bundle
        ++frames;
        envelope(f, n);
    });
    if (why.empty() == (frames == 0)) std::abort(); // refused with frames handed on, or taken with none
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
    std::vector<uint8_t> bundle; // the three as one bundle, as a link sends them
    renkei::frame_bundle::encode({&out[0], &out[1], &out[2]}, bundle);
    out.push_back(std::move(bundle));
    return out;
}
