#include <renkei/envelope.hpp>

#include <capnp/schema.h>

#include <chrono>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <pthread.h>

#include <cstring>
#include <functional>

namespace renkei {

capnp::ReaderOptions reader_options_for(size_t bytes) {
    capnp::ReaderOptions o;
    o.traversalLimitInWords = (bytes / sizeof(capnp::word)) * 4 + 1024;
    o.nestingLimit = 32;
    return o;
}

void EnvelopeView::open(const void* data, size_t size) {
    if (reinterpret_cast<uintptr_t>(data) % alignof(capnp::word) == 0) {
        bytes_ = kj::ArrayPtr<const kj::byte>(static_cast<const kj::byte*>(data), size);
    } else {
        owned_ = kj::heapArray<capnp::word>(size / sizeof(capnp::word));
        std::memcpy(owned_.begin(), data, size);
        bytes_ = owned_.asBytes();
    }
    reader_ = std::make_unique<capnp::FlatArrayMessageReader>(
        kj::ArrayPtr<const capnp::word>(reinterpret_cast<const capnp::word*>(bytes_.begin()), size / sizeof(capnp::word)),
        reader_options_for(size));
    root_ = reader_->getRoot<schema::Envelope>();
}

EnvelopeView EnvelopeView::trusted(const void* data, size_t size) {
    EnvelopeView v;
    v.open(data, size);
    return v;
}

EnvelopeView EnvelopeView::decode(const void* data, size_t size, size_t max_bytes) {
    if (size == 0) throw EnvelopeError("frame", "empty");
    if (size > max_bytes)
        throw EnvelopeError("frame", "size " + std::to_string(size) + " exceeds the limit of " +
                                         std::to_string(max_bytes) + " bytes");
    if (size % sizeof(capnp::word) != 0)
        throw EnvelopeError("frame", "size " + std::to_string(size) +
                                         " is not a multiple of 8 (not a Cap'n Proto message)");
    EnvelopeView v;
    try {
        v.open(data, size);
        auto e = v.root_;
        if (e.getId().size() != 16) throw EnvelopeError("id", "must be 16 bytes");
        if (e.getType().size() == 0) throw EnvelopeError("type", "must not be empty");
        if (e.getTo().size() == 0) throw EnvelopeError("to", "must name a node");
        if (e.hasCorrelationId() && e.getCorrelationId().size() != 16 &&
            e.getCorrelationId().size() != 0)
            throw EnvelopeError("correlationId", "must be empty or 16 bytes");
        // Walk every pointer once (also of fields this host does not know yet) so a malformed
        // one fails here, with the traversal limit, and never later in the router or a plugin.
        (void)e.totalSize();
        if (e.hasFault()) {
            auto f = e.getFault();
            (void)f.getField(), (void)f.getRule(), (void)f.getMessage();
        }
        (void)e.getFrom(), (void)e.getPurpose(), (void)e.getOperatorId(), (void)e.getPayload();
    } catch (const kj::Exception& ex) {
        throw EnvelopeError("frame", std::string("malformed Cap'n Proto message: ") +
                                         ex.getDescription().cStr());
    }
    return v;
}

kj::Array<capnp::word> stamp_outgoing(kj::ArrayPtr<const kj::byte> bytes, const std::string& node_id,
                                      int64_t now_ms, size_t max_bytes) {
    if (bytes.size() > max_bytes)
        throw EnvelopeError("frame", "size " + std::to_string(bytes.size()) + " exceeds the limit of " +
                                         std::to_string(max_bytes) + " bytes");
    if (bytes.size() == 0 || bytes.size() % sizeof(capnp::word) != 0)
        throw EnvelopeError("frame", "size " + std::to_string(bytes.size()) +
                                         " is not a Cap'n Proto flat message");
    // Copy into aligned words: the plugin's buffer may be misaligned and is not ours to keep.
    auto words = kj::heapArray<capnp::word>(bytes.size() / sizeof(capnp::word));
    std::memcpy(words.begin(), bytes.begin(), bytes.size());
    try {
        capnp::FlatArrayMessageReader reader(words.asPtr(), reader_options_for(bytes.size()));
        auto in = reader.getRoot<schema::Envelope>();
        if (in.getType().size() == 0) throw EnvelopeError("type", "must not be empty");
        if (in.getTo().size() == 0) throw EnvelopeError("to", "must name a node");
        if (in.getId().size() != 0 && in.getId().size() != 16)
            throw EnvelopeError("id", "must be empty (the host assigns one) or 16 bytes");
        return copy_with(in, [&](schema::Envelope::Builder b) {
            if (b.getId().size() != 16) {
                auto id = new_message_id();
                b.setId(kj::ArrayPtr<const kj::byte>(id.data(), id.size()));
            }
            b.setFrom(text(node_id));
            b.setSentAtUnixMs(now_ms);
            b.setHopCount(0);
        });
    } catch (const kj::Exception& e) {
        throw EnvelopeError("frame", std::string("malformed Cap'n Proto message: ") + e.getDescription().cStr());
    }
}

namespace {

// Where hopCount lies in an Envelope's data section, in bytes (a UInt8's offset is in bytes).
size_t hop_count_byte() {
    static const size_t at =
        capnp::Schema::from<schema::Envelope>().getFieldByName("hopCount").getProto().getSlot().getOffset();
    return at;
}

uint64_t load_le64(const kj::byte* p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = v << 8 | p[i];
    return v;
}

void store_le64(kj::byte* p, uint64_t v) {
    for (int i = 0; i < 8; ++i) p[i] = static_cast<kj::byte>(v >> (8 * i));
}

} // namespace

kj::Array<capnp::word> canonical_with_hops(schema::Envelope::Reader e, uint8_t hops) {
    auto edited = [&] {
        capnp::MallocMessageBuilder copy(static_cast<unsigned>(e.totalSize().wordCount + 8));
        copy.setRoot(e);
        auto root = copy.getRoot<schema::Envelope>();
        root.setHopCount(hops);
        return capnp::canonicalize(root.asReader());
    };
    // Zero may leave a data word all zero, which the canonical form cuts off: edit and re-encode.
    if (hops == 0) return edited();
    auto c = capnp::canonicalize(e);
    // Canonical: word 0 is the root struct pointer (offset 0), its data section follows it, then
    // its pointer section and what that points to, in order.
    auto bytes = c.asBytes();
    if (bytes.size() < 8) return edited();
    const uint64_t root = load_le64(bytes.begin());
    if ((root & 0xffffffffu) != 0) return edited(); // not a struct pointer to the next word
    const size_t data_words = (root >> 32) & 0xffff, at = hop_count_byte(), word = at / 8;
    if (data_words > word) { // the hop count's word is there: write the byte
        bytes[8 + at] = hops;
        return c;
    }
    if (data_words != word) return edited();
    // The hop count's word was all zero and so left out: put it in after the data section.
    // Everything after it moves one word on, together with everything that points into it, so no
    // pointer's relative offset changes; only the root pointer's data size grows by one.
    auto out = kj::heapArray<capnp::word>(c.size() + 1);
    auto o = out.asBytes();
    store_le64(o.begin(), root + (uint64_t{1} << 32));
    const size_t data_end = 8 + data_words * 8;
    std::memcpy(o.begin() + 8, bytes.begin() + 8, data_words * 8);
    std::memset(o.begin() + data_end, 0, 8);
    o[8 + at] = hops;
    std::memcpy(o.begin() + data_end + 8, bytes.begin() + data_end, bytes.size() - data_end);
    return out;
}

MessageId EnvelopeView::id() const { return to_message_id(root_.getId()); }

namespace {

// RAND_bytes costs about as much for an id's 10 bytes as for 4 KiB (its locks and fork check:
// 0.84 us a call here), so ids draw their random bits from a buffer of this thread's, filled 4 KiB
// at a time. A forked child starts with its parent's buffer: it must never hand out the bytes the
// parent will, so fork empties the buffer of the one thread the child has.
struct RandomPool {
    std::array<uint8_t, 4096> bytes;
    size_t next = sizeof bytes; // empty
    void take(uint8_t* out, size_t n) {
        if (next + n > bytes.size()) {
            if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1) throw std::runtime_error("RAND_bytes failed");
            next = 0;
        }
        std::memcpy(out, bytes.data() + next, n);
        OPENSSL_cleanse(bytes.data() + next, n); // handed out once
        next += n;
    }
};
thread_local RandomPool random_pool;

} // namespace

