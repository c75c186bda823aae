// One plugin instance's view of the host: the C function table handed to `create`, bound to the
// plugin's name, its settings and the host services.
#pragma once

#include <renkei/host_services.hpp>
#include <renkei/plugin.h>
#include <renkei/plugin_store.hpp>

#include <spdlog/logger.h>
#include <toml++/toml.h>

#include <memory>
#include <optional>
#include <string>

namespace renkei {

// The setting at dotted `key` of a plugin's [plugin.settings] rendered as text, as the plugin reads
// it through config_get (strings verbatim, other values as TOML); nullopt when it is not set.
std::optional<std::string> setting_text(const toml::table& settings, const std::string& key);

class PluginContext {
public:
    // `store_file`: where "renkei.store.v1" keeps this instance's data (empty: not offered).
    PluginContext(std::string plugin_name, toml::table settings, HostServices& services,
                  std::filesystem::path store_file = {});
    PluginContext(const PluginContext&) = delete;
    PluginContext& operator=(const PluginContext&) = delete;

    // Valid as long as this context lives.
    const renkei_host_api* api() const { return &api_; }
    const std::string& plugin_name() const { return name_; }
    HostServices& services() { return services_; }

    // The setting at dotted `key` rendered as text (strings verbatim, other values as TOML).
    std::optional<std::string> setting(const std::string& key) const;
    void log(int32_t level, const char* message) const;
    // The store, opened on the plugin's first request for it; null if it never asked.
    PluginStore* store() const { return store_.get(); }
    const void* interface(const char* id);

private:
    std::string name_;
    toml::table settings_;
    HostServices& services_;
    std::shared_ptr<spdlog::logger> log_;
    renkei_host_api api_{};
    std::filesystem::path store_file_;
    std::unique_ptr<PluginStore> store_;
};

} // namespace renkei
