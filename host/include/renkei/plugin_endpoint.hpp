// A running plugin instance as the router sees it, whether in this process or isolated in a child.
#pragma once

#include <renkei/envelope.hpp>
#include <renkei/plugin_loader.hpp>

#include <capnp/common.h>
#include <kj/array.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

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

class PluginEndpoint : public std::enable_shared_from_this<PluginEndpoint> {
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
    // Wakes the worker for deliveries queued without waking it (see DeliveryWakes). Never throws.
    virtual void wake() noexcept = 0;
};

// Coalesces the wake-ups of endpoints. A thread that hands over many deliveries in a row (a link's
// receiver working through the frames that arrived together) opens one for the run; an endpoint it
// delivers to meanwhile wakes its worker every kEvery deliveries and once when the run ends,
// instead of for every delivery: a system call each, and a worker that falls asleep between
// messages because it is faster than the thread feeding it. A delivery waits at most for the
// kEvery - 1 deliveries after it, or the end of the run. Without one open on the thread (or
// nested in another, which then holds the wakes), deliver() wakes at once.
class DeliveryWakes {
public:
    static constexpr unsigned kEvery = 32;
    DeliveryWakes();
    ~DeliveryWakes(); // wakes every endpoint with deliveries not yet woken
    DeliveryWakes(const DeliveryWakes&) = delete;
    DeliveryWakes& operator=(const DeliveryWakes&) = delete;
    // For deliver(), after it queued (and unlocked): whether to wake the worker now. False when
    // the run open on this thread will (an endpoint not owned by a shared_ptr is woken at once).
    static bool wake_now(PluginEndpoint& ep);

private:
    struct Held {
        std::shared_ptr<PluginEndpoint> endpoint;
        unsigned since_wake = 0;
    };
    std::vector<Held> held_;
    bool open_ = false;
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
