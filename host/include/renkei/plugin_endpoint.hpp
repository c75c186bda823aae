// A running plugin instance as the router sees it, whether in this process or isolated in a child.
#pragma once

#include <renkei/envelope.hpp>
#include <renkei/plugin_loader.hpp>

#include <capnp/common.h>
#include <kj/array.h>

#include <cstdint>
#include <functional>
#include <string>

namespace renkei {

// One message on its way into a plugin. `done` is called exactly once, from the endpoint's own
// thread, with the plugin's final status (RENKEI_OK acknowledges) and its error message.
struct Delivery {
    kj::Array<capnp::word> envelope; // flat Envelope, 8-byte aligned
    std::string type;
    MessageId id{};
    std::function<void(int32_t status, const std::string& message)> done;
    uint32_t crashes = 0; // times an isolated plugin died while handling this message
};

struct EndpointStatus {
    std::string state; // "starting", "running", "restarting", "stopped", "failed"
    uint64_t queued = 0;
    uint64_t in_flight = 0;
    uint64_t handled = 0;
    uint64_t failed = 0;
    uint64_t restarts = 0;
};

class PluginEndpoint {
public:
    virtual ~PluginEndpoint() = default;
    virtual const PluginInfo& info() const = 0;
    // The name this instance runs under (the [[plugin]] name in the configuration).
    virtual const std::string& instance_name() const = 0;
    // Creates and starts the plugin. Throws with a message naming the plugin on failure.
    virtual void start() = 0;
    // Queues a message; never blocks on the plugin.
    virtual void deliver(Delivery delivery) = 0;
    // Stops accepting, lets the message in the plugin finish, then stops and destroys the
    // instance. Messages still queued complete with RENKEI_ERR_RETRY ("host stopping").
    virtual void stop() = 0;
    virtual EndpointStatus status() const = 0;
};

// Retry policy shared by endpoints for RENKEI_ERR_RETRY answers: exponential back-off.
struct DeliveryRetry {
    uint32_t max_attempts = 8;
    uint32_t first_delay_ms = 50;
    uint32_t max_delay_ms = 5000;
    uint32_t delay_ms(uint32_t attempt) const {
        uint64_t d = uint64_t(first_delay_ms) << std::min<uint32_t>(attempt, 20);
        return static_cast<uint32_t>(std::min<uint64_t>(d, max_delay_ms));
    }
};

} // namespace renkei
