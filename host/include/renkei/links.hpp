// The host's links to other hosts: next-hop routing, signing, custody and acknowledgement.
//
// Sending (the Router's forwarder): the envelope goes to the peer that is its destination, or to
// the first peer whose `reaches` covers it; its hop count is incremented, its canonical bytes are
// signed with this node's Ed25519 key, and the signed frame is committed to the durable outbox
// before it is handed to the transport. It is resent with back-off until the peer acknowledges.
//
// Receiving: a frame is accepted only if (1) the signature's key id is the node the CURVE link
// authenticated (a relay cannot speak for another host), (2) the Ed25519 signature over the body
// verifies with that node's trusted key, (3) the body is a well-formed envelope within the hop
// limit, and (4) its id was not taken before (InboxDedup, persistent). Accepted envelopes are
// routed; the sender is acknowledged once this host has taken custody (delivered to a plugin,
// committed to its own outbox for the next hop, or answered with a Fault). A duplicate of a
// message already taken is acknowledged again and dropped; every refusal is reported through the
// observer so it is audited.
#pragma once

#include <renkei/config.hpp>
#include <renkei/envelope.hpp>
#include <renkei/keys.hpp>
#include <renkei/metrics.hpp>
#include <renkei/router.hpp>

#include <map>
#include <memory>
#include <vector>
#include <string>

namespace renkei {

// The keys a peer may use: several of each while one is being rotated.
struct PeerKeys {
    std::vector<std::string> curve; // Z85
    std::vector<std::string> sign;  // hex Ed25519
};

class Links {
public:
    // event: "refused", "duplicate", "accepted" (from `peer`), or "held" (to `peer`, waiting for
    // the operating window); detail: the reason, the sender, or where and until when.
    using Observer = std::function<void(const std::string& event, const std::string& peer,
                                        const std::string& message_id, const std::string& type,
                                        const std::string& detail)>;

    Links(const HostConfig& config, std::shared_ptr<const NodeKeys> keys, Router& router, Metrics& metrics,
          std::function<int64_t()> clock);
    ~Links();

    void set_observer(Observer o);
    // Decides whether an envelope for this node, arriving from another host, may reach a plugin.
    // Returns "" to allow, else the reason for the refusal. Unset: everything is refused.
    void set_policy(std::function<std::string(const schema::Envelope::Reader&)> check);
    // Starts the transport (ZAP self-test included) and the retry loop. Throws on failure.
    void start();
    void stop();

    // This node's new keys (rotation without a restart): what is signed from now on is signed with
    // the new signing key, and the transport listens and dials with the new CURVE key pair.
    void set_keys(std::shared_ptr<const NodeKeys> keys);

    // Whether envelopes from other hosts are taken now (acknowledgements always are). Closed, an
    // arriving envelope is held unacknowledged (up to a bound; past it the sender's outbox sends it
    // again later) and taken in order once opened: a host opens it only after its plugins are
    // running and closes it before it stops them, so nothing is refused or lost as "no plugin
    // handles this type" while it starts or stops. Closing waits until the frame being taken is
    // done. Open by default.
    void set_inbound_open(bool open);
    // What a closed gate holds at most: past `frames` frames or `bytes` bytes an arriving envelope
    // is dropped unacknowledged, and its sender's outbox sends it again. Default 65,536 frames and
    // 256 MiB: peers with backlogs of large batches must not fill the memory of a starting host.
    void set_hold_limits(size_t frames, size_t bytes);
    struct Held {
        size_t frames = 0, bytes = 0; // held now
        uint64_t dropped = 0;         // dropped by the closed gate since start
    };
    Held held() const;

    // What links with delivery = "memory" may keep in memory awaiting acknowledgement; past it a
    // message to such a peer waits in the outbox like a durable link's (a peer that is down must
    // not fill the memory of a relay). Default 65,536 messages and 256 MiB.
    void set_in_flight_limits(size_t messages, size_t bytes);

    // Replaces the peers' trusted keys and the trust store's expiry (before start: instead of
    // the keys in [[peer]]; after: takes effect for the next frame and handshake).
    void set_trust(const std::map<std::string, PeerKeys>& keys, int64_t expires_ms);

    // Router forwarder: "" when taken into the outbox, else why it cannot be routed.
    Router::ForwardResult forward(const EnvelopeView& envelope);

    // The bound transport endpoint (after start), e.g. "tcp://127.0.0.1:40123".
    std::string endpoint() const;
    // Messages waiting for an acknowledgement.
    size_t pending() const;

    struct Impl;

private:
    std::unique_ptr<Impl> impl_;
};

} // namespace renkei
