#include <renkei/links.hpp>

#include <atomic>

#include <renkei/calendar.hpp>
#include <renkei/crypto.hpp>
#include <renkei/inbox_dedup.hpp>
#include <renkei/log.hpp>
#include <renkei/merkle.hpp>
#include <renkei/non_transit.hpp>
#include <renkei/outbox.hpp>
#include <renkei/plugin_loader.hpp>
#include <renkei/recent_ids.hpp>
#include <renkei/transport.hpp>
#include <renkei/trust_store.hpp>

#include <wire.capnp.h>

#include <capnp/message.h>
#include <capnp/serialize.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <random>
#include <set>
#include <shared_mutex>
#include <unordered_set>
#include <thread>

namespace renkei {
namespace {

// "*", an exact node id, or a prefix ending in "*": "muni:*" (a kind), "muni:13*" (Tokyo's
// municipalities, by the prefecture digits of their codes).
bool reaches(const std::string& pattern, const std::string& node) {
    if (pattern == "*" || pattern == node) return true;
    if (pattern.size() >= 2 && pattern.back() == '*')
        return node.compare(0, pattern.size() - 1, pattern, 0, pattern.size() - 1) == 0;
    return false;
}

// A received frame's words, read in place when aligned (a vector's storage is, and so is a
// ZeroMQ message's, to 8 bytes), else copied into `copy`, as Cap'n Proto reads only aligned words.
kj::ArrayPtr<const capnp::word> frame_words(std::span<const uint8_t> bytes, kj::Array<capnp::word>& copy) {
    kj::ArrayPtr<const capnp::word> words(reinterpret_cast<const capnp::word*>(bytes.data()), bytes.size() / 8);
    if (reinterpret_cast<uintptr_t>(bytes.data()) % alignof(capnp::word) == 0) return words;
    copy = kj::heapArray<capnp::word>(bytes.size() / 8);
    memcpy(copy.begin(), bytes.data(), bytes.size() / 8 * 8);
    return copy.asPtr();
}

std::span<const uint8_t> bytes_span(const kj::Array<capnp::word>& words) {
    auto b = words.asBytes();
    return {b.begin(), b.size()};
}

// A builder's flat bytes (segment table and segments), written straight into the vector.
std::vector<uint8_t> flat_vector(capnp::MessageBuilder& mb) {
    std::vector<uint8_t> out(capnp::computeSerializedSizeInWords(mb) * sizeof(capnp::word));
    kj::ArrayOutputStream stream(kj::arrayPtr(out.data(), out.size()));
    capnp::writeMessage(stream, mb);
    return out;
}

// The signed envelope body a frame carries (for outbox entries and dead letters written as whole
// frames by earlier versions, and for a memory link's dead letters). Throws naming what is wrong.
std::vector<uint8_t> frame_body(std::span<const uint8_t> frame) {
    if (frame.empty() || frame.size() % 8 != 0)
        throw std::runtime_error("frame of " + std::to_string(frame.size()) + " bytes is not a Cap'n Proto message");
    kj::Array<capnp::word> copy;
    capnp::FlatArrayMessageReader reader(frame_words(frame, copy), reader_options_for(frame.size()));
    auto f = reader.getRoot<wire::Frame>();
    if (f.which() != wire::Frame::ENVELOPE) throw std::runtime_error("frame holds no envelope");
    auto body = f.getEnvelope().getBody();
    if (body.size() == 0 || body.size() % 8 != 0)
        throw std::runtime_error("envelope body of " + std::to_string(body.size()) + " bytes is not whole words");
    return {body.begin(), body.end()};
}

struct IdHash {
    size_t operator()(const MessageId& id) const {
        return std::hash<std::string_view>{}({reinterpret_cast<const char*>(id.data()), id.size()});
    }
};

// The newest `capacity` strings inserted, forgetting the oldest (the verified Merkle roots).
class RecentSet {
public:
    explicit RecentSet(size_t capacity) : capacity_(capacity) {}
    bool contains(const std::string& key) const { return set_.count(key) > 0; }
    void insert(const std::string& key) {
        if (!set_.insert(key).second) return;
        order_.push_back(key);
        if (order_.size() > capacity_) {
            set_.erase(order_.front());
            order_.pop_front();
        }
    }
    void clear() {
        set_.clear();
        order_.clear();
    }

private:
    size_t capacity_;
    std::unordered_set<std::string> set_;
    std::deque<std::string> order_;
};

} // namespace

struct Links::Impl {
    const HostConfig& config;
    // This node's keys; replaced whole by Links::set_keys (rotation), read through current_keys().
    std::shared_ptr<const NodeKeys> keys_now;
    mutable std::mutex keys_mutex;
    std::shared_ptr<const NodeKeys> current_keys() const {
        std::lock_guard lock(keys_mutex);
        return keys_now;
    }
    Router& router;
    Metrics& metrics;
    std::function<int64_t()> clock;
    Observer observer;
    std::function<std::string(const schema::Envelope::Reader&)> policy;

    std::shared_mutex trust_mutex;
    std::map<std::string, std::vector<crypto::VerifyKey>> verify_keys; // node -> its signing keys
    std::map<std::string, std::string> curve_keys;                     // Z85 key -> node
    int64_t trust_expires_ms = INT64_MAX;                              // the trust store's expiry
    std::unique_ptr<Transport> transport;
    std::unique_ptr<Outbox> outbox;
    std::unique_ptr<InboxDedup> dedup;

    // Received frames are processed off the transport's I/O thread (SQLite and plugins may block);
    // only their signatures are checked on it, which takes CPU but never waits (precheck).
    std::mutex mutex;
    // One condition per waiting thread, so a notification wakes only the thread it is for.
    std::condition_variable commit_cv, inbound_cv, stop_cv;
    // A frame as the transport handed it over, its signature checked there (see precheck):
    // `checked` is the trust epoch it was checked under (0: not checked) and `why` the outcome
    // ("" when good). The receiver checks it again if the trust changed since.
    struct Inbound {
        std::string peer;
        std::shared_ptr<const void> holder; // what keeps `bytes` valid: the transport's message
        std::span<const uint8_t> bytes;
        uint64_t checked = 0;
        std::string why;
    };
    std::deque<Inbound> inbound;
    std::unordered_set<MessageId, IdHash> in_progress; // taken, not yet finished: a retransmission waits for them
    bool stopping = false;
    // The inbound gate (Links::set_inbound_open): envelopes held while it is closed, and whether
    // the receiver is in the middle of a batch (closing waits for it).
    std::atomic<bool> inbound_open{true};
    bool receiving = false;
    std::condition_variable idle_cv;
    std::deque<std::pair<std::string, std::vector<uint8_t>>> held;
    size_t held_bytes = 0, max_held = 65536, max_held_bytes = size_t(256) << 20;
    // Envelopes the closed gate dropped since start, and how many of them before it last opened
    // (so the first drop of each closed period is the one logged).
    uint64_t held_dropped = 0, dropped_at_close = 0;
    std::thread receiver, resender, committer;

