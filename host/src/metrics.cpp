#include <renkei/metrics.hpp>

#include <array>
#include <mutex>
#include <sstream>

namespace renkei {
namespace {
// Label values are escaped per the exposition format: backslash, quote, newline.
std::string escape(const std::string& v) {
    std::string out;
    for (char c : v) {
        if (c == '\\' || c == '"') out.push_back('\\');
        if (c == '\n') {
            out += "\\n";
            continue;
        }
        out.push_back(c);
    }
    return out;
}

std::atomic<uint64_t> registries{0}; // Metrics made so far: each takes the next as its serial
} // namespace

Metrics::Metrics() : serial_(++registries) {}

MessageCounters& Metrics::counters(const std::string& type, const std::string& plugin) {
    // The pairs this thread asked for last (a sending thread asks for two a message: its plugin's
    // and the transport's). Counters live as long as their registry, which the serial (never
    // reused) names.
    struct Recent {
        uint64_t registry = 0;
        std::string type, plugin;
        MessageCounters* counters = nullptr;
    };
    thread_local std::array<Recent, 4> recent;
    thread_local size_t next = 0;
    for (auto& r : recent)
        if (r.registry == serial_ && r.type == type && r.plugin == plugin) return *r.counters;
    MessageCounters* found = nullptr;
    auto key = std::make_pair(type, plugin);
    {
        std::shared_lock lock(mutex_);
        if (auto it = counters_.find(key); it != counters_.end()) found = it->second.get();
    }
    if (!found) {
        std::unique_lock lock(mutex_);
        auto& slot = counters_[key];
        if (!slot) slot = std::make_unique<MessageCounters>();
        found = slot.get();
    }
    auto& r = recent[next++ % recent.size()];
    r.registry = serial_;
    r.type = type;
    r.plugin = plugin;
    r.counters = found;
    return *found;
}

void Metrics::gauge(const std::string& name, const std::string& labels,
                    std::function<double()> read) {
    std::unique_lock lock(mutex_);
    gauges_[{name, labels}] = std::move(read);
}

void Metrics::remove_gauges_with_label(const std::string& labels) {
    std::unique_lock lock(mutex_);
    for (auto it = gauges_.begin(); it != gauges_.end();) {
        if (it->first.second == labels)
            it = gauges_.erase(it);
        else
            ++it;
    }
}

std::string Metrics::render() const {
    std::shared_lock lock(mutex_);
    std::ostringstream out;
    const char* names[] = {"renkei_messages_in_total", "renkei_messages_out_total",
                           "renkei_messages_failed_total"};
    const char* help[] = {"Messages delivered to a plugin", "Messages sent by a plugin",
                          "Messages a plugin or the host failed"};
    for (int i = 0; i < 3; ++i) {
        out << "# HELP " << names[i] << ' ' << help[i] << "\n# TYPE " << names[i] << " counter\n";
        for (auto& [key, c] : counters_) {
            uint64_t v = i == 0 ? c->in.load() : i == 1 ? c->out.load() : c->failed.load();
            out << names[i] << "{type=\"" << escape(key.first) << "\",plugin=\""
                << escape(key.second) << "\"} " << v << '\n';
        }
    }
    std::string last;
    for (auto& [key, read] : gauges_) {
        if (key.first != last) {
            out << "# TYPE " << key.first << " gauge\n";
            last = key.first;
        }
        out << key.first;
        if (!key.second.empty()) out << '{' << key.second << '}';
        out << ' ' << read() << '\n';
    }
    return out.str();
}

} // namespace renkei
