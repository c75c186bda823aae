#include <renkei/host.hpp>
#include <renkei/non_transit.hpp>

#include <renkei/admin_server.hpp>
#include <renkei/audit_log.hpp>
#include <renkei/crypto.hpp>
#include <renkei/in_process_plugin.hpp>
#include <renkei/isolated_plugin.hpp>
#include <renkei/links.hpp>
#include <renkei/log.hpp>
#include <renkei/plugin_context.hpp>

#include <algorithm>
#include <chrono>
#include <sstream>

namespace renkei {
namespace {

// A message id in hex, written into `buf`. Ids are 16 bytes: decode() and stamping see to it.
std::string_view id_hex(capnp::Data::Reader id, char (&buf)[32]) {
    const size_t n = std::min<size_t>(id.size(), 16);
    crypto::to_hex({id.begin(), n}, buf);
    return {buf, 2 * n};
}
std::string json_escape(const std::string& s) {
    std::string out;
    for (unsigned char c : s) {
        switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        default:
            if (c < 0x20) {
                char buf[8];
                snprintf(buf, sizeof buf, "\\u%04x", c);
                out += buf;
            } else {
                out.push_back(static_cast<char>(c));
            }
        }
    }
    return out;
}
} // namespace

Host::Host(HostConfig config, HostOptions options)
    : config_(std::move(config)), options_(std::move(options)), calendar_(config_.calendar),
      router_(config_.node_id, metrics_) {
    if (options_.runner_path.empty()) options_.runner_path = std::filesystem::read_symlink("/proc/self/exe");
    if (!config_.keys_dir.empty() && std::filesystem::exists(config_.keys_dir / "node.toml")) {
        keys_ = std::make_shared<const NodeKeys>(load_node_keys(config_.keys_dir));
        if (keys_->node_id != config_.node_id)
            throw std::runtime_error(config_.keys_dir.string() + ": keys belong to " + keys_->node_id +
                                     ", not to " + config_.node_id);
    }
    if (!config_.policy_file.empty()) policy_ = Policy::from_file(config_.policy_file);
    if (!config_.trust_store.empty()) {
        for (auto& p : config_.peers)
            if (!p.curve_public.empty()) pinned_curve_[p.node] = p.curve_public;
        auto ts = load_trust_store(config_.trust_store, config_.trust_root, now_unix_ms());
        check_trust(ts);
        for (auto& p : config_.peers) { // keys not given in [[peer]] come from the store
            auto* n = ts.node(p.node);
            if (p.curve_public.empty() && !n->curve_public.empty()) p.curve_public = n->curve_public.back();
            if (p.sign_public.empty() && !n->sign_public.empty()) p.sign_public = n->sign_public.back();
            if (p.seal_public.empty()) p.seal_public = n->seal_public;
        }
        trust_ = std::move(ts);
    }
}

// The trust store must list `keys` (this node's) among its trusted ones.
void Host::check_own_keys(const TrustStore& ts, const NodeKeys* keys) const {
    if (!keys) return;
    auto where = ts.file.string() + " (serial " + std::to_string(ts.serial) + ")";
    auto* self = ts.node(config_.node_id);
    if (!self) throw TrustError(where + ": does not list this node " + config_.node_id);
    auto card = card_of(*keys);
    if (std::find(self->curve_public.begin(), self->curve_public.end(), card.curve_public) == self->curve_public.end() ||
        std::find(self->sign_public.begin(), self->sign_public.end(), card.sign_public) == self->sign_public.end())
        throw TrustError(where + ": the keys of " + config_.node_id + " in " + config_.keys_dir.string() +
                         " are not trusted there (rotated or revoked?)");
}

// A trust store must list this node with the keys it holds and every configured peer; keys
// given in [[peer]] as well must be among the peer's trusted ones.
void Host::check_trust(const TrustStore& ts) const {
    auto where = ts.file.string() + " (serial " + std::to_string(ts.serial) + ")";
    check_own_keys(ts, keys().get());
    for (auto& p : config_.peers) {
        auto* n = ts.node(p.node);
        if (!n) throw TrustError(where + ": peer " + p.node + " is not in the trust store");
        auto pinned = pinned_curve_.find(p.node);
        if (pinned != pinned_curve_.end() &&
            std::find(n->curve_public.begin(), n->curve_public.end(), pinned->second) == n->curve_public.end())
            throw TrustError(where + ": peer " + p.node + ": its curve_public in " + config_.source.string() +
                             " is not one the trust store lists (rotated or revoked?)");
    }
}

