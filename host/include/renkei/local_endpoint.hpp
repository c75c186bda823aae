// An endpoint backed by a C++ callback, for host-internal handlers (the demo client, tests).
// It runs the callback on its own thread, like a plugin, so it never blocks the router.
#pragma once

#include <renkei/envelope.hpp>
#include <renkei/plugin_endpoint.hpp>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

namespace renkei {

class LocalEndpoint : public PluginEndpoint {
public:
    // Returns the status for the message (RENKEI_OK acknowledges) and may fill `error`.
    using Handler = std::function<int32_t(const EnvelopeView& envelope, std::string& error)>;

    LocalEndpoint(std::string name, std::vector<std::string> types, Handler handler);
    ~LocalEndpoint() override;

    const PluginInfo& info() const override { return info_; }
    const std::string& instance_name() const override { return info_.name; }
    void start() override;
    void deliver(Delivery delivery) override;
    void stop() override;
    void wake() noexcept override;
    EndpointStatus status() const override;

private:
    PluginInfo info_;
    Handler handler_;
    mutable std::mutex mutex_;
    std::condition_variable cv_;
    std::deque<Delivery> queue_;
    bool stopping_ = false;
    uint64_t handled_ = 0, failed_ = 0;
    std::thread worker_;
};

} // namespace renkei
