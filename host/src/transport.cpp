#include <renkei/transport.hpp>

#include <renkei/frame_bundle.hpp>
#include <renkei/log.hpp>

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <set>
#include <thread>

namespace renkei {
namespace {
using Clock = std::chrono::steady_clock;
constexpr const char* kZapEndpoint = "inproc://zeromq.zap.01";
constexpr const char* kZapDomain = "renkei";

std::string z85(const uint8_t* key32) {
    char out[41];
    zmq_z85_encode(out, key32, 32);
    return out;
}
} // namespace

Transport::Transport(TransportOptions options, std::map<std::string, std::string> trusted)
    : options_(std::move(options)), ctx_(1) {
    for (auto& [node, key] : trusted) key_to_node_[key] = node;
    wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wake_fd_ < 0) throw std::runtime_error("eventfd failed");
}

Transport::~Transport() {
    stop();
    close(wake_fd_);
}

void Transport::configure(zmq::socket_t& s) const {
    s.set(zmq::sockopt::linger, 200);
    s.set(zmq::sockopt::maxmsgsize, options_.max_message_bytes);
    s.set(zmq::sockopt::heartbeat_ivl, options_.heartbeat_ms);
    s.set(zmq::sockopt::heartbeat_timeout, options_.heartbeat_ms * 3);
    s.set(zmq::sockopt::heartbeat_ttl, options_.heartbeat_ms * 3);
    s.set(zmq::sockopt::sndhwm, options_.hwm);
    s.set(zmq::sockopt::rcvhwm, options_.hwm);
    s.set(zmq::sockopt::reconnect_ivl, options_.reconnect_ms);
    s.set(zmq::sockopt::reconnect_ivl_max, options_.reconnect_max_ms);
}

void Transport::add_peer(const std::string& node_id, const std::vector<std::string>& endpoints,
                         const std::string& server_curve_public) {
    peers_[node_id] = Peer{endpoints, server_curve_public, nullptr};
}

void Transport::set_trust(std::map<std::string, std::string> trusted) {
    std::map<std::string, std::string> by_key;
    for (auto& [node, key] : trusted) by_key[key] = node;
    set_trusted_keys(std::move(by_key));
}

void Transport::set_trusted_keys(std::map<std::string, std::string> key_to_node) {
    {
        std::lock_guard lock(trust_mutex_);
        key_to_node_ = std::move(key_to_node);
    }
    rekey_ = true;
    uint64_t one = 1;
    (void)!write(wake_fd_, &one, sizeof one);
}

bool Transport::key_trusted_for(const std::string& key, const std::string& node) const {
    std::lock_guard lock(trust_mutex_);
    auto it = key_to_node_.find(key);
    return it != key_to_node_.end() && it->second == node;
}

TransportStats Transport::stats() const {
    return TransportStats{frames_in_.load(),     frames_out_.load(),    bytes_in_.load(),
                          bytes_out_.load(),     auth_failures_.load(), send_failures_.load(),
                          bundles_out_.load(),   bad_bundles_.load()};
}