    // Group commit: forward() queues signed frames; the committer writes each batch to the outbox
    // in one transaction, hands the frames to the transport, and releases the waiting callers.
    struct Outgoing {
        std::string hop;
        MessageId id;
        std::string type;
        kj::Array<capnp::word> body; // canonical envelope: what the outbox keeps
        std::vector<uint8_t> frame; // signed on its own by forward(), else in a Merkle batch by the committer
        Transport::SharedFrame kept; // the frame, once in memory's custody (delivery = "memory")
        int64_t not_before = 0;     // held in the outbox until the operating window opens
        bool in_memory = false;     // kept in flight in memory (delivery = "memory"), not in the outbox
    };
    OperatingCalendar calendar;
    static constexpr size_t kMaxQueued = 65536; // forward() waits while this many await commit
    // Flow control: a local sender waits while this many messages are queued or unacknowledged,
    // so a fast sender cannot run ahead of the next hop into retry storms and long queues.
    // (Relayed messages, forwarded on the receiver thread, never wait here: that thread also
    // takes the acknowledgements that make room.)
    static constexpr size_t kWindow = 4096;
    size_t unacked = 0; // committed to the outbox, not yet acknowledged (under `mutex`)
    // Frames the transport could not hand over (the link is not up yet, e.g. just after start):
    // tried again every resend round for a short while instead of waiting for the outbox's
    // back-off. They are in the outbox already; past kParkMs the back-off takes over.
    std::mutex parked_mutex;
    std::deque<std::pair<std::string, std::vector<uint8_t>>> parked;
    std::map<std::string, int64_t> outage_since; // peer -> first failed hand-over of this outage
    static constexpr size_t kMaxParked = 65536;
    static constexpr int64_t kParkMs = 10000;
    static constexpr uint32_t kMaxBatchLeaves = 4096;
    static constexpr int64_t kPruneEveryMs = 3'600'000;
    static constexpr size_t kPruneRound = 50'000;
    int64_t last_prune = INT64_MIN; // the resend loop's
    std::atomic<uint64_t> dedup_pruned{0};
    // First-segment words of an acknowledgement frame, plus 3 per id (the MallocMessageBuilder
    // default is 1,024 words, zeroed for every frame).
    static constexpr unsigned kAckWords = 8;
    static constexpr size_t kRoundEnough = 256;          // messages and acknowledgements: no need to wait
    static constexpr std::chrono::milliseconds kLinger{2}; // a smaller round waits this long for more
    std::vector<Outgoing> to_commit;
    std::condition_variable room_cv;
    std::set<std::string> batch_peers; // peers configured with signing = "batch"
    // Merkle roots already verified, per peer: a batch costs one signature check, not one per leaf;
    // and the nodes the newest batches' proofs authenticated, so a leaf costs about one inner hash.
    std::mutex roots_mutex;
    RecentSet verified_roots{1024};
    merkle::BatchVerifier batches;
    uint64_t trust_epoch = 1; // under trust_mutex; counts the trust changes
    // Acknowledgements are recorded (dedup) and sent in batches too.
    std::vector<std::pair<std::string, MessageId>> to_ack;
    // Acknowledgements received, per peer: the committer deletes them from the outbox.
    std::map<std::string, std::vector<MessageId>> acked;

    // Peers with delivery = "memory". What is sent to them waits for its acknowledgement in
    // `in_flight`, not in the outbox, and is sent again from there on the outbox's back-off; what
    // comes from them is deduplicated in `memory_seen`, not in inbox.db. A message held for the
    // operating window still waits in the outbox.
    std::set<std::string> memory_peers;
    struct InFlight {
        std::string hop, type;
        Transport::SharedFrame frame; // shared with the transport's queue, not copied
        int attempts = 1;
        int64_t queued_ms = 0;
        uint64_t round = 0; // the send round it is due again with
    };
    // What was sent together (a commit round, or the resends of one attempt count) is due again
    // together: one back-off draw and one entry per round. An id acknowledged, or sent again in a
    // later round, is skipped when an older round of it comes due.
    struct Round {
        uint64_t number;
        std::vector<MessageId> ids;
    };
    std::mutex flight_mutex;
    std::unordered_map<MessageId, InFlight, IdHash> in_flight;
    std::multimap<int64_t, Round> flight_rounds; // by when they are due again
    size_t in_flight_bytes = 0, max_in_flight, max_in_flight_bytes; // [links] in_flight_messages, in_flight_mib
    uint64_t rounds_made = 0;
    std::mt19937_64 flight_rng{std::random_device{}()};
    // The newest ids taken from memory peers ([links] memory_dedup_ids, 2^20; under `mutex`): a
    // copy sent again later than that many others is taken again.
    RecentIds memory_seen;

    bool trust_set = false;
    void apply_trust(const std::map<std::string, PeerKeys>& keys, int64_t expires_ms) {
        std::map<std::string, std::vector<crypto::VerifyKey>> verify;
        std::map<std::string, std::string> curve;
        for (auto& [node, k] : keys) {
            for (auto& c : k.curve) curve[c] = node;
            for (auto& hexkey : k.sign) verify[node].push_back(crypto::VerifyKey::from_raw(crypto::from_hex(hexkey)));
        }
        {
            std::unique_lock lock(trust_mutex);
            verify_keys = std::move(verify);
            curve_keys = curve;
            trust_expires_ms = expires_ms;
            trust_set = true;
            ++trust_epoch; // frames checked before are checked again
            // With the keys, not after: a root verified with a key now revoked must be checked again.
            std::lock_guard roots(roots_mutex);
            verified_roots.clear();
            batches.clear();
        }
        if (transport) transport->set_trusted_keys(std::move(curve));
    }

    Impl(const HostConfig& c, std::shared_ptr<const NodeKeys> k, Router& r, Metrics& m, std::function<int64_t()> clk)
        : config(c), keys_now(std::move(k)), router(r), metrics(m), clock(std::move(clk)), calendar(c.calendar),
          max_in_flight(c.links.in_flight_messages), max_in_flight_bytes(c.links.in_flight_bytes),
          memory_seen(c.links.memory_dedup_ids) {}

    // The [[hours]] rule governing `type`, if any.
    const HoursRule* hours_rule(const std::string& type) const {
        for (auto& r : config.hours)
            if (type_matches(r.type, type)) return &r;
        return nullptr;
    }

