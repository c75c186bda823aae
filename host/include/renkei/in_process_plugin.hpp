// A plugin instance running inside the host process, fed by its own worker thread so that a slow
// plugin never blocks the router.
#pragma once

#include <renkei/plugin_context.hpp>
#include <renkei/plugin_endpoint.hpp>

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>

namespace renkei {

class InProcessPlugin : public PluginEndpoint {
public:
    InProcessPlugin(std::string instance_name, std::shared_ptr<LoadedPlugin> library,
                    std::unique_ptr<PluginContext> context, DeliveryRetry retry = {});
    ~InProcessPlugin() override;

    const PluginInfo& info() const override { return library_->info(); }
    const std::string& instance_name() const override { return name_; }
    void start() override;
    void deliver(Delivery delivery) override;
    void wake() noexcept override;
    void stop() override;
    EndpointStatus status() const override;

private:
    void run();

    std::string name_;
    // Declared first so it is destroyed last: the library outlives the instance it created.
    std::shared_ptr<LoadedPlugin> library_;
    std::unique_ptr<PluginContext> context_;
    DeliveryRetry retry_;
    void* instance_ = nullptr;

    mutable std::mutex mutex_;
    std::condition_variable cv_;
    std::deque<Delivery> queue_;
    bool stopping_ = false;
    bool started_ = false;
    uint64_t in_flight_ = 0, handled_ = 0, failed_ = 0;
    std::string state_ = "created";
    std::thread worker_;
};

} // namespace renkei
