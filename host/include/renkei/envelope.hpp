// Reading and writing Envelope bytes safely: alignment, size limits, required fields.
#pragma once

#include <renkei/schema/envelope.capnp.h>

#include <capnp/message.h>
#include <capnp/serialize.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace renkei {

using MessageId = std::array<uint8_t, 16>;

// Raised for any envelope that cannot be accepted; names the field and the rule.
class EnvelopeError : public std::runtime_error {
public:
    EnvelopeError(std::string field, std::string rule)
        : std::runtime_error("envelope field '" + field + "': " + rule), field_(std::move(field)),
          rule_(std::move(rule)) {}
    const std::string& field() const { return field_; }
    const std::string& rule() const { return rule_; }

private:
    std::string field_;
    std::string rule_;
};

// Reader limits derived from the frame size: a message cannot make the reader walk more than a
// small multiple of what it actually sent (Cap'n Proto's amplification defence).
capnp::ReaderOptions reader_options_for(size_t bytes);

// A decoded flat-array Envelope that owns an 8-byte-aligned copy of its bytes when the source was
// misaligned (ZeroMQ TCP frames usually are), and borrows them otherwise.
class EnvelopeView {
public:
    // Decodes and checks the envelope. `max_bytes` bounds the accepted size. Throws EnvelopeError.
    static EnvelopeView decode(const void* data, size_t size, size_t max_bytes = 16u << 20);
    // Reads bytes that this host built itself (a plugin's envelope after stamp_outgoing) or has
    // already checked with decode(): no checks and no walk over the message.
    static EnvelopeView trusted(const void* data, size_t size);

    schema::Envelope::Reader get() const { return root_; }
    // The (aligned) flat bytes this view reads.
    kj::ArrayPtr<const kj::byte> bytes() const { return bytes_; }
    MessageId id() const;

    EnvelopeView(EnvelopeView&&) = default;

private:
    EnvelopeView() = default;
    void open(const void* data, size_t size); // borrows or copies the bytes, makes the reader
    kj::Array<capnp::word> owned_;
    kj::ArrayPtr<const kj::byte> bytes_;
    // Heap-held so that moving the view never moves the reader that root_ points into.
    std::unique_ptr<capnp::FlatArrayMessageReader> reader_;
    schema::Envelope::Reader root_;
};

// A fresh message id: UUIDv7 (Unix milliseconds, then 74 random bits), so ids sort by creation time.
MessageId new_message_id();
std::string hex(kj::ArrayPtr<const kj::byte> bytes);
std::string hex(const MessageId& id);
MessageId to_message_id(kj::ArrayPtr<const kj::byte> bytes);

// Flat bytes of a builder.
kj::Array<capnp::word> flat_words(capnp::MessageBuilder& builder);

// Copies a reader into a new builder-owned flat array (for forwarding with modifications).
kj::Array<capnp::word> copy_with(schema::Envelope::Reader in,
                                 const std::function<void(schema::Envelope::Builder)>& edit);

// The canonical bytes of `e` (capnp::canonicalize: one segment, no segment table), which a host
// signs as the envelope leaves it, with the hop count set to `hops`. One canonicalisation and a
// patch of the hop count's byte, not a copy to edit and then a canonical copy of that.
kj::Array<capnp::word> canonical_with_hops(schema::Envelope::Reader e, uint8_t hops);

// Accepts an envelope written by a plugin (possibly misaligned, id possibly empty) and returns
// the host's copy: id filled when empty, `from` set to `node_id` (a plugin speaks for its own node
// only), sent-at set to `now_ms`, hop count reset. Throws EnvelopeError naming the field.
kj::Array<capnp::word> stamp_outgoing(kj::ArrayPtr<const kj::byte> bytes, const std::string& node_id,
                                      int64_t now_ms, size_t max_bytes);

// Text helpers: capnp::Text::Reader from std::string_view, and back.
inline capnp::Text::Reader text(std::string_view s) { return capnp::Text::Reader(s.data(), s.size()); }
inline std::string_view as_view(capnp::Text::Reader t) { return {t.begin(), t.size()}; }
inline kj::ArrayPtr<const kj::byte> bytes_of(std::string_view s) {
    return kj::ArrayPtr<const kj::byte>(reinterpret_cast<const kj::byte*>(s.data()), s.size());
}

} // namespace renkei