    void observe(const std::string& event, const std::string& peer, const std::string& id,
                 const std::string& type, const std::string& detail) {
        if (observer) observer(event, peer, id, type, detail);
    }

    std::string next_hop(const std::string& to) const {
        for (auto& p : config.peers)
            if (p.node == to) return p.node;
        for (auto& p : config.peers)
            for (auto& pattern : p.reaches)
                if (reaches(pattern, to)) return p.node;
        return {};
    }

    void send_ack(const std::string& peer, const MessageId& id) {
        capnp::MallocMessageBuilder mb(kAckWords);
        auto ids = mb.initRoot<wire::Frame>().initAck(1);
        ids.set(0, kj::ArrayPtr<const kj::byte>(id.data(), id.size()));
        transport->send(peer, flat_vector(mb));
    }

    static std::vector<uint8_t> signed_frame(std::span<const uint8_t> body, schema::SignatureAlg alg,
                                             const std::string& key_id, std::span<const uint8_t> sig,
                                             const std::vector<merkle::Hash>* proof = nullptr,
                                             uint32_t index = 0, uint32_t size = 0) {
        // Room for all of it in the first segment: the default one is 8 KiB, zeroed per frame.
        capnp::MallocMessageBuilder mb(static_cast<unsigned>(body.size() / 8 + (key_id.size() + sig.size()) / 8 +
                                                             (proof ? 5 * proof->size() : 0) + 32));
        auto s = mb.initRoot<wire::Frame>().initEnvelope();
        s.setBody(kj::ArrayPtr<const kj::byte>(body.data(), body.size()));
        s.setAlg(alg);
        s.setKeyId(key_id);
        s.setSignature(kj::ArrayPtr<const kj::byte>(sig.data(), sig.size()));
        if (proof) {
            auto list = s.initMerkleProof(static_cast<unsigned>(proof->size()));
            for (unsigned i = 0; i < proof->size(); ++i)
                list.set(i, kj::ArrayPtr<const kj::byte>((*proof)[i].data(), (*proof)[i].size()));
            s.setLeafIndex(index);
            s.setBatchSize(size);
        }
        return flat_vector(mb);
    }

    // `body` signed on its own (signing = "single").
    std::vector<uint8_t> single_frame(std::span<const uint8_t> body) {
        auto sig = current_keys()->sign.sign(body);
        return signed_frame(body, schema::SignatureAlg::ED25519, config.node_id, sig);
    }

    // Queues the envelope for the next hop and returns at once. The committer writes it to the
    // outbox before it goes on the wire, and before any acknowledgement queued after this call
    // (so a relayed or answered message is durable here before its sender is released).
    Router::ForwardResult forward(const EnvelopeView& env) {
        auto e = env.get();
        std::string to = e.getTo();
        std::string hop = next_hop(to);
        if (hop.empty()) return "no route from " + config.node_id + " to node " + to;
        if (auto why = transit_violation(std::string(e.getType()), hop, to); !why.empty())
            return {RENKEI_ERR_DENIED, why};
        // Sign the canonical bytes of the envelope as it leaves this host (one more hop).
        auto canonical = canonical_with_hops(e, static_cast<uint8_t>(e.getHopCount() + 1));
        auto body = canonical.asBytes();
        Outgoing out{hop, env.id(), std::string(e.getType()), {}, {}, 0};
        if (auto* rule = hours_rule(out.type)) {
            auto now = clock();
            if (!calendar.open_at(now)) {
                auto opens = calendar.next_open(now);
                if (!rule->queue)
                    return {RENKEI_ERR_DENIED, out.type + " is exchanged only in the common operating window (" + calendar.describe() +
                           "); it is closed now (" + calendar.local_time(now) + "), next open " +
                           (opens == INT64_MAX ? std::string("never") : calendar.local_time(opens))};
                out.not_before = opens;
            }
        }
        // Signed on its own here, on the sending thread, unless the committer signs it in a batch.
        if (!batch_peers.count(hop)) out.frame = single_frame({body.begin(), body.size()});
        out.body = std::move(canonical);
        auto id = out.id;
        auto out_held = out.not_before;
        {
            std::unique_lock lock(mutex);
            // Held messages wait in the outbox, not on the wire: they take no room in the window.
            bool relay = std::this_thread::get_id() == receiver.get_id() || out.not_before != 0;
            room_cv.wait(lock, [&] {
                return stopping || (to_commit.size() < kMaxQueued && (relay || to_commit.size() + unacked < kWindow));
            });
            if (stopping) return "host stopping before " + hex(id) + " was queued";
            to_commit.push_back(std::move(out));
            if (to_commit.size() == 1 || to_commit.size() + to_ack.size() == kRoundEnough) commit_cv.notify_one();
        }
        // The router records every forward; one held for the operating window is recorded too.
        if (out_held)
            observe("held", hop, hex(id), e.getType(),
                    "to " + to + " via " + hop + ": held until the operating window opens at " +
                        calendar.local_time(out_held));
        return {};
    }

    // Signs the batch entries in Merkle batches per hop (one Ed25519 signature per batch).
    void sign_batches(std::vector<Outgoing>& batch) {
        std::map<std::string, std::vector<Outgoing*>> by_hop;
        for (auto& o : batch)
            if (o.frame.empty()) by_hop[o.hop].push_back(&o);
        for (auto& [hop, list] : by_hop) {
            for (size_t start = 0; start < list.size(); start += kMaxBatchLeaves) {
                size_t n = std::min<size_t>(kMaxBatchLeaves, list.size() - start);
                std::vector<merkle::Hash> leaves;
                leaves.reserve(n);
                for (size_t i = 0; i < n; ++i) leaves.push_back(merkle::leaf_hash(bytes_span(list[start + i]->body)));
                merkle::Tree tree(std::move(leaves));
                auto sig = current_keys()->sign.sign(merkle::signed_message(tree.root()));
                for (uint32_t i = 0; i < n; ++i) {
                    auto proof = tree.proof(i);
                    auto& o = *list[start + i];
                    o.frame = signed_frame(bytes_span(o.body), schema::SignatureAlg::ED25519_MERKLE_SHA256,
                                           config.node_id, sig, &proof, i, static_cast<uint32_t>(n));
                }
            }
        }
    }

