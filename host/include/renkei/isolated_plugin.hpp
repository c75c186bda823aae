// A plugin running in a child process ("renkei plugin-runner") that speaks isolation.capnp over
// ipc://. A crash of the child is logged, the child is restarted with back-off, and every message
// it had not acknowledged is delivered again; a message that kills the plugin repeatedly is
// failed instead of crashing it forever.
#pragma once

#include <renkei/host_services.hpp>
#include <renkei/plugin_endpoint.hpp>

#include <toml++/toml.h>

#include <condition_variable>
#include <deque>
#include <filesystem>
#include <future>
#include <map>
#include <mutex>
#include <thread>

namespace renkei {

class ChildLink;

class IsolatedPlugin : public PluginEndpoint {
public:
    struct Options {
        std::filesystem::path runner;      // the renkei executable
        std::filesystem::path plugin_path; // the .so
        std::filesystem::path run_dir;     // where the ipc socket lives (created 0700)
        std::string log_level = "info";
        uint32_t window = 64;              // deliveries in flight to the child
        uint32_t first_backoff_ms = 100;   // restart back-off, doubling ...
        uint32_t max_backoff_ms = 10000;   // ... up to this
        uint32_t max_crashes_per_message = 3;
        uint32_t start_timeout_ms = 15000;
        DeliveryRetry retry;
    };

    IsolatedPlugin(std::string instance_name, Options options, toml::table settings,
                   HostServices& services);
    ~IsolatedPlugin() override;

    // Valid after start().
    const PluginInfo& info() const override { return info_; }
    const std::string& instance_name() const override { return name_; }
    void start() override;
    void deliver(Delivery delivery) override;
    void wake() noexcept override;
    void stop() override;
    EndpointStatus status() const override;
    // The running child's pid (0 when none), for tests and operators.
    int child_pid() const;

private:
    struct InFlight {
        Delivery delivery;
        uint32_t attempts = 0;
    };
    void run(std::promise<void> started);
    bool spawn_and_handshake(ChildLink& link, std::string& error);
    void reap_child(ChildLink& link, bool crashed);

    std::string name_;
    Options options_;
    toml::table settings_;
    HostServices& services_;
    PluginInfo info_;

    mutable std::mutex mutex_;
    std::condition_variable cv_;
    std::deque<Delivery> queue_;
    std::map<uint64_t, InFlight> in_flight_; // by seq, in delivery order
    uint64_t next_seq_ = 1;
    bool stopping_ = false;
    std::string state_ = "created";
    uint64_t handled_ = 0, failed_ = 0, restarts_ = 0;
    int pid_ = 0;
    int wake_fd_ = -1; // eventfd: wakes the I/O thread when work arrives
    std::thread io_;
};

// Entry point of "renkei plugin-runner": loads the plugin and serves the host over `endpoint`.
int run_plugin_runner(const std::string& plugin_path, const std::string& endpoint);

} // namespace renkei