void Host::apply_trust(TrustStore ts) {
    if (links_) {
        std::map<std::string, PeerKeys> keys;
        for (auto& p : config_.peers)
            if (auto* n = ts.node(p.node)) keys[p.node] = PeerKeys{n->curve_public, n->sign_public};
        links_->set_trust(keys, ts.expires_ms);
    }
    std::lock_guard lock(trust_mutex_);
    trust_ = std::move(ts);
}

std::string Host::reload_trust() {
    if (config_.trust_store.empty()) return "no trust store configured (keys come from [[peer]])";
    auto log = logger("host");
    AuditRecord r;
    r.time_ms = now_unix_ms();
    r.event = "admin";
    r.type = "trust.reload";
    r.to = config_.node_id;
    std::string outcome;
    try {
        auto ts = load_trust_store(config_.trust_store, config_.trust_root, now_unix_ms());
        check_trust(ts);
        int64_t current = trust_serial();
        if (ts.serial < current)
            throw TrustError(config_.trust_store.string() + ": serial " + std::to_string(ts.serial) +
                             " is older than the one in use (" + std::to_string(current) + "); refused");
        outcome = "trust store serial " + std::to_string(ts.serial) + " loaded (" + std::to_string(ts.nodes.size()) +
                  " nodes, " + std::to_string(ts.revoked.size()) + " revoked keys, expires " +
                  format_utc_ms(ts.expires_ms) + ")";
        apply_trust(std::move(ts));
        r.outcome = "ok";
        log->info("{}", outcome);
    } catch (const std::exception& e) {
        outcome = std::string("trust store not reloaded, the current one stays: ") + e.what();
        r.outcome = "refused";
        log->error("{}", outcome);
    }
    r.detail = outcome;
    if (audit_) audit_->append(std::move(r));
    return outcome;
}

std::string Host::reload_keys() {
    auto log = logger("host");
    AuditRecord r;
    r.time_ms = now_unix_ms();
    r.event = "admin";
    r.type = "keys.reload";
    r.to = config_.node_id;
    std::string outcome;
    try {
        auto current = keys();
        if (!current) throw std::runtime_error("this node has no keys (run renkei keygen)");
        auto next = std::make_shared<const NodeKeys>(load_node_keys(config_.keys_dir));
        if (next->node_id != config_.node_id)
            throw std::runtime_error(config_.keys_dir.string() + ": keys belong to " + next->node_id + ", not to " +
                                     config_.node_id);
        auto was = card_of(*current), now = card_of(*next);
        if (was.curve_public == now.curve_public && was.sign_public == now.sign_public && was.seal_public == now.seal_public)
            return "own keys unchanged";
        {
            std::lock_guard lock(trust_mutex_);
            if (trust_) check_own_keys(*trust_, next.get()); // peers would refuse keys they do not trust
        }
        if (links_) links_->set_keys(next);
        {
            std::lock_guard lock(keys_mutex_);
            previous_keys_ = keys_;
            keys_ = next;
        }
        outcome = "own keys rotated: CURVE " + now.curve_public + ", signing " + now.sign_public.substr(0, 16) +
                  "..., sealing " + now.seal_public.substr(0, 16) + "...";
        r.outcome = "ok";
        log->info("{}", outcome);
    } catch (const std::exception& e) {
        outcome = std::string("own keys not reloaded, the current ones stay: ") + e.what();
        r.outcome = "refused";
        log->error("{}", outcome);
    }
    r.detail = outcome;
    if (audit_) audit_->append(std::move(r));
    return outcome;
}

int64_t Host::trust_serial() const {
    std::lock_guard lock(trust_mutex_);
    return trust_ ? trust_->serial : 0;
}

Host::~Host() { stop(); }