    // Checks a frame's signature: "" when it is good, else why not.
    std::string check_signature(const std::string& peer, const crypto::VerifyKey& key,
                                const wire::Frame::Reader& frame) {
        auto s = frame.getEnvelope();
        auto body = s.getBody();
        auto sig = s.getSignature();
        switch (s.getAlg()) {
        case schema::SignatureAlg::ED25519:
            if (!key.verify({body.begin(), body.size()}, {sig.begin(), sig.size()}))
                return "signature does not verify (tampered or wrong key)";
            return {};
        case schema::SignatureAlg::ED25519_MERKLE_SHA256: {
            // The checking thread's scratch: nothing allocated per frame.
            thread_local std::vector<merkle::Hash> siblings;
            siblings.clear();
            for (auto h : s.getMerkleProof()) {
                if (h.size() != 32) return "merkleProof holds a hash of " + std::to_string(h.size()) + " bytes, not 32";
                merkle::Hash x;
                memcpy(x.data(), h.begin(), 32);
                siblings.push_back(x);
            }
            const auto leaf = merkle::leaf_hash({body.begin(), body.size()});
            // A batch is known by its sender and signature; its leaves share the nodes near the root.
            thread_local std::string batch;
            batch.assign(peer);
            batch.push_back('\0');
            batch.append(reinterpret_cast<const char*>(sig.begin()), sig.size());
            std::lock_guard lock(roots_mutex);
            return batches.check(batch, leaf, s.getLeafIndex(),
                                 s.getBatchSize(), siblings, [&](const merkle::Hash& root) {
                                     std::string cache_key = peer + '\0' + std::string(root.begin(), root.end());
                                     if (verified_roots.contains(cache_key)) return true;
                                     if (!key.verify(merkle::signed_message(root), {sig.begin(), sig.size()}))
                                         return false;
                                     verified_roots.insert(cache_key);
                                     return true;
                                 });
        }
        }
        return "unknown signature algorithm " + std::to_string(static_cast<int>(s.getAlg()));
    }

    void refuse(const std::string& peer, const std::string& id, const std::string& type, const std::string& why) {
        metrics.counters(type.empty() ? "(unreadable)" : type, "links").failed.fetch_add(1, std::memory_order_relaxed);
        logger("links")->warn("refused a frame from {}: {}", peer, why);
        observe("refused", peer, id, type, why);
    }

    // On the transport's thread, before the frame is queued: checks the signature of an envelope,
    // so the receiver, which takes the frames one at a time and in order, need not. The receiver
    // still decides (and refuses in order, as before); a frame this cannot read is left to it.
    void precheck(Inbound& in) noexcept {
        try {
            if (in.bytes.size() % 8 != 0 || in.bytes.empty() || !inbound_open.load()) return;
            kj::Array<capnp::word> copy;
            capnp::FlatArrayMessageReader reader(frame_words(in.bytes, copy), reader_options_for(in.bytes.size()));
            auto frame = reader.getRoot<wire::Frame>();
            if (frame.which() != wire::Frame::ENVELOPE || frame.getEnvelope().getKeyId() != in.peer.c_str()) return;
            std::shared_lock trust(trust_mutex);
            auto key = verify_keys.find(in.peer);
            if (key == verify_keys.end() || key->second.empty()) return;
            in.why = signature_outcome(in.peer, key->second, frame);
            in.checked = trust_epoch;
        } catch (...) {
            in.checked = 0; // malformed: the receiver refuses it
        }
    }

    // "" when one of `keys` (several while a key is being rotated) signed the frame, else why not.
    std::string signature_outcome(const std::string& peer, const std::vector<crypto::VerifyKey>& keys,
                                  const wire::Frame::Reader& frame) {
        std::string why;
        for (auto& k : keys)
            if ((why = check_signature(peer, k, frame)).empty()) break;
        return why;
    }

    void handle_frame(const std::string& peer, std::span<const uint8_t> bytes, uint64_t checked = 0,
                      const std::string& checked_why = {}) {
        if (bytes.size() % 8 != 0 || bytes.empty()) return refuse(peer, "", "", "frame is not a Cap'n Proto message");
        kj::Array<capnp::word> copy;
        capnp::FlatArrayMessageReader reader(frame_words(bytes, copy), reader_options_for(bytes.size()));
        auto frame = reader.getRoot<wire::Frame>();
        if (frame.which() == wire::Frame::ACK) {
            // The committer deletes them, many frames' worth per transaction.
            std::lock_guard lock(mutex);
            auto& ids = acked[peer];
            for (auto id : frame.getAck())
                if (id.size() == 16) ids.push_back(to_message_id(id));
            commit_cv.notify_one();
            return;
        }
        if (!inbound_open.load()) { // starting or stopping: taken once the plugins run
            std::lock_guard lock(mutex);
            if (held.size() < max_held && held_bytes + bytes.size() <= max_held_bytes) {
                held.emplace_back(peer, std::vector<uint8_t>(bytes.begin(), bytes.end()));
                held_bytes += bytes.size();
            } else if (held_dropped++ == dropped_at_close) {
                logger("links")->warn("inbound gate closed and full ({} frames, {} bytes held): envelopes are "
                                      "dropped unacknowledged until it opens; their senders send them again",
                                      held.size(), held_bytes);
            }
            return;
        }
        auto s = frame.getEnvelope();
        auto body = s.getBody();
        if (std::string(s.getKeyId()) != peer)
            return refuse(peer, "", "", "signed by '" + std::string(s.getKeyId()) + "' but the link is authenticated as '" + peer + "' (forged sender)");
        {
            std::shared_lock trust(trust_mutex);
            if (clock() >= trust_expires_ms)
                return refuse(peer, "", "", "the trust store expired at " + format_utc_ms(trust_expires_ms) +
                                                "; no frame is accepted until a renewed one is loaded");
            auto key = verify_keys.find(peer);
            if (key == verify_keys.end() || key->second.empty())
                return refuse(peer, "", "", "no trusted signing key for " + peer);
            // Checked on the transport's thread under this trust, or checked now.
            auto why = checked == trust_epoch ? checked_why : signature_outcome(peer, key->second, frame);
            if (!why.empty()) return refuse(peer, "", "", why);
        }

        // The signed body is canonical (one segment, no table); add a segment table to read it.
        auto flat = kj::heapArray<capnp::word>(body.size() / 8 + 1);
        uint32_t table[2] = {0, static_cast<uint32_t>(body.size() / 8)};
        memcpy(flat.begin(), table, 8);
        memcpy(flat.begin() + 1, body.begin(), body.size() / 8 * 8);
        std::shared_ptr<EnvelopeView> view; // handed on to the router with the bytes it reads
        try {
            view = std::make_shared<EnvelopeView>(EnvelopeView::decode(flat.begin(), flat.asBytes().size()));
        } catch (const EnvelopeError& e) {
            return refuse(peer, "", "", e.what());
        }
        auto env = view->get();
        auto id = view->id();
        std::string type = env.getType(), idhex = hex(id);
        if (env.getHopCount() > Router::kMaxHops) return refuse(peer, idhex, type, "hop limit exceeded");
        if (body.size() % 8 != 0) return refuse(peer, idhex, type, "signed body is not word-aligned");
        const bool memory = memory_peers.count(peer) > 0;
        bool duplicate = false;
        {
            std::lock_guard lock(mutex);
            if (in_progress.count(id)) return; // its completion will acknowledge
            duplicate = memory && memory_seen.contains(id);
        }
        if (duplicate || (!memory && dedup->seen(id))) {
            observe("duplicate", peer, idhex, type, "already taken: acknowledged again, not delivered again");
            send_ack(peer, id);
            return;
        }
        {
            std::lock_guard lock(mutex);
            in_progress.insert(id);
        }
        observe("accepted", peer, idhex, type, "from " + std::string(env.getFrom()));
        {
            // Every hop is a firewall: a relay applies its own policy to what it carries (so a
            // prefecture or J-LIS never carries what the law keeps between municipalities), and
            // the destination applies its policy before any plugin sees the message.
            bool relay = std::string(env.getTo()) != config.node_id;
            std::string why = policy ? policy(env) : "no access policy configured: denied by default";
            if (!why.empty()) {
                if (relay) why = config.node_id + " does not carry this message: " + why;
                // Custody is taken (acknowledged, recorded) and the sender is told why.
                router.fault(*view, RENKEI_ERR_DENIED, why, "purpose", "access policy");
                taken(peer, id);
                return;
            }
        }
        router.route(std::move(view), std::move(flat), [this, peer, id](int32_t status, const std::string&) {
            if (status == RENKEI_ERR_RETRY) { // host stopping: the sender keeps custody and retries
                std::lock_guard lock(mutex);
                in_progress.erase(id);
                return;
            }
            taken(peer, id);
        });
    }