// ZAP (RFC 27): admits a CURVE client only when its long-term key is trusted, and names it.
void Transport::zap_loop() {
    auto log = logger("transport");
    while (running_) {
        zmq::pollitem_t item{zap_->handle(), 0, ZMQ_POLLIN, 0};
        if (zmq::poll(&item, 1, std::chrono::milliseconds(100)) == 0) continue;
        std::vector<zmq::message_t> req;
        while (true) {
            zmq::message_t part;
            if (!zap_->recv(part, zmq::recv_flags::dontwait)) break;
            bool more = part.more();
            req.push_back(std::move(part));
            if (!more) break;
        }
        if (req.size() < 6) continue; // malformed: libzmq never sends this
        std::string version = req[0].to_string(), request_id = req[1].to_string();
        std::string domain = req[2].to_string(), address = req[3].to_string();
        std::string mechanism = req[5].to_string();
        std::string status = "400", text = "unknown key", user;
        if (version != "1.0") {
            text = "bad ZAP version";
        } else if (mechanism != "CURVE" || req.size() < 7 || req[6].size() != 32) {
            text = "CURVE required";
        } else if (domain != kZapDomain) {
            text = "wrong ZAP domain";
        } else {
            std::string key = z85(static_cast<const uint8_t*>(req[6].data()));
            std::lock_guard lock(trust_mutex_);
            if (auto it = key_to_node_.find(key); it != key_to_node_.end()) {
                status = "200";
                text = "OK";
                user = it->second;
            }
        }
        if (status != "200") {
            auth_failures_.fetch_add(1);
            log->warn("refused a {} handshake from {}: {}", mechanism, address, text);
        }
        // Metadata (ZMTP property list): the client's key, so every frame can be checked against
        // the trust set as it is now (a key revoked after the handshake stops working at once).
        std::string metadata;
        if (status == "200") {
            static const std::string name = "X-Curve-Key";
            std::string key = z85(static_cast<const uint8_t*>(req[6].data()));
            metadata.push_back(static_cast<char>(name.size()));
            metadata += name;
            uint32_t n = static_cast<uint32_t>(key.size());
            metadata.push_back(static_cast<char>(n >> 24));
            metadata.push_back(static_cast<char>(n >> 16));
            metadata.push_back(static_cast<char>(n >> 8));
            metadata.push_back(static_cast<char>(n));
            metadata += key;
        }
        std::vector<zmq::const_buffer> reply{zmq::str_buffer("1.0"), zmq::buffer(request_id),
                                             zmq::buffer(status), zmq::buffer(text), zmq::buffer(user),
                                             zmq::buffer(metadata)};
        for (size_t i = 0; i < reply.size(); ++i)
            zap_->send(reply[i], i + 1 < reply.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
    }
}

void Transport::self_test() {
    // A throw-away client with a key nobody trusts must not get a frame through.
    char pub[41], sec[41];
    zmq_curve_keypair(pub, sec);
    uint64_t before = auth_failures_.load(); // before connecting: the refusal may come at once
    zmq::socket_t probe(ctx_, zmq::socket_type::dealer);
    probe.set(zmq::sockopt::linger, 0);
    probe.set(zmq::sockopt::curve_serverkey, options_.curve_public);
    probe.set(zmq::sockopt::curve_publickey, std::string(pub));
    probe.set(zmq::sockopt::curve_secretkey, std::string(sec));
    probe.connect(bound_);
    probe.send(zmq::str_buffer("renkei self-test probe"), zmq::send_flags::dontwait);
    auto deadline = Clock::now() + std::chrono::seconds(20); // generous: a loaded machine is slow, not wrong
    bool refused = false, delivered = false;
    while (Clock::now() < deadline && !refused && !delivered) {
        zmq::pollitem_t item{router_->handle(), 0, ZMQ_POLLIN, 0};
        if (zmq::poll(&item, 1, std::chrono::milliseconds(20)) > 0) {
            std::vector<zmq::message_t> parts;
            while (true) {
                zmq::message_t m;
                if (!router_->recv(m, zmq::recv_flags::dontwait)) break;
                bool more = m.more();
                parts.push_back(std::move(m));
                if (!more) break;
            }
            // A trusted peer may already be (re)connecting and resending: its frames carry the
            // node id the ZAP handler gave them and are dropped here (the sender's outbox resends
            // them). Only a frame without that stamp proves that an unknown key got through.
            const char* user = parts.size() >= 2 ? zmq_msg_gets(parts[1].handle(), "User-Id") : nullptr;
            if (user == nullptr || *user == '\0') delivered = true;
        }
        refused = auth_failures_.load() > before;
    }
    probe.close();
    if (delivered)
        throw std::runtime_error("transport self-test failed: a CURVE client with an unknown key got a frame "
                                 "through " + bound_ + " (no ZAP handler?); refusing to start");
    if (!refused)
        throw std::runtime_error("transport self-test failed: the ZAP handler was never consulted for an "
                                 "unknown key on " + bound_ + "; refusing to start");
    auth_failures_.fetch_sub(1); // the probe is not an attack
}

void Transport::start() {
    auto log = logger("transport");
    running_ = true;
    if (!options_.skip_zap_for_test) {
        zap_ = std::make_unique<zmq::socket_t>(ctx_, zmq::socket_type::rep);
        zap_->bind(kZapEndpoint); // must exist before any CURVE server socket is bound
        zap_thread_ = std::thread([this] {
            name_thread("zap");
            zap_loop();
        });
    }
    try {
        if (!options_.listen.empty()) {
            router_ = listen_on(options_.listen);
            bound_ = router_->get(zmq::sockopt::last_endpoint);
            self_test();
            log->info("{} listening on {} (CURVE, ZAP self-test passed)", options_.node_id, bound_);
        }
        for (auto& [node, peer] : peers_) dial(peer);
    } catch (...) {
        running_ = false;
        if (zap_thread_.joinable()) zap_thread_.join();
        throw;
    }
    io_thread_ = std::thread([this] {
        name_thread("transport-io");
        io_loop();
    });
}

// The listening CURVE server socket with this node's key, bound to `endpoint`.
std::unique_ptr<zmq::socket_t> Transport::listen_on(const std::string& endpoint) {
    auto r = std::make_unique<zmq::socket_t>(ctx_, zmq::socket_type::router);
    configure(*r);
    r->set(zmq::sockopt::curve_server, 1);
    r->set(zmq::sockopt::curve_secretkey, options_.curve_secret);
    r->set(zmq::sockopt::zap_domain, kZapDomain);
    r->set(zmq::sockopt::router_mandatory, 1);
    r->bind(endpoint);
    return r;
}

void Transport::dial(Peer& peer) {
    peer.dealer = std::make_unique<zmq::socket_t>(ctx_, zmq::socket_type::dealer);
    configure(*peer.dealer);
    peer.dealer->set(zmq::sockopt::immediate, 1); // only to live connections: fail over to spares
    peer.dealer->set(zmq::sockopt::curve_serverkey, peer.server_key);
    peer.dealer->set(zmq::sockopt::curve_publickey, options_.curve_public);
    peer.dealer->set(zmq::sockopt::curve_secretkey, options_.curve_secret);
    for (auto& ep : peer.endpoints) peer.dealer->connect(ep);
}

// After a trust change: a dialled peer whose server key is no longer trusted is redialled with
// one that is (rotation), or hung up when none is left (revocation).
void Transport::redial_untrusted() {
    auto log = logger("transport");
    for (auto& [node, peer] : peers_) {
        if (key_trusted_for(peer.server_key, node)) continue;
        std::string replacement;
        {
            std::lock_guard lock(trust_mutex_);
            for (auto& [key, owner] : key_to_node_)
                if (owner == node) replacement = key;
        }
        if (peer.dealer) {
            peer.dealer->set(zmq::sockopt::linger, 0);
            peer.dealer.reset();
        }
        if (replacement.empty()) {
            log->warn("link to {} closed: its key is no longer trusted", node);
            continue;
        }
        peer.server_key = replacement;
        dial(peer);
        log->info("link to {} redialled with its new key", node);
    }
}

void Transport::set_own_curve(const std::string& curve_public, const std::string& curve_secret) {
    {
        std::lock_guard lock(own_mutex_);
        own_pending_ = std::make_pair(curve_public, curve_secret);
    }
    uint64_t one = 1;
    (void)!write(wake_fd_, &one, sizeof one);
}

void Transport::rekey_self() {
    std::optional<std::pair<std::string, std::string>> next;
    {
        std::lock_guard lock(own_mutex_);
        next.swap(own_pending_);
    }
    if (!next) return;
    auto log = logger("transport");
    options_.curve_public = next->first;
    options_.curve_secret = next->second;
    if (router_) {
        router_->set(zmq::sockopt::linger, 0);
        router_.reset(); // closing releases the port (asynchronously: the bind below retries)
        auto deadline = Clock::now() + std::chrono::seconds(10);
        for (;;) {
            try {
                router_ = listen_on(bound_);
                break;
            } catch (const zmq::error_t& e) {
                if (Clock::now() > deadline) {
                    log->critical("could not listen on {} again with the new key: {}; inbound links are down", bound_,
                                  e.what());
                    break;
                }
                std::this_thread::sleep_for(std::chrono::milliseconds(20));
            }
        }
        if (router_) {
            try {
                self_test();
            } catch (const std::exception& e) {
                log->critical("{}; closing the listener", e.what());
                router_.reset();
            }
        }
    }
    for (auto& [node, peer] : peers_) {
        if (!peer.dealer) continue;
        peer.dealer->set(zmq::sockopt::linger, 0);
        dial(peer);
    }
    log->info("{} uses its new CURVE key {} (listening on {} again, {} link(s) redialled)", options_.node_id,
              options_.curve_public, bound_.empty() ? "nothing" : bound_, peers_.size());
}

void Transport::stop() {
    if (!running_.exchange(false)) return;
    uint64_t one = 1;
    (void)!write(wake_fd_, &one, sizeof one);
    if (io_thread_.joinable()) io_thread_.join();
    if (zap_thread_.joinable()) zap_thread_.join();
    for (auto& [node, peer] : peers_) peer.dealer.reset();
    router_.reset();
    zap_.reset();
}

void Transport::send(const std::string& peer, std::vector<uint8_t> frame) {
    send(peer, std::make_shared<const std::vector<uint8_t>>(std::move(frame)));
}

void Transport::send(const std::string& peer, SharedFrame frame) {
    std::lock_guard lock(queue_mutex_);
    bool was_empty = queue_.empty();
    queue_.emplace_back(peer, std::move(frame));
    if (was_empty) {
        uint64_t one = 1;
        (void)!write(wake_fd_, &one, sizeof one);
    }
}

void Transport::io_loop() {
    auto log = logger("transport");
    // Routing ids of peers connected to our ROUTER, learnt from their authenticated frames.
    std::map<std::string, std::string> inbound_route;
    std::vector<zmq::pollitem_t> items;
    std::vector<std::string> item_peer; // "" for the router
    auto build_items = [&] {
        items.clear();
        item_peer.clear();
        if (router_) {
            items.push_back({router_->handle(), 0, ZMQ_POLLIN, 0});
            item_peer.push_back("");
        }
        for (auto& [node, peer] : peers_) {
            if (!peer.dealer) continue;
            items.push_back({peer.dealer->handle(), 0, ZMQ_POLLIN, 0});
            item_peer.push_back(node);
        }
        items.push_back({nullptr, wake_fd_, ZMQ_POLLIN, 0});
    };
    build_items();

    const std::vector<uint8_t>* current = nullptr;
    auto fail = [&](const std::string& peer, const std::string& why) {
        send_failures_.fetch_add(1);
        if (send_failure_ && current) {
            std::vector<uint8_t> frame(*current); // the sender may still hold the shared one
            send_failure_(peer, why, frame);
        }
    };

    std::deque<std::pair<std::string, SharedFrame>> batch;
    // A listening node can answer a peer that dialled it only once it has the peer's routing id,
    // which it learns from a frame. So each dialled link says hello (an empty frame) as soon as it
    // is up and every second after (a restarted listener learns it again), and a node can send
    // first over a link the other side dialled.
    auto next_hello = std::chrono::steady_clock::now();
    std::set<std::string> greeted;
    auto say_hello = [&] {
        auto now = std::chrono::steady_clock::now();
        bool all = now >= next_hello;
        for (auto& [node, peer] : peers_) {
            if (!peer.dealer || (!all && greeted.count(node))) continue;
            try {
                if (peer.dealer->send(zmq::const_buffer(nullptr, 0), zmq::send_flags::dontwait)) greeted.insert(node);
            } catch (const zmq::error_t&) {
            }
        }
        if (all) next_hello = now + std::chrono::seconds(1);
    };
    while (running_) {
        if (rekey_.exchange(false)) {
            redial_untrusted();
            build_items();
            greeted.clear();
        }
        bool own_key_changed;
        {
            std::lock_guard lock(own_mutex_);
            own_key_changed = own_pending_.has_value();
        }
        if (own_key_changed) {
            rekey_self();
            inbound_route.clear(); // routing ids of the old listening socket; hellos teach them again
            build_items();
            greeted.clear();
        }
        say_hello();
        zmq::poll(items.data(), items.size(), std::chrono::milliseconds(100));
        if (items.back().revents & ZMQ_POLLIN) {
            uint64_t n;
            (void)!read(wake_fd_, &n, sizeof n);
        }
        {
            std::lock_guard lock(queue_mutex_);
            batch.swap(queue_);
        }
        // Each peer's frames in the order they were queued, in bundles of up to `cap` bytes; a
        // frame alone (or too large to share) goes as it is.
        const size_t cap = std::min<size_t>(options_.bundle_bytes, static_cast<size_t>(options_.max_message_bytes));
        std::map<std::string, std::vector<const std::vector<uint8_t>*>> by_peer;
        for (auto& [peer, frame] : batch) by_peer[peer].push_back(frame.get());
        for (auto& [peer, frames] : by_peer) {
            for (size_t i = 0; i < frames.size();) {
                std::vector<const std::vector<uint8_t>*> group{frames[i]};
                size_t bytes = frame_bundle::kHeader + frame_bundle::kFrameHeader + frame_bundle::padded(frames[i]->size());
                while (i + group.size() < frames.size()) {
                    size_t more = frame_bundle::kFrameHeader + frame_bundle::padded(frames[i + group.size()]->size());
                    if (bytes + more > cap) break;
                    bytes += more;
                    group.push_back(frames[i + group.size()]);
                }
                // Written straight into the message ZeroMQ sends (and takes), not copied into it.
                const bool bundled = group.size() > 1;
                zmq::message_t wire;
                if (bundled) {
                    wire.rebuild(frame_bundle::encoded_size(group));
                    frame_bundle::encode_into(group, static_cast<uint8_t*>(wire.data()));
                } else {
                    wire.rebuild(frames[i]->data(), frames[i]->size());
                }
                std::string why;
                try {
                    if (auto it = peers_.find(peer); it != peers_.end()) {
                        if (!it->second.dealer)
                            why = "no trusted key for " + peer;
                        else if (!it->second.dealer->send(wire, zmq::send_flags::dontwait).has_value())
                            why = "no live connection to " + peer + " (or its queue is full)";
                    } else if (auto r = inbound_route.find(peer); r != inbound_route.end() && router_) {
                        router_->send(zmq::buffer(r->second), zmq::send_flags::sndmore | zmq::send_flags::dontwait);
                        if (!router_->send(wire, zmq::send_flags::dontwait).has_value()) why = "queue to " + peer + " is full";
                    } else {
                        why = "no link to " + peer;
                    }
                } catch (const zmq::error_t& e) {
                    why = std::string("link to ") + peer + ": " + e.what(); // EHOSTUNREACH: it went away
                }
                if (bundled && why.empty()) bundles_out_.fetch_add(1, std::memory_order_relaxed);
                for (size_t k = 0; k < group.size(); ++k) {
                    if (!why.empty()) {
                        current = frames[i + k];
                        fail(peer, why);
                    } else {
                        frames_out_.fetch_add(1, std::memory_order_relaxed);
                        bytes_out_.fetch_add(frames[i + k]->size(), std::memory_order_relaxed);
                    }
                }
                i += group.size();
            }
        }
        batch.clear();

        for (size_t i = 0; i + 1 < items.size(); ++i) {
            if (!(items[i].revents & ZMQ_POLLIN)) continue;
            zmq::socket_ref s(zmq::from_handle, items[i].socket);
            for (int burst = 0; burst < 1024; ++burst) {
                zmq::message_t first;
                if (!s.recv(first, zmq::recv_flags::dontwait)) break;
                std::string peer = item_peer[i];
                zmq::message_t payload;
                if (peer.empty()) { // ROUTER: [routing id][payload]
                    if (!first.more() || !s.recv(payload, zmq::recv_flags::dontwait)) continue;
                    while (payload.more()) { // a peer may not send more parts than one payload
                        zmq::message_t extra;
                        if (!s.recv(extra, zmq::recv_flags::dontwait)) break;
                        payload.move(extra);
                    }
                    const char* user = zmq_msg_gets(payload.handle(), "User-Id"); // NULL when absent
                    if (user == nullptr || *user == '\0') {
                        auth_failures_.fetch_add(1);
                        continue; // never happens with the ZAP handler; never trust it anyway
                    }
                    const char* key = zmq_msg_gets(payload.handle(), "X-Curve-Key");
                    if (key == nullptr || !key_trusted_for(key, user)) {
                        auth_failures_.fetch_add(1);
                        log->warn("frame from {} dropped: the key it connected with is no longer trusted", user);
                        continue;
                    }
                    peer = user;
                    inbound_route[peer] = first.to_string();
                } else {
                    payload.move(first);
                }
                if (payload.size() == 0) continue; // a hello: the route is what it was for
                // A holding receiver shares the message its frames lie in instead of copying them.
                std::shared_ptr<const zmq::message_t> holder;
                if (holding_receiver_) holder = std::make_shared<const zmq::message_t>(std::move(payload));
                const zmq::message_t& message = holder ? *holder : payload;
                auto hand_on = [&](const uint8_t* frame, size_t size) {
                    frames_in_.fetch_add(1, std::memory_order_relaxed);
                    bytes_in_.fetch_add(size, std::memory_order_relaxed);
                    try {
                        if (holding_receiver_)
                            holding_receiver_(peer, {frame, size}, holder);
                        else if (receiver_)
                            receiver_(peer, frame, size);
                    } catch (const std::exception& e) {
                        log->error("frame from {} dropped: {}", peer, e.what());
                    }
                };
                auto* data = static_cast<const uint8_t*>(message.data());
                if (!frame_bundle::is_bundle(data, message.size())) {
                    hand_on(data, message.size());
                } else if (auto why = frame_bundle::decode(data, message.size(), hand_on); !why.empty()) {
                    bad_bundles_.fetch_add(1, std::memory_order_relaxed);
                    log->warn("bundle of {} bytes from {} dropped, none of its frames taken: {}", message.size(), peer, why);
                }
            }
        }
    }
}

} // namespace renkei