std::shared_ptr<PluginEndpoint> Host::make_endpoint(const PluginConfig& pc) {
    // Every plugin learns the node it runs on under the reserved key "renkei.node_id".
    auto settings = pc.settings;
    settings.insert_or_assign("renkei", toml::table{{"node_id", config_.node_id}});
    if (pc.isolation == Isolation::process) {
        IsolatedPlugin::Options o;
        o.runner = options_.runner_path;
        o.plugin_path = pc.path;
        o.run_dir = config_.data_dir / "run";
        o.log_level = config_.log_level;
        return std::make_shared<IsolatedPlugin>(pc.name, o, settings, *this);
    }
    auto lib = load_plugin(pc.path);
    auto ctx = std::make_unique<PluginContext>(pc.name, settings, *this, config_.data_dir / "store" / (pc.name + ".db"));
    return std::make_shared<InProcessPlugin>(pc.name, std::move(lib), std::move(ctx));
}

void Host::start() {
    std::lock_guard lock(lifecycle_);
    if (running_) return;
    auto log = logger("host");
    std::filesystem::create_directories(config_.data_dir);
    try {
        audit_ = std::make_unique<AuditLog>(config_.data_dir / "audit");
        // The records of the message path are appended as views: nothing copied on the way.
        router_.set_observer([this](const EnvelopeView& v, const std::string& event, const std::string& detail) {
            auto e = v.get();
            char id[32];
            audit_->append(AuditFields{now_unix_ms(), event, id_hex(e.getId(), id), as_view(e.getType()),
                                       as_view(e.getFrom()), as_view(e.getTo()), as_view(e.getPurpose()),
                                       as_view(e.getOperatorId()),
                                       event == "delivered" || event == "forwarded" ? "ok" : "refused", detail, {}});
        });
        if (keys() && (!config_.listen.empty() || !config_.peers.empty())) {
            links_ = std::make_unique<Links>(config_, keys(), router_, metrics_, [this] { return now_unix_ms(); });
            links_->set_observer([this](const std::string& event, const std::string& peer, const std::string& id,
                                        const std::string& type, const std::string& detail) {
                const bool held = event == "held"; // outgoing, to `peer`; the rest came from it
                audit_->append(AuditFields{now_unix_ms(), event, id, type, held ? config_.node_id : peer,
                                           held ? peer : config_.node_id, {}, {},
                                           event == "accepted" || held ? "ok" : "refused", detail, {}});
            });
            links_->set_policy([this](const schema::Envelope::Reader& e) -> std::string {
                std::vector<std::string> conditions;
                for (auto c : e.getConditions()) conditions.emplace_back(c);
                std::string from = e.getFrom(), type = e.getType(), purpose = e.getPurpose(), to = e.getTo();
                // A relay first applies the non-transit rule of the message type (no policy can lift it).
                auto transit = transit_violation(type, config_.node_id, to);
                auto d = !transit.empty() ? PolicyDecision{false, "", transit}
                         : policy_        ? policy_->check(from, type, purpose, conditions)
                                          : PolicyDecision{false, "", "no access policy configured: denied by default"};
                char id[32];
                // `to`: this node, or the destination of a message it relays.
                audit_->append(AuditFields{now_unix_ms(), d.allowed ? "policy_allow" : "policy_deny",
                                           id_hex(e.getId(), id), type, from, to, purpose, as_view(e.getOperatorId()),
                                           d.allowed ? "ok" : "refused", d.reason, {}});
                return d.allowed ? std::string() : d.reason;
            });
            if (trust_) apply_trust(*trust_);
            links_->set_inbound_open(false); // until the plugins below run
            links_->start();
            router_.set_forwarder([this](const EnvelopeView& v) { return links_->forward(v); });
        } else if (!config_.peers.empty() || !config_.listen.empty()) {
            throw std::runtime_error(config_.node_id + " has peers or a listen endpoint but no keys in " +
                                     config_.keys_dir.string() + " (run renkei keygen)");
        }
        for (const auto& pc : config_.plugins) {
            auto ep = make_endpoint(pc);
            ep->start();
            started_.push_back(ep);
            router_.add_endpoint(ep);
            const auto& info = ep->info();
            log->info("plugin '{}' started: {} {} ({}, ABI {}.{}, {}), types: {}", pc.name, info.name,
                      info.version, info.kind_name(), info.abi_major, info.abi_minor,
                      pc.isolation == Isolation::process ? "isolated process" : "in-process",
                      fmt::join(info.message_types, ", "));
            metrics_.gauge("renkei_plugin_queue_depth", "plugin=\"" + pc.name + "\"",
                           [ep] { return static_cast<double>(ep->status().queued); });
            metrics_.gauge("renkei_plugin_restarts", "plugin=\"" + pc.name + "\"",
                           [ep] { return static_cast<double>(ep->status().restarts); });
        }
        if (!config_.admin_listen.empty()) {
            admin_ = std::make_unique<AdminServer>(
                config_.admin_listen,
                AdminServer::Handlers{[this] { return metrics_.render(); },
                                      [this] { return status_json(); },
                                      [this] {
                                          for (auto& ep : router_.endpoints())
                                              if (ep->status().state == "failed") return false;
                                          return true;
                                      }});
            log->info("admin HTTP on 127.0.0.1:{}", admin_->port());
        }
    } catch (...) {
        for (auto it = started_.rbegin(); it != started_.rend(); ++it) {
            (*it)->stop();
            router_.remove_endpoint((*it)->instance_name());
        }
        started_.clear();
        router_.set_forwarder(nullptr);
        links_.reset();
        router_.set_observer(nullptr);
        audit_.reset();
        throw;
    }
    if (links_) links_->set_inbound_open(true);
    running_ = true;
    log->info("node {} running with {} plugin(s)", config_.node_id, started_.size());
}