    void commit_loop() {
        std::vector<Outgoing> batch;
        std::vector<std::pair<std::string, MessageId>> acks;
        std::map<std::string, std::vector<MessageId>> done;
        auto last_round = std::chrono::steady_clock::time_point{}; // when the previous round ended
        for (;;) {
            {
                std::unique_lock lock(mutex);
                commit_cv.wait(lock, [&] { return stopping || !to_commit.empty() || !to_ack.empty() || !acked.empty(); });
                // Group commit: a round costs a transaction, and a signature that the peer checks,
                // whatever its size. Under a steady flow below saturation rounds would carry a
                // message or two each and pay those per message (several times the CPU, and a
                // receiver that falls behind), so a small round that follows another within
                // kLinger waits up to kLinger for more. After a pause a round goes at once.
                if (to_commit.size() + to_ack.size() < kRoundEnough &&
                    std::chrono::steady_clock::now() - last_round < kLinger)
                    commit_cv.wait_for(lock, kLinger,
                                       [&] { return stopping || to_commit.size() + to_ack.size() >= kRoundEnough; });
                if (stopping) return; // acknowledgements not yet applied: those messages are sent again, and deduplicated
                batch.swap(to_commit);
                acks.swap(to_ack);
                done.swap(acked);
            }
            bool committed = true;
            if (!batch.empty() || !done.empty()) {
                size_t freed = 0, sent = 0;
                // Acknowledgements of messages in flight in memory; the rest are the outbox's.
                for (auto& [peer, ids] : done)
                    if (memory_peers.count(peer)) freed += release_in_flight(ids);
                // What peers acknowledged and what goes out now: one outbox transaction.
                std::vector<Outbox::Acks> released;
                for (auto& [peer, ids] : done)
                    if (!ids.empty()) released.push_back({peer, ids});
                size_t durable = batch.size();
                try {
                    sign_batches(batch);
                    auto now = clock();
                    if (!memory_peers.empty()) {
                        durable -= keep_in_flight(batch, now);
                        for (auto& o : batch)
                            if (o.in_memory) {
                                transport->send(o.hop, std::move(o.kept));
                                ++sent;
                            }
                    }
                    std::vector<OutboxPut> puts;
                    puts.reserve(durable);
                    for (auto& o : batch)
                        if (!o.in_memory)
                            // The body, not the frame: about half the bytes to write and check
                            // point, and the resend loop signs what it sends again.
                            puts.push_back(OutboxPut{o.hop, o.id, o.type, bytes_span(o.body), o.not_before,
                                                     o.not_before <= now});
                    if (!puts.empty() || !released.empty())
                        freed += outbox->commit(puts, released, now).acked; // held ones: the resend loop sends them when due
                    for (auto& o : batch)
                        if (!o.in_memory && o.not_before <= now) {
                            transport->send(o.hop, std::move(o.frame));
                            ++sent;
                        }
                } catch (const std::exception& e) {
                    // Acknowledgements not applied are harmless: those messages are sent again
                    // and deduplicated.
                    committed = durable == 0;
                    logger("links")->error("outbox commit of {} messages and {} acknowledgements failed: {}", durable,
                                           released.size(), e.what());
                }
                batch.clear();
                done.clear();
                {
                    std::lock_guard lock(mutex);
                    unacked -= std::min(unacked, freed);
                    unacked += sent;
                }
                room_cv.notify_all();
            }
            if (!committed && !acks.empty()) {
                // What these acks would release may be in the lost batch: keep custody with the
                // senders, whose retries bring the messages back.
                std::lock_guard lock(mutex);
                for (auto& [peer, id] : acks) in_progress.erase(id);
                acks.clear();
            }
            if (!acks.empty()) {
                std::vector<MessageId> ids, from_memory_peers;
                for (auto& [peer, id] : acks) (memory_peers.count(peer) ? from_memory_peers : ids).push_back(id);
                try {
                    if (!ids.empty()) dedup->first_time_batch(ids, clock());
                } catch (const std::exception& e) {
                    logger("links")->error("dedup commit failed: {}", e.what());
                }
                {
                    // Recorded, so no longer in progress: a retransmission that arrives after the
                    // acknowledgement below must find it in the dedup store, not be dropped silently.
                    std::lock_guard lock(mutex);
                    for (auto& id : from_memory_peers) memory_seen.insert(id);
                    for (auto& [peer, id] : acks) in_progress.erase(id);
                }
                std::map<std::string, std::vector<MessageId>> by_peer;
                for (auto& [peer, id] : acks) by_peer[peer].push_back(id);
                for (auto& [peer, list] : by_peer) {
                    capnp::MallocMessageBuilder mb(static_cast<unsigned>(kAckWords + 3 * list.size()));
                    auto out = mb.initRoot<wire::Frame>().initAck(static_cast<unsigned>(list.size()));
                    for (size_t i = 0; i < list.size(); ++i)
                        out.set(static_cast<unsigned>(i), kj::ArrayPtr<const kj::byte>(list[i].data(), list[i].size()));
                    transport->send(peer, flat_vector(mb));
                }
                acks.clear();
            }
            last_round = std::chrono::steady_clock::now();
        }
    }

