// Loads plugin libraries with Boost.DLL and checks their ABI before calling anything else.
#pragma once

#include <renkei/plugin.h>

#include <boost/dll/shared_library.hpp>

#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace renkei {

class PluginLoadError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// What a plugin declared, copied out of the library (owned std::strings).
struct PluginInfo {
    std::string name;
    std::string version;
    uint32_t kind = 0;
    uint32_t abi_major = 0;
    uint32_t abi_minor = 0;
    std::vector<std::string> message_types;
    std::filesystem::path path;

    std::string kind_name() const;
};

// A loaded, checked plugin library. Everything created through its descriptor must be destroyed
// before the last shared_ptr to it goes away: holders of plugin instances keep a shared_ptr.
class LoadedPlugin {
public:
    const renkei_plugin_descriptor& descriptor() const { return descriptor_; }
    const PluginInfo& info() const { return info_; }

    LoadedPlugin(const LoadedPlugin&) = delete;
    LoadedPlugin& operator=(const LoadedPlugin&) = delete;

private:
    friend std::shared_ptr<LoadedPlugin> load_plugin(const std::filesystem::path&);
    LoadedPlugin() = default;

    boost::dll::shared_library library_;
    // The host's view: zero-filled, then min(struct_size, sizeof) bytes copied from the plugin.
    renkei_plugin_descriptor descriptor_{};
    PluginInfo info_;
};

// Loads `path`, resolves renkei_plugin_entry, and checks the descriptor: ABI major equal, ABI minor
// not newer than the host's, struct size large enough for the v1 fields, required functions and
// strings present. Throws PluginLoadError naming the file, the plugin and both versions.
std::shared_ptr<LoadedPlugin> load_plugin(const std::filesystem::path& path);

// Whether `pattern` (exact type or "prefix.*") matches `type`.
bool type_matches(const std::string& pattern, const std::string& type);

} // namespace renkei