void Host::stop() {
    std::lock_guard lock(lifecycle_);
    admin_.reset();
    if (links_) links_->set_inbound_open(false); // what arrives now stays with its sender
    for (auto it = started_.rbegin(); it != started_.rend(); ++it) {
        metrics_.remove_gauges_with_label("plugin=\"" + (*it)->instance_name() + "\"");
        (*it)->stop();
        router_.remove_endpoint((*it)->instance_name());
    }
    started_.clear();
    router_.set_forwarder(nullptr);
    if (links_) links_->stop();
    links_.reset();
    router_.set_observer(nullptr);
    audit_.reset(); // flushes
    if (running_) logger("host")->info("node {} stopped", config_.node_id);
    running_ = false;
}

void Host::add_endpoint(std::shared_ptr<PluginEndpoint> endpoint) {
    endpoint->start();
    router_.add_endpoint(endpoint);
    std::lock_guard lock(lifecycle_);
    started_.push_back(std::move(endpoint));
}

int Host::admin_port() const { return admin_ ? admin_->port() : 0; }
std::string Host::link_endpoint() const { return links_ ? links_->endpoint() : ""; }
size_t Host::links_pending() const { return links_ ? links_->pending() : 0; }

std::string Host::status_json() const {
    std::ostringstream out;
    out << "{\"node\":\"" << json_escape(config_.node_id) << "\",\"plugins\":[";
    bool first = true;
    for (auto& ep : router_.endpoints()) {
        auto s = ep->status();
        const auto& info = ep->info();
        out << (first ? "" : ",") << "{\"name\":\"" << json_escape(ep->instance_name())
            << "\",\"plugin\":\"" << json_escape(info.name) << "\",\"version\":\""
            << json_escape(info.version) << "\",\"kind\":\"" << info.kind_name()
            << "\",\"state\":\"" << s.state << "\",\"queued\":" << s.queued
            << ",\"in_flight\":" << s.in_flight << ",\"handled\":" << s.handled
            << ",\"failed\":" << s.failed << ",\"restarts\":" << s.restarts << "}";
        first = false;
    }
    out << "]}";
    return out.str();
}