    // Keeps the messages of `batch` for memory peers until they are acknowledged, within the
    // in-flight limits, and marks them in_memory with their frame in `kept`; the caller sends those
    // now and puts the others in the outbox. Returns how many it marked.
    size_t keep_in_flight(std::vector<Outgoing>& batch, int64_t now) {
        std::lock_guard lock(flight_mutex);
        Round round{++rounds_made, {}};
        size_t kept = 0;
        for (auto& o : batch) {
            if (o.not_before != 0 || !memory_peers.count(o.hop)) continue;
            auto [it, fresh] = in_flight.try_emplace(o.id);
            if (!fresh) { // the same id again: the one waiting stands
                o.kept = std::make_shared<const std::vector<uint8_t>>(std::move(o.frame));
                o.in_memory = true;
                ++kept;
                continue;
            }
            if (in_flight.size() > max_in_flight || in_flight_bytes + o.frame.size() > max_in_flight_bytes) {
                in_flight.erase(it); // no room: it goes to the outbox
                continue;
            }
            auto& f = it->second;
            f.hop = o.hop;
            f.type = std::move(o.type); // the caller sends what is kept here and has no more use for its type
            f.frame = std::make_shared<const std::vector<uint8_t>>(std::move(o.frame));
            o.kept = f.frame;
            f.queued_ms = now;
            f.round = round.number;
            in_flight_bytes += f.frame->size();
            round.ids.push_back(o.id);
            o.in_memory = true;
            ++kept;
        }
        schedule(std::move(round), 1, now);
        return kept;
    }

    // Requires flight_mutex. `round` comes due again after its `attempts`-th send, on the
    // outbox's back-off.
    void schedule(Round round, int attempts, int64_t now) {
        if (round.ids.empty()) return;
        std::uniform_real_distribution<double> unit(0.0, 1.0);
        flight_rounds.emplace(now + retry_delay_ms(outbox->retry_policy(), attempts, unit(flight_rng)), std::move(round));
    }

    // Forgets the acknowledged ids that were in flight in memory, leaving the others in `ids`.
    // Returns how many it forgot.
    size_t release_in_flight(std::vector<MessageId>& ids) {
        std::lock_guard lock(flight_mutex);
        return std::erase_if(ids, [&](const MessageId& id) {
            auto it = in_flight.find(id);
            if (it == in_flight.end()) return false;
            in_flight_bytes -= it->second.frame->size();
            in_flight.erase(it);
            return true;
        });
    }

    // Sends again what memory peers have not acknowledged in time; what used all its attempts
    // goes to the dead letters, like the outbox's. Returns the ids it put there.
    std::vector<MessageId> resend_in_flight(int64_t now) {
        const int max_attempts = outbox->retry_policy().max_attempts;
        std::vector<std::pair<std::string, Transport::SharedFrame>> again;
        std::vector<DeadLetter> dead;
        {
            std::lock_guard lock(flight_mutex);
            std::map<int, Round> next; // by the attempts made so far
            while (!flight_rounds.empty() && flight_rounds.begin()->first <= now) {
                auto due = flight_rounds.extract(flight_rounds.begin());
                for (auto& id : due.mapped().ids) {
                    auto it = in_flight.find(id);
                    if (it == in_flight.end() || it->second.round != due.mapped().number) continue;
                    auto& f = it->second;
                    if (f.attempts >= max_attempts) {
                        in_flight_bytes -= f.frame->size();
                        // Dead letters keep bodies, as the outbox does (replay puts them there).
                        std::vector<uint8_t> body;
                        try {
                            body = frame_body(*f.frame);
                        } catch (const std::exception& e) { // this host's own frame: never expected
                            logger("links")->error("message {}: its frame in flight is unreadable ({}); kept as "
                                                   "it is among the dead letters",
                                                   hex(id), e.what());
                            body = *f.frame;
                        }
                        dead.push_back(DeadLetter{id, std::move(f.hop), std::move(f.type), std::move(body),
                                                  f.attempts,
                                                  "no acknowledgement after " + std::to_string(f.attempts) +
                                                      " sends (delivery = \"memory\")",
                                                  f.queued_ms, now});
                        in_flight.erase(it);
                        continue;
                    }
                    auto& round = next[++f.attempts];
                    if (round.ids.empty()) round.number = ++rounds_made;
                    f.round = round.number;
                    round.ids.push_back(id);
                    again.emplace_back(f.hop, f.frame);
                }
            }
            for (auto& [attempts, round] : next) schedule(std::move(round), attempts, now);
        }
        for (auto& [peer, frame] : again) transport->send(peer, std::move(frame));
        std::vector<MessageId> ids;
        if (dead.empty()) return ids;
        try {
            outbox->add_dead_letters(dead);
            for (auto& d : dead) ids.push_back(d.id);
        } catch (const std::exception& e) {
            logger("links")->error("{} messages in flight in memory used all their attempts and could not be kept as "
                                   "dead letters, so they are lost: {}",
                                   dead.size(), e.what());
        }
        return ids;
    }

    // Signs and sends what the outbox has due (it keeps envelope bodies): batch peers' in Merkle
    // batches, the others' one by one. Returns the seqs sent. An entry that is not a whole
    // number of words cannot be an envelope: it becomes a dead letter saying so.
    std::vector<uint64_t> send_due(int64_t now) {
        auto due = outbox->due(now, 1000);
        std::vector<uint64_t> seqs;
        std::vector<Outgoing> out;
        out.reserve(due.size());
        for (auto& e : due) {
            if (e.bytes.empty() || e.bytes.size() % 8 != 0) {
                auto why = "damaged outbox entry: " + std::to_string(e.bytes.size()) +
                           " bytes is not a whole number of Cap'n Proto words";
                logger("links")->error("message {} to {}: {}", hex(e.id), e.peer, why);
                outbox->move_to_dead_letter(e.seq, why, now);
                continue;
            }
            Outgoing o{std::move(e.peer), e.id, std::move(e.type), kj::heapArray<capnp::word>(e.bytes.size() / 8), {}, {}};
            memcpy(o.body.begin(), e.bytes.data(), e.bytes.size());
            if (!batch_peers.count(o.hop)) o.frame = single_frame(bytes_span(o.body));
            out.push_back(std::move(o));
            seqs.push_back(e.seq);
        }
        sign_batches(out);
        for (auto& o : out) transport->send(o.hop, std::move(o.frame));
        return seqs;
    }

