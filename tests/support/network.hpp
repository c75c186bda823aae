// Builds small networks of real hosts on 127.0.0.1 with real keys for integration tests.
#pragma once

#include "test_support.hpp"

#include <renkei/audit_log.hpp>
#include <renkei/host.hpp>
#include <renkei/keys.hpp>
#include <renkei/merkle.hpp>
#include <wire.capnp.h>

#include <functional>
#include <map>
#include <memory>
#include <string>

namespace renkei::test {

struct NodeSpec {
    std::string id;
    bool listen = true;
    std::vector<PluginConfig> plugins;
    // peer node id -> reaches patterns; a peer that listens is dialled, others only dial us.
    std::map<std::string, std::vector<std::string>> peers;
    std::string policy = {}; // TOML; empty: allow everything (tests of other things)
    bool batch_signing = false; // sign what this node sends in Merkle batches (signing = "batch")
    bool memory_delivery = false; // delivery = "memory" on every link of this node
};

class Network {
public:
    explicit Network(const TempDir& dir) : dir_(dir) {}

    NodeCard keys_for(const std::string& id) {
        if (!cards_.count(id)) cards_[id] = generate_node_keys(dir_ / ("keys-" + safe(id)), id);
        return cards_[id];
    }

    HostConfig config(const NodeSpec& spec) {
        keys_for(spec.id);
        HostConfig c;
        c.node_id = spec.id;
        c.data_dir = dir_ / ("data-" + safe(spec.id));
        c.keys_dir = dir_ / ("keys-" + safe(spec.id));
        if (spec.listen) c.listen = "tcp://127.0.0.1:0";
        c.policy_file = dir_ / ("policy-" + safe(spec.id) + ".toml");
        if (!std::filesystem::exists(c.policy_file))
            write_file(c.policy_file, spec.policy.empty() ? "[[rule]]\nsender = \"*\"\ntype = \"*\"\npurpose = \"*\"\n" : spec.policy);
        c.plugins = spec.plugins;
        for (auto& [peer, reaches] : spec.peers) {
            auto card = keys_for(peer);
            PeerConfig p;
            p.node = peer;
            p.curve_public = card.curve_public;
            p.sign_public = card.sign_public;
            p.seal_public = card.seal_public;
            p.reaches = reaches;
            p.batch_signing = spec.batch_signing;
            p.memory_delivery = spec.memory_delivery;
            if (endpoints_.count(peer)) p.endpoints = {endpoints_[peer]};
            c.peers.push_back(p);
        }
        return c;
    }

    // Starts a node (peers it dials must already run). Returns it; the network owns it.
    // `tweak` may change the configuration first (a trust store, another keys_dir, ...).
    Host& start(const NodeSpec& spec, const std::function<void(HostConfig&)>& tweak = nullptr) {
        HostOptions o;
        o.runner_path = RENKEI_BINARY;
        o.clock = clock;
        auto cfg = config(spec);
        if (tweak) tweak(cfg);
        auto host = std::make_unique<Host>(cfg, o);
        host->start();
        if (!host->link_endpoint().empty()) endpoints_[spec.id] = host->link_endpoint();
        hosts_[spec.id] = std::move(host);
        return *hosts_[spec.id];
    }

    Host& operator[](const std::string& id) { return *hosts_.at(id); }
    // The clock of hosts started from now on (empty: the system clock).
    std::function<int64_t()> clock;
    std::string endpoint(const std::string& id) { return endpoints_.at(id); }
    std::filesystem::path keys_dir(const std::string& id) { return dir_ / ("keys-" + safe(id)); }

    // Stops in reverse start order is not tracked: stop callers' nodes first where it matters.
    void stop(const std::string& id) { hosts_.at(id)->stop(); }
    // Stops and forgets a node so it can be started again (e.g. with rotated keys).
    void remove(const std::string& id) {
        hosts_.at(id)->stop();
        hosts_.erase(id);
    }
    ~Network() {
        for (auto& [id, h] : hosts_) h->stop();
    }

    static std::string safe(std::string id) {
        for (auto& c : id)
            if (c == ':') c = '_';
        return id;
    }

private:
    const TempDir& dir_;
    std::map<std::string, NodeCard> cards_;
    std::map<std::string, std::string> endpoints_;
    std::map<std::string, std::unique_ptr<Host>> hosts_;
};

// Submits a new envelope of `type` for node `to` at `from`, as its local component `origin`.
// Returns the envelope's id (hex).
inline std::string submit_new(Host& from, const std::string& origin, const std::string& type, const std::string& to,
                              const std::string& payload = {}, const std::string& purpose = "test") {
    capnp::MallocMessageBuilder mb;
    auto e = mb.initRoot<schema::Envelope>();
    auto id = new_message_id();
    e.setId(kj::ArrayPtr<const kj::byte>(id.data(), id.size()));
    e.setType(type);
    e.setTo(to);
    e.setPurpose(purpose);
    e.setPayload(kj::ArrayPtr<const kj::byte>(reinterpret_cast<const kj::byte*>(payload.data()), payload.size()));
    from.submit(origin, capnp::messageToFlatArray(mb).asBytes());
    return hex(id);
}

// Everything in a host's audit trail so far (flushed first), as text.
inline std::string audit_trail(Host& host) {
    host.audit()->flush();
    std::string trail;
    for (auto& e : std::filesystem::directory_iterator(host.audit()->dir()))
        if (e.path().extension() == ".log") trail += read_file(e.path());
    return trail;
}

// Frames of one Merkle batch of canonical envelope bodies signed by `signer`, exactly as a sending
// host builds them.
inline std::vector<std::vector<uint8_t>> batch_frames(const NodeKeys& signer, const std::string& key_id,
                                                      const std::vector<std::vector<uint8_t>>& bodies) {
    std::vector<merkle::Hash> leaves;
    for (auto& b : bodies) leaves.push_back(merkle::leaf_hash(b));
    merkle::Tree tree(leaves);
    auto sig = signer.sign.sign(merkle::signed_message(tree.root()));
    std::vector<std::vector<uint8_t>> out;
    for (uint32_t i = 0; i < bodies.size(); ++i) {
        capnp::MallocMessageBuilder mb;
        auto s = mb.initRoot<wire::Frame>().initEnvelope();
        s.setBody(kj::ArrayPtr<const kj::byte>(bodies[i].data(), bodies[i].size()));
        s.setAlg(schema::SignatureAlg::ED25519_MERKLE_SHA256);
        s.setKeyId(key_id);
        s.setSignature(kj::ArrayPtr<const kj::byte>(sig.data(), sig.size()));
        auto proof = tree.proof(i);
        auto list = s.initMerkleProof(static_cast<unsigned>(proof.size()));
        for (unsigned k = 0; k < proof.size(); ++k) list.set(k, kj::ArrayPtr<const kj::byte>(proof[k].data(), 32));
        s.setLeafIndex(i);
        s.setBatchSize(static_cast<uint32_t>(bodies.size()));
        auto flat = capnp::messageToFlatArray(mb);
        out.emplace_back(flat.asBytes().begin(), flat.asBytes().end());
    }
    return out;
}

inline PluginConfig echo_plugin(const std::string& name = "echo") {
    PluginConfig p;
    p.name = name;
    p.path = plugin_path("adapters/mock-echo", "mock_echo");
    return p;
}

} // namespace renkei::test
