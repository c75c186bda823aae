#include <renkei/log.hpp>

#include <spdlog/sinks/stdout_color_sinks.h>

#include <mutex>

#include <pthread.h>

namespace renkei {
namespace {
std::mutex g_mutex;
spdlog::sink_ptr g_sink;
spdlog::level::level_enum g_level = spdlog::level::info;
std::string g_pattern = "%Y-%m-%dT%H:%M:%S.%e%z %^%-5l%$ [%n] %v";

spdlog::sink_ptr sink_locked() {
    if (!g_sink) g_sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
    return g_sink;
}
} // namespace

void init_logging(const std::string& level, bool json) {
    std::lock_guard lock(g_mutex);
    g_level = spdlog::level::from_str(level);
    if (json)
        g_pattern = R"({"time":"%Y-%m-%dT%H:%M:%S.%e%z","level":"%l","component":"%n","msg":"%v"})";
    auto sink = sink_locked();
    sink->set_pattern(g_pattern);
    spdlog::apply_all([&](std::shared_ptr<spdlog::logger> l) {
        l->set_level(g_level);
    });
}

std::shared_ptr<spdlog::logger> logger(const std::string& name) {
    if (auto l = spdlog::get(name)) return l;
    std::lock_guard lock(g_mutex);
    if (auto l = spdlog::get(name)) return l;
    auto sink = sink_locked();
    sink->set_pattern(g_pattern);
    auto l = std::make_shared<spdlog::logger>(name, sink);
    l->set_level(g_level);
    spdlog::register_logger(l);
    return l;
}

void name_thread(const std::string& name) { pthread_setname_np(pthread_self(), name.substr(0, 15).c_str()); }

} // namespace renkei
