// Delivers envelopes to the local plugin that handles their type, or hands them to the remote
// forwarder (the transport) when they are for another node. Failures go back to the sender as a
// "<type>.Fault" envelope.
#pragma once

#include <renkei/envelope.hpp>
#include <renkei/metrics.hpp>
#include <renkei/plugin_endpoint.hpp>

#include <functional>
#include <memory>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace renkei {

class Router {
public:
    // A forwarder's answer: an empty `why` when accepted, else the reason and the fault code
    // (RENKEI_ERR_NOT_FOUND for "no route" unless it says otherwise).
    struct ForwardResult {
        ForwardResult(std::string w = {}) : why(std::move(w)) {}
        ForwardResult(const char* w) : why(w) {}
        ForwardResult(int32_t c, std::string w) : code(c), why(std::move(w)) {}
        int32_t code = RENKEI_ERR_NOT_FOUND;
        std::string why;
    };
    // Forwards an envelope for another node.
    using Forwarder = std::function<ForwardResult(const EnvelopeView& envelope)>;
    // Observes every routing outcome (for audit): event is "delivered", "forwarded", "refused"
    // or "failed".
    using Observer = std::function<void(const EnvelopeView& envelope, const std::string& event,
                                        const std::string& detail)>;

    static constexpr uint8_t kMaxHops = 8;

    Router(std::string local_node, Metrics& metrics);

    // Registers a local endpoint for all its declared types. Throws if a type is already taken.
    void add_endpoint(std::shared_ptr<PluginEndpoint> endpoint);
    void remove_endpoint(const std::string& instance_name);
    std::vector<std::shared_ptr<PluginEndpoint>> endpoints() const;
    // The endpoint handling `type` (exact registrations win over "prefix.*"), or null.
    std::shared_ptr<PluginEndpoint> handler_for(const std::string& type) const;

    void set_forwarder(Forwarder f) { forwarder_ = std::move(f); }
    void set_observer(Observer o) { observer_ = std::move(o); }
    const std::string& local_node() const { return local_node_; }

    // Routes an accepted envelope (flat, aligned). `done`, when given, learns the final outcome
    // of a local delivery (status, message) or of the forward hand-off.
    void route(kj::Array<capnp::word> flat,
               std::function<void(int32_t, const std::string&)> done = nullptr);
    // The same for a caller that has decoded `flat` already: `view` must be EnvelopeView::decode
    // of exactly those bytes (std::logic_error otherwise), so it is not decoded again.
    void route(std::shared_ptr<EnvelopeView> view, kj::Array<capnp::word> flat,
               std::function<void(int32_t, const std::string&)> done = nullptr);

    // Sends a "<type>.Fault" answer for `original` to its sender (never for a fault itself).
    void fault(const EnvelopeView& original, int32_t code, const std::string& message,
               const std::string& field = {}, const std::string& rule = {});

private:
    void fail(const EnvelopeView& env, int32_t code, const std::string& message,
              const std::function<void(int32_t, const std::string&)>& done);

    std::string local_node_;
    Metrics& metrics_;
    mutable std::shared_mutex mutex_;
    std::unordered_map<std::string, std::shared_ptr<PluginEndpoint>> exact_;
    std::vector<std::pair<std::string, std::shared_ptr<PluginEndpoint>>> prefixes_; // "juki." -> ep
    std::vector<std::shared_ptr<PluginEndpoint>> endpoints_;
    Forwarder forwarder_;
    Observer observer_;
};

} // namespace renkei
