// One plugin instance's view of the host: the C function table handed to `create`, bound to the
// plugin's name, its settings and the host services.
#pragma once

#include <renkei/host_services.hpp>
#include <renkei/plugin.h>

#include <spdlog/logger.h>
#include <toml++/toml.h>

#include <memory>
#include <optional>
#include <string>

namespace renkei {

class PluginContext {
public:
    PluginContext(std::string plugin_name, toml::table settings, HostServices& services);
    PluginContext(const PluginContext&) = delete;
    PluginContext& operator=(const PluginContext&) = delete;

    // Valid as long as this context lives.
    const renkei_host_api* api() const { return &api_; }
    const std::string& plugin_name() const { return name_; }
    HostServices& services() { return services_; }

    // The setting at dotted `key` rendered as text (strings verbatim, other values as TOML).
    std::optional<std::string> setting(const std::string& key) const;
    void log(int32_t level, const char* message) const;

private:
    std::string name_;
    toml::table settings_;
    HostServices& services_;
    std::shared_ptr<spdlog::logger> log_;
    renkei_host_api api_{};
};

} // namespace renkei