    // Forgets, about once an hour, the ids taken from durable peers longer ago than
    // [links] dedup_retention_days (in chunks: the receiver waits on the store a chunk at a time).
    // A round forgets at most kPruneRound; a larger backlog (a host that ran an older build, or a
    // shorter retention) goes on in the next rounds, so resends are never held up for long.
    void prune_dedup(int64_t now) {
        if (last_prune != INT64_MIN && now - last_prune < kPruneEveryMs) return;
        auto n = dedup->prune_older_than(now - config.links.dedup_retention_ms, kPruneRound);
        if (n < kPruneRound) last_prune = now;
        dedup_pruned.fetch_add(n, std::memory_order_relaxed);
        if (n > 0)
            logger("links")->info("the dedup store forgot {} message ids taken more than {} days ago", n,
                                  config.links.dedup_retention_ms / 86'400'000);
    }

    size_t in_flight_count() {
        std::lock_guard lock(flight_mutex);
        return in_flight.size();
    }

    // Records `id` as taken and acknowledges it to `peer` (batched by the committer).
    void taken(const std::string& peer, const MessageId& id) {
        std::lock_guard lock(mutex);
        to_ack.emplace_back(peer, id);
        if ((to_ack.size() == 1 && to_commit.empty()) || to_commit.size() + to_ack.size() == kRoundEnough)
            commit_cv.notify_one();
    }

    void receive_loop() {
        for (;;) {
            std::deque<Inbound> batch;
            {
                std::unique_lock lock(mutex);
                inbound_cv.wait(lock, [&] { return stopping || !inbound.empty(); });
                if (stopping) return;
                batch.swap(inbound);
                receiving = true;
            }
            {
                DeliveryWakes wakes; // the plugins' workers: woken a few times for the lot, not per frame
                for (auto& in : batch) {
                    try {
                        handle_frame(in.peer, in.bytes, in.checked, in.why);
                    } catch (const std::exception& e) {
                        refuse(in.peer, "", "", std::string("malformed frame: ") + e.what());
                    }
                }
            }
            std::lock_guard lock(mutex);
            receiving = false;
            idle_cv.notify_all();
        }
    }

