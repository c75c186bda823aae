// Host-to-host links: ZeroMQ ROUTER (inbound) and DEALER (outbound) over TCP with CURVE on every
// link. A ZAP handler, bound before any CURVE server socket, admits only keys in the trust set and
// only when the client's routing id equals the node id its key is bound to; libzmq then stamps
// that node id on every frame ("User-Id"). start() proves that an unknown key is refused and
// refuses to run otherwise (a CURVE server without a ZAP handler accepts anyone).
//
// Threading: one I/O thread owns every socket. send() may be called from any thread; frames are
// handed over in batches. on_receive runs on the I/O thread and must not block.
//
// Bundles (frame_bundle.hpp): frames queued for one peer in the same batch go out as one ZeroMQ
// message of up to bundle_bytes. A receiver takes a bundle apart and hands on its frames one by
// one, each as if it had come alone; a malformed bundle is dropped whole.
#pragma once

#include <zmq.hpp>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace renkei {

struct TransportOptions {
    std::string node_id;
    std::string curve_public; // Z85
    std::string curve_secret; // Z85
    std::string listen;       // "tcp://127.0.0.1:0" (port 0: any free port), empty: no inbound links
    int64_t max_message_bytes = 16 << 20;
    int heartbeat_ms = 1000;        // ZMTP PING interval; a silent peer is dropped after 3 intervals
    int reconnect_ms = 100;         // first reconnect interval, doubling up to reconnect_max_ms
    int reconnect_max_ms = 5000;
    int hwm = 100000;               // messages queued per peer before send() reports failure
    // Frames for one peer are sent together in bundles of at most this many bytes (at most
    // max_message_bytes); 0 sends every frame alone, as a build before bundles did (and a build
    // that reads no bundles expects). Receiving always accepts both.
    size_t bundle_bytes = 128 << 10;
    bool skip_zap_for_test = false; // test hook: start without a ZAP handler (start() must refuse)
};

struct TransportStats {
    uint64_t frames_in = 0, frames_out = 0, bytes_in = 0, bytes_out = 0; // frames, whether bundled or not
    uint64_t auth_failures = 0, send_failures = 0;
    uint64_t bundles_out = 0; // ZeroMQ messages that carried two frames or more
    uint64_t bad_bundles = 0; // malformed bundles received and dropped
};

class Transport {
public:
    // Called on the I/O thread with the authenticated node id of the sender and the frame (valid
    // during the call only).
    using Receiver = std::function<void(const std::string& peer, const uint8_t* frame, size_t size)>;
    // The same, with what holds the frame's bytes (the ZeroMQ message it came in, alone or in a
    // bundle): a receiver that keeps `holder` may read the frame after the call, without a copy.
    using HoldingReceiver = std::function<void(const std::string& peer, std::span<const uint8_t> frame,
                                               const std::shared_ptr<const void>& holder)>;
    // Called on the I/O thread when a frame could not be queued to `peer` (no link, HWM reached).
    // A frame that could not be handed to the peer's link (no live connection yet, queue full):
    // the callback may take `frame` (move from it) to try again later.
    using SendFailure = std::function<void(const std::string& peer, const std::string& why, std::vector<uint8_t>& frame)>;

    Transport(TransportOptions options, std::map<std::string, std::string> trusted_curve_keys);
    ~Transport();
    Transport(const Transport&) = delete;
    Transport& operator=(const Transport&) = delete;

    void on_receive(Receiver r) { receiver_ = std::move(r); }
    void on_receive(HoldingReceiver r) { holding_receiver_ = std::move(r); } // instead of a Receiver
    void on_send_failure(SendFailure f) { send_failure_ = std::move(f); }

    // Binds (after the ZAP handler), runs the self-test, connects the peers, starts the I/O thread.
    // Throws std::runtime_error with the reason when anything fails.
    void start();
    void stop();

    // An outbound link to `node_id` at `endpoints` (primary first, spares after; a DEALER connects
    // to all, and with ZMQ_IMMEDIATE frames go only to live connections, so a dead primary fails
    // over to a spare). Call before start().
    void add_peer(const std::string& node_id, const std::vector<std::string>& endpoints,
                  const std::string& server_curve_public);

    // A frame the caller also keeps (to send again until it is acknowledged): shared, not copied.
    using SharedFrame = std::shared_ptr<const std::vector<uint8_t>>;

    // Queues a frame for `peer`: through our DEALER to it, or back through the ROUTER when it is
    // connected to us. Thread-safe; never blocks.
    void send(const std::string& peer, std::vector<uint8_t> frame);
    void send(const std::string& peer, SharedFrame frame);

    // Replaces the trusted keys (rotation, revocation). New handshakes use the new set at once;
    // existing connections of a removed key are closed by disconnecting and reconnecting is
    // refused (the ROUTER drops them at the next heartbeat timeout at the latest).
    void set_trust(std::map<std::string, std::string> trusted_curve_keys);
    // The same with several keys per node (during a rotation): Z85 key -> node id. Frames from a
    // connection whose key is no longer trusted are dropped at once; dialled peers are redialled
    // with a trusted key of theirs, or hung up when none is left.
    void set_trusted_keys(std::map<std::string, std::string> key_to_node);

    // Replaces this node's own CURVE key pair (rotation without a restart). The I/O thread binds
    // the listening socket again on the same endpoint with the new key (connected peers reconnect
    // and need the new server key from their trust store), repeats the ZAP self-test, and redials
    // every dialled link with the new client key. Returns at once.
    void set_own_curve(const std::string& curve_public, const std::string& curve_secret);

    // The bound endpoint with its real port (after start()).
    std::string endpoint() const { return bound_; }
    TransportStats stats() const;

private:
    void zap_loop();
    void io_loop();
    void self_test();
    void configure(zmq::socket_t& s) const;
    struct Peer;
    void dial(Peer& peer);
    std::unique_ptr<zmq::socket_t> listen_on(const std::string& endpoint);
    void redial_untrusted();
    void rekey_self(); // on the I/O thread: apply own_pending_
    bool key_trusted_for(const std::string& key, const std::string& node) const;

    TransportOptions options_;
    zmq::context_t ctx_;
    std::unique_ptr<zmq::socket_t> zap_;
    std::unique_ptr<zmq::socket_t> router_;
    struct Peer {
        std::vector<std::string> endpoints;
        std::string server_key;
        std::unique_ptr<zmq::socket_t> dealer;
    };
    std::map<std::string, Peer> peers_;
    std::string bound_;

    mutable std::mutex trust_mutex_;
    std::map<std::string, std::string> key_to_node_; // Z85 CURVE key -> node id
    std::atomic<bool> rekey_{false};
    std::mutex own_mutex_;
    std::optional<std::pair<std::string, std::string>> own_pending_; // new (public, secret), Z85

    std::mutex queue_mutex_;
    std::deque<std::pair<std::string, SharedFrame>> queue_;
    int wake_fd_ = -1;

    Receiver receiver_;
    HoldingReceiver holding_receiver_;
    SendFailure send_failure_;
    std::atomic<bool> running_{false};
    std::atomic<uint64_t> frames_in_{0}, frames_out_{0}, bytes_in_{0}, bytes_out_{0}, auth_failures_{0},
        send_failures_{0}, bundles_out_{0}, bad_bundles_{0};
    std::thread zap_thread_, io_thread_;
};

} // namespace renkei