MessageId new_message_id() {
    // UUIDv7 layout (RFC 9562): 48-bit Unix milliseconds, then 74 random bits. Ids made close in
    // time sort together, so the outbox's and the inbox's id indexes grow at one end instead of
    // dirtying a random page of a large B-tree per message.
    static const int fork_guard = pthread_atfork(nullptr, nullptr, [] { random_pool.next = random_pool.bytes.size(); });
    if (fork_guard != 0) throw std::runtime_error("pthread_atfork failed");
    MessageId id{};
    random_pool.take(id.data() + 6, id.size() - 6);
    auto ms = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                        std::chrono::system_clock::now().time_since_epoch()).count());
    for (int i = 0; i < 6; ++i) id[i] = static_cast<uint8_t>(ms >> (8 * (5 - i)));
    id[6] = static_cast<uint8_t>(0x70 | (id[6] & 0x0f)); // version 7
    id[8] = static_cast<uint8_t>(0x80 | (id[8] & 0x3f)); // variant 10
    return id;
}

// Its own, not crypto::to_hex: the envelope fuzz target builds this file without the crypto code.
std::string hex(kj::ArrayPtr<const kj::byte> bytes) {
    static const char digits[] = "0123456789abcdef";
    std::string out(bytes.size() * 2, '\0'); // sized once, written in place
    char* p = out.data();
    for (auto b : bytes) {
        *p++ = digits[b >> 4];
        *p++ = digits[b & 15];
    }
    return out;
}

std::string hex(const MessageId& id) {
    return hex(kj::ArrayPtr<const kj::byte>(id.data(), id.size()));
}

MessageId to_message_id(kj::ArrayPtr<const kj::byte> bytes) {
    MessageId id{};
    if (bytes.size() == id.size()) std::memcpy(id.data(), bytes.begin(), id.size());
    return id;
}

kj::Array<capnp::word> flat_words(capnp::MessageBuilder& builder) {
    return capnp::messageToFlatArray(builder);
}

kj::Array<capnp::word> copy_with(schema::Envelope::Reader in,
                                 const std::function<void(schema::Envelope::Builder)>& edit) {
    // The first segment sized for the copy and what edits usually add (an id, a sender): the
    // default one is 8 KiB, zeroed for every message.
    capnp::MallocMessageBuilder mb(static_cast<unsigned>(in.totalSize().wordCount + 16));
    mb.setRoot(in);
    edit(mb.getRoot<schema::Envelope>());
    return capnp::messageToFlatArray(mb);
}

} // namespace renkei
