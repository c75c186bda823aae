#include <renkei/router.hpp>

#include <renkei/log.hpp>

#include <algorithm>
#include <chrono>
#include <mutex>
#include <set>

namespace renkei {
namespace {
bool is_fault_type(const std::string& type) {
    return type.size() > 6 && type.compare(type.size() - 6, 6, ".Fault") == 0;
}
} // namespace

Router::Router(std::string local_node, Metrics& metrics)
    : local_node_(std::move(local_node)), metrics_(metrics) {}

void Router::add_endpoint(std::shared_ptr<PluginEndpoint> ep) {
    std::unique_lock lock(mutex_);
    auto is_wildcard = [](const std::string& t) { return t.size() >= 2 && t.compare(t.size() - 2, 2, ".*") == 0; };
    // Check every type before registering any: a refused endpoint must leave no type behind.
    std::set<std::string> own;
    for (const auto& t : ep->info().message_types) {
        std::shared_ptr<PluginEndpoint> other;
        if (!own.insert(t).second) {
            other = ep;
        } else if (is_wildcard(t)) {
            std::string prefix = t.substr(0, t.size() - 1);
            for (auto& [p, holder] : prefixes_)
                if (p == prefix) other = holder;
        } else if (auto it = exact_.find(t); it != exact_.end()) {
            other = it->second;
        }
        if (other)
            throw std::runtime_error("message type '" + t + "' is declared by both '" +
                                     other->instance_name() + "' and '" + ep->instance_name() + "'");
    }
    for (const auto& t : ep->info().message_types) {
        if (is_wildcard(t))
            prefixes_.emplace_back(t.substr(0, t.size() - 1), ep);
        else
            exact_.emplace(t, ep);
    }
    endpoints_.push_back(std::move(ep));
    // Longest prefix first so "juki.query." wins over "juki.".
    std::sort(prefixes_.begin(), prefixes_.end(),
              [](auto& a, auto& b) { return a.first.size() > b.first.size(); });
}

void Router::remove_endpoint(const std::string& name) {
    std::unique_lock lock(mutex_);
    std::erase_if(exact_, [&](auto& kv) { return kv.second->instance_name() == name; });
    std::erase_if(prefixes_, [&](auto& kv) { return kv.second->instance_name() == name; });
    std::erase_if(endpoints_, [&](auto& ep) { return ep->instance_name() == name; });
}

std::vector<std::shared_ptr<PluginEndpoint>> Router::endpoints() const {
    std::shared_lock lock(mutex_);
    return endpoints_;
}

std::shared_ptr<PluginEndpoint> Router::handler_for(const std::string& type) const {
    std::shared_lock lock(mutex_);
    if (auto it = exact_.find(type); it != exact_.end()) return it->second;
    for (auto& [prefix, ep] : prefixes_)
        if (type.size() > prefix.size() && type.compare(0, prefix.size(), prefix) == 0) return ep;
    return nullptr;
}

void Router::route(kj::Array<capnp::word> flat, std::function<void(int32_t, const std::string&)> done) {
    auto bytes = flat.asBytes();
    // Every path through the router is on checked input: the bytes are decoded (and checked)
    // here, unless the caller hands in the view it decoded them to.
    auto view = std::make_shared<EnvelopeView>(EnvelopeView::decode(bytes.begin(), bytes.size()));
    route(std::move(view), std::move(flat), std::move(done));
}

void Router::route(std::shared_ptr<EnvelopeView> view, kj::Array<capnp::word> flat,
                   std::function<void(int32_t, const std::string&)> done) {
    if (!view || view->bytes().begin() != flat.asBytes().begin() || view->bytes().size() != flat.asBytes().size())
        throw std::logic_error("Router::route: the view is not of these bytes");
    auto env = view->get();
    std::string type = env.getType();
    std::string to = env.getTo();

    if (to != local_node_) {
        if (env.getHopCount() >= kMaxHops) {
            fail(*view, RENKEI_ERR_DENIED, "hop limit " + std::to_string(kMaxHops) + " reached on the way to " + to, done);
            return;
        }
        if (!forwarder_) {
            fail(*view, RENKEI_ERR_NOT_FOUND, "no route from " + local_node_ + " to node " + to, done);
            return;
        }
        auto result = forwarder_(*view);
        if (!result.why.empty()) {
            fail(*view, result.code, result.why, done);
            return;
        }
        metrics_.counters(type, "transport").out.fetch_add(1, std::memory_order_relaxed);
        if (observer_) observer_(*view, "forwarded", to);
        if (done) done(RENKEI_OK, "");
        return;
    }

    auto ep = handler_for(type);
    if (!ep) {
        fail(*view, RENKEI_ERR_UNSUPPORTED,
             "no plugin at " + local_node_ + " handles message type '" + type + "'", done);
        return;
    }
    auto& counters = metrics_.counters(type, ep->instance_name());
    counters.in.fetch_add(1, std::memory_order_relaxed);
    Delivery d;
    d.type = type;
    d.id = view->id();
    d.envelope = std::move(flat);
    // `view` borrows d.envelope's buffer; keep it alive alongside the bytes.
    d.done = [this, view, &counters, done = std::move(done), plugin = ep->instance_name()](
                 int32_t status, const std::string& message) {
        if (status == RENKEI_OK) {
            if (observer_) observer_(*view, "delivered", plugin);
        } else {
            counters.failed.fetch_add(1, std::memory_order_relaxed);
            if (observer_) observer_(*view, "failed", plugin + ": " + message);
            if (status != RENKEI_ERR_RETRY) fault(*view, status, message);
        }
        if (done) done(status, message);
    };
    ep->deliver(std::move(d));
}

void Router::fail(const EnvelopeView& env, int32_t code, const std::string& message,
                  const std::function<void(int32_t, const std::string&)>& done) {
    std::string type = env.get().getType();
    metrics_.counters(type, "router").failed.fetch_add(1, std::memory_order_relaxed);
    if (observer_) observer_(env, "refused", message);
    logger("router")->warn("{} {} -> {}: {}", type, hex(env.get().getId()),
                           std::string(env.get().getTo()), message);
    fault(env, code, message);
    if (done) done(code, message);
}

void Router::fault(const EnvelopeView& original, int32_t code, const std::string& message,
                   const std::string& field, const std::string& rule) {
    auto env = original.get();
    std::string type = env.getType();
    std::string from = env.getFrom();
    if (is_fault_type(type) || from.empty()) return; // never answer a fault with a fault
    capnp::MallocMessageBuilder mb;
    auto out = mb.initRoot<schema::Envelope>();
    auto id = new_message_id();
    out.setId(kj::ArrayPtr<const kj::byte>(id.data(), id.size()));
    out.setCorrelationId(env.getId());
    out.setType(text(type + ".Fault"));
    out.setFrom(text(local_node_));
    out.setTo(env.getFrom());
    out.setPurpose(env.getPurpose());
    out.setOperatorId(env.getOperatorId());
    out.setSentAtUnixMs(std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count());
    auto f = out.initFault();
    f.setCode(static_cast<uint32_t>(code));
    f.setMessage(text(message));
    f.setField(text(field));
    f.setRule(text(rule));
    std::string fault_type = type + ".Fault";
    if (from == local_node_ && !handler_for(fault_type)) {
        logger("router")->info("fault for {} not delivered: no local handler for {}", type, fault_type);
        return;
    }
    route(capnp::messageToFlatArray(mb));
}

} // namespace renkei
