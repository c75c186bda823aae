// Counters and gauges exported as Prometheus text on /metrics.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <shared_mutex>
#include <string>
#include <utility>

namespace renkei {

// Message counters for one (message type, plugin) pair. Increments are lock-free; callers cache
// the pointer, which stays valid for the registry's lifetime.
struct MessageCounters {
    std::atomic<uint64_t> in{0};
    std::atomic<uint64_t> out{0};
    std::atomic<uint64_t> failed{0};
};

class Metrics {
public:
    Metrics();
    Metrics(const Metrics&) = delete;
    Metrics& operator=(const Metrics&) = delete;

    // The counters of (type, plugin), made on first use. A thread asking for one of the few pairs
    // it asked for last gets it without a lock or a lookup.
    MessageCounters& counters(const std::string& type, const std::string& plugin);

    // A gauge read at scrape time (e.g. a queue depth). `read` must stay callable while registered.
    void gauge(const std::string& name, const std::string& labels, std::function<double()> read);
    void remove_gauges_with_label(const std::string& labels);

    // Prometheus text exposition format 0.0.4.
    std::string render() const;

private:
    const uint64_t serial_; // this registry among all made in the process (never reused)
    mutable std::shared_mutex mutex_;
    std::map<std::pair<std::string, std::string>, std::unique_ptr<MessageCounters>> counters_;
    std::map<std::pair<std::string, std::string>, std::function<double()>> gauges_;
};

} // namespace renkei