void Host::submit(const std::string& origin, kj::ArrayPtr<const kj::byte> bytes,
                  std::function<void(int32_t, const std::string&)> done) {
    kj::Array<capnp::word> stamped;
    try {
        stamped = stamp_outgoing(bytes, config_.node_id, now_unix_ms(), options_.max_envelope_bytes);
    } catch (const EnvelopeError& e) {
        throw HostCallError(RENKEI_ERR_INVALID, e.what());
    }
    // Built by stamp_outgoing from the checked plugin bytes: read without checking them again.
    auto view = std::make_shared<EnvelopeView>(EnvelopeView::trusted(stamped.begin(), stamped.asBytes().size()));
    metrics_.counters(std::string(view->get().getType()), origin).out.fetch_add(1, std::memory_order_relaxed);
    router_.route(std::move(view), std::move(stamped), std::move(done));
}

void Host::submit_from_plugin(const std::string& plugin, kj::ArrayPtr<const kj::byte> envelope) {
    submit(plugin, envelope);
}

namespace {
crypto::View cview(kj::ArrayPtr<const kj::byte> b) { return {b.begin(), b.size()}; }
} // namespace

std::vector<uint8_t> Host::sign(const std::string& key_name, kj::ArrayPtr<const kj::byte> data) {
    auto k = keys();
    if (key_name != "node" || !k)
        throw HostCallError(RENKEI_ERR_NOT_FOUND, "no host key '" + key_name + "' on " + config_.node_id +
                                                      (k ? "" : " (run renkei keygen for this node)"));
    return k->sign.sign(cview(data));
}

bool Host::verify(const std::string& node_id, kj::ArrayPtr<const kj::byte> data, kj::ArrayPtr<const kj::byte> signature) {
    std::vector<std::string> sign_public;
    {
        std::lock_guard lock(trust_mutex_);
        if (trust_) {
            if (auto* n = trust_->node(node_id)) sign_public = n->sign_public;
        } else {
            if (auto k = keys(); k && node_id == config_.node_id) sign_public.push_back(crypto::to_hex(k->sign.public_raw()));
            for (auto& p : config_.peers)
                if (p.node == node_id && !p.sign_public.empty()) sign_public.push_back(p.sign_public);
        }
    }
    if (sign_public.empty()) throw HostCallError(RENKEI_ERR_NOT_FOUND, "no trusted signing key for node " + node_id);
    for (auto& k : sign_public)
        if (crypto::VerifyKey::from_raw(crypto::from_hex(k)).verify(cview(data), cview(signature))) return true;
    return false;
}

std::vector<uint8_t> Host::seal(const std::string& recipient, kj::ArrayPtr<const kj::byte> data) {
    std::string seal_public;
    if (auto k = keys(); k && recipient == config_.node_id) seal_public = crypto::to_hex(k->seal.public_key);
    for (auto& p : config_.peers)
        if (p.node == recipient && !p.seal_public.empty()) seal_public = p.seal_public;
    {
        std::lock_guard lock(trust_mutex_); // any node of the network, not only neighbours
        if (trust_)
            if (auto* n = trust_->node(recipient); n && !n->seal_public.empty()) seal_public = n->seal_public;
    }
    if (seal_public.empty()) throw HostCallError(RENKEI_ERR_NOT_FOUND, "no trusted sealing key for node " + recipient);
    // The recipient's node id is bound as associated data: a box cannot be replayed to another node.
    return crypto::seal(crypto::from_hex(seal_public), cview(data), crypto::view(recipient));
}

std::vector<uint8_t> Host::open(kj::ArrayPtr<const kj::byte> sealed) {
    std::shared_ptr<const NodeKeys> k, previous;
    {
        std::lock_guard lock(keys_mutex_);
        k = keys_;
        previous = previous_keys_;
    }
    if (!k) throw HostCallError(RENKEI_ERR_NOT_FOUND, "no sealing key on " + config_.node_id + " (run renkei keygen)");
    try {
        return crypto::open(k->seal, cview(sealed), crypto::view(config_.node_id));
    } catch (const crypto::CryptoError& e) {
        if (previous) { // sealed before the last key rotation
            try {
                return crypto::open(previous->seal, cview(sealed), crypto::view(config_.node_id));
            } catch (const crypto::CryptoError&) {
            }
        }
        throw HostCallError(RENKEI_ERR_DENIED, e.what());
    }
}

int64_t Host::now_unix_ms() {
    if (options_.clock) return options_.clock();
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

} // namespace renkei