    void resend_loop() {
        uint64_t rounds = 0;
        for (;;) {
            {
                std::unique_lock lock(mutex);
                if (stop_cv.wait_for(lock, std::chrono::milliseconds(100), [&] { return stopping; })) return;
            }
            try {
                auto now = clock();
                std::deque<std::pair<std::string, std::vector<uint8_t>>> again;
                {
                    std::lock_guard lock(parked_mutex);
                    again.swap(parked);
                    std::erase_if(outage_since, [&](auto& kv) {
                        return std::none_of(again.begin(), again.end(), [&](auto& p) { return p.first == kv.first; });
                    });
                    std::erase_if(again, [&](auto& p) { return now - outage_since[p.first] >= kParkMs; });
                }
                for (auto& [peer, frame] : again) transport->send(peer, std::move(frame));
                // What memory peers have not acknowledged in time, the outbox's entries out of attempts,
                // then what the outbox has due.
                auto dead = resend_in_flight(now);
                auto exhausted = outbox->dead_letter_exhausted(now);
                dead.insert(dead.end(), exhausted.begin(), exhausted.end());
                for (auto& id : dead)
                    logger("links")->error("message {} moved to dead letters after its last attempt", hex(id));
                auto seqs = send_due(now);
                if (!seqs.empty()) outbox->mark_sent(seqs, now);
                prune_dedup(now);
                if (++rounds % 10 == 0) { // resynchronise (an operator may replay dead letters)
                    size_t queued = outbox->size() - outbox->held(now) + in_flight_count();
                    std::lock_guard lock(mutex);
                    unacked = queued;
                    room_cv.notify_all();
                }
            } catch (const std::exception& e) {
                logger("links")->error("resend loop: {}", e.what());
            }
        }
    }
};

namespace {
constexpr const char* kOutboxLabel = "where=\"outbox\"";
constexpr int64_t kOutboxKeepsBodies = 1;
constexpr const char* kMemoryLabel = "where=\"memory\"";
constexpr const char* kInLabel = "direction=\"in\"";
constexpr const char* kOutLabel = "direction=\"out\"";
} // namespace

Links::Links(const HostConfig& config, std::shared_ptr<const NodeKeys> keys, Router& router, Metrics& metrics,
             std::function<int64_t()> clock)
    : impl_(std::make_unique<Impl>(config, keys, router, metrics, std::move(clock))) {}

Links::~Links() { stop(); }

void Links::set_observer(Observer o) { impl_->observer = std::move(o); }
void Links::set_policy(std::function<std::string(const schema::Envelope::Reader&)> check) {
    impl_->policy = std::move(check);
}

void Links::start() {
    auto& m = *impl_;
    std::filesystem::create_directories(m.config.data_dir);
    OutboxOptions oo;
    oo.retry.base_delay_ms = 5000;
    oo.retry.max_delay_ms = 10000;
    m.outbox = std::make_unique<Outbox>(m.config.data_dir / "outbox.db", oo);
    // Format 1: the outbox and its dead letters keep envelope bodies, signed when sent. Before it
    // they kept whole signed frames; such a file is converted once, all or nothing.
    if (auto format = m.outbox->bytes_format(); format > kOutboxKeepsBodies)
        throw std::runtime_error(m.outbox->path() + ": its entries are in format " + std::to_string(format) +
                                 ", newer than this build reads (" + std::to_string(kOutboxKeepsBodies) + ")");
    else if (format < kOutboxKeepsBodies)
        m.outbox->convert_bytes(kOutboxKeepsBodies, frame_body);
    // Only the links read and write the receiver's dedup store: exclusive, so the id lookup each
    // incoming message needs takes no file lock.
    m.dedup = std::make_unique<InboxDedup>(m.config.data_dir / "inbox.db", sqlite::OpenOptions{.exclusive = true});
    m.unacked = m.outbox->size();
    // What waits for a next hop's acknowledgement, on /metrics: in the outbox (durable links, held
    // messages, memory links past their limits) and in memory (delivery = "memory").
    m.metrics.gauge("renkei_links_unacknowledged", kOutboxLabel, [&m] { return static_cast<double>(m.outbox->size()); });
    m.metrics.gauge("renkei_links_unacknowledged", kMemoryLabel, [&m] { return static_cast<double>(m.in_flight_count()); });
    m.metrics.gauge("renkei_links_dedup_pruned", "",
                    [&m] { return static_cast<double>(m.dedup_pruned.load(std::memory_order_relaxed)); });

    TransportOptions to;
    to.node_id = m.config.node_id;
    auto keys = m.current_keys();
    to.curve_public = keys->curve_public;
    to.curve_secret.assign(reinterpret_cast<const char*>(keys->curve_secret.view().data()), keys->curve_secret.size());
    to.listen = m.config.listen;
    to.bundle_bytes = m.config.links.bundle_bytes;
    for (auto& p : m.config.peers)
        if (p.batch_signing) m.batch_peers.insert(p.node);
    for (auto& p : m.config.peers)
        if (p.memory_delivery) m.memory_peers.insert(p.node);
    if (!m.trust_set) { // keys straight from the [[peer]] tables
        std::map<std::string, PeerKeys> keys;
        for (auto& p : m.config.peers) {
            keys[p.node].curve.push_back(p.curve_public);
            if (!p.sign_public.empty()) keys[p.node].sign.push_back(p.sign_public);
        }
        m.apply_trust(keys, INT64_MAX);
    }
    m.transport = std::make_unique<Transport>(to, std::map<std::string, std::string>{});
    m.transport->set_trusted_keys(m.curve_keys);
    for (auto& p : m.config.peers)
        if (!p.endpoints.empty()) m.transport->add_peer(p.node, p.endpoints, p.curve_public);
    // What the transport moved since the host started: frames each way, the bundles that carried
    // some of those sent, and the bundles received that were malformed and dropped whole.
    auto transport_stat = [&m](uint64_t TransportStats::*field) {
        return [&m, field] { return static_cast<double>(m.transport->stats().*field); };
    };
    m.metrics.gauge("renkei_transport_frames", kInLabel, transport_stat(&TransportStats::frames_in));
    m.metrics.gauge("renkei_transport_frames", kOutLabel, transport_stat(&TransportStats::frames_out));
    m.metrics.gauge("renkei_transport_bundles", kOutLabel, transport_stat(&TransportStats::bundles_out));
    m.metrics.gauge("renkei_transport_bad_bundles", kInLabel, transport_stat(&TransportStats::bad_bundles));
    m.transport->on_receive([&m](const std::string& peer, std::span<const uint8_t> frame,
                                 const std::shared_ptr<const void>& holder) {
        Impl::Inbound in{peer, holder, frame, 0, {}};
        m.precheck(in);
        std::lock_guard lock(m.mutex);
        m.inbound.push_back(std::move(in));
        if (m.inbound.size() == 1) m.inbound_cv.notify_one();
    });
    m.transport->on_send_failure([&m](const std::string& peer, const std::string&, std::vector<uint8_t>& frame) {
        std::lock_guard lock(m.parked_mutex);
        if (m.parked.size() >= Impl::kMaxParked) return; // the outbox's back-off brings it later
        m.outage_since.try_emplace(peer, m.clock());
        m.parked.emplace_back(peer, std::move(frame));
    });
    m.transport->start();
    m.receiver = std::thread([&m] {
        name_thread("links-recv");
        m.receive_loop();
    });
    m.resender = std::thread([&m] {
        name_thread("links-resend");
        m.resend_loop();
    });
    m.committer = std::thread([&m] {
        name_thread("links-commit");
        m.commit_loop();
    });
}

void Links::stop() {
    auto& m = *impl_;
    m.metrics.remove_gauges_with_label(kOutboxLabel);
    m.metrics.remove_gauges_with_label(kMemoryLabel);
    m.metrics.remove_gauges_with_label(kInLabel);
    m.metrics.remove_gauges_with_label(kOutLabel);
    {
        std::lock_guard lock(m.mutex);
        if (m.stopping) return;
        m.stopping = true;
        m.commit_cv.notify_all();
        m.inbound_cv.notify_all();
        m.stop_cv.notify_all();
    }
    m.room_cv.notify_all();
    if (m.receiver.joinable()) m.receiver.join();
    if (m.resender.joinable()) m.resender.join();
    if (m.committer.joinable()) m.committer.join();
    if (m.transport) m.transport->stop();
    if (auto lost = m.in_flight_count())
        logger("links")->warn("{} messages sent with delivery = \"memory\" were not acknowledged before the stop; "
                              "they are not kept and are lost",
                              lost);
}

void Links::set_keys(std::shared_ptr<const NodeKeys> keys) {
    auto& m = *impl_;
    {
        std::lock_guard lock(m.keys_mutex);
        m.keys_now = keys;
    }
    if (m.transport)
        m.transport->set_own_curve(keys->curve_public,
                                   std::string(reinterpret_cast<const char*>(keys->curve_secret.view().data()),
                                               keys->curve_secret.size()));
}

void Links::set_inbound_open(bool open) {
    auto& m = *impl_;
    std::unique_lock lock(m.mutex);
    m.inbound_open = open;
    if (open) {
        // What was held goes first, in the order it arrived.
        while (!m.held.empty()) {
            auto bytes = std::make_shared<const std::vector<uint8_t>>(std::move(m.held.back().second));
            m.inbound.push_front(Impl::Inbound{std::move(m.held.back().first), bytes, *bytes, 0, {}});
            m.held.pop_back();
        }
        m.held_bytes = 0;
        if (m.held_dropped > m.dropped_at_close)
            logger("links")->warn("inbound gate open: {} envelopes were dropped while it was closed and full",
                                  m.held_dropped - m.dropped_at_close);
        m.dropped_at_close = m.held_dropped;
        if (!m.inbound.empty()) m.inbound_cv.notify_one();
    } else {
        m.idle_cv.wait(lock, [&] { return !m.receiving || m.stopping; });
    }
}

void Links::set_hold_limits(size_t frames, size_t bytes) {
    std::lock_guard lock(impl_->mutex);
    impl_->max_held = frames;
    impl_->max_held_bytes = bytes;
}

void Links::set_in_flight_limits(size_t messages, size_t bytes) {
    std::lock_guard lock(impl_->flight_mutex);
    impl_->max_in_flight = messages;
    impl_->max_in_flight_bytes = bytes;
}

Links::Held Links::held() const {
    std::lock_guard lock(impl_->mutex);
    return {impl_->held.size(), impl_->held_bytes, impl_->held_dropped};
}

Router::ForwardResult Links::forward(const EnvelopeView& envelope) { return impl_->forward(envelope); }
void Links::set_trust(const std::map<std::string, PeerKeys>& keys, int64_t expires_ms) {
    impl_->apply_trust(keys, expires_ms);
}
std::string Links::endpoint() const { return impl_->transport ? impl_->transport->endpoint() : ""; }
size_t Links::pending() const { return (impl_->outbox ? impl_->outbox->size() : 0) + impl_->in_flight_count(); }

} // namespace renkei
