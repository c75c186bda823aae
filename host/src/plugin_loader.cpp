#include <renkei/plugin_loader.hpp>

#include <boost/dll/import.hpp>

#include <dlfcn.h>

#include <cstddef>
#include <cstring>

namespace renkei {
namespace {

constexpr size_t kMaxTypes = 4096;
constexpr size_t kMaxString = 256;

// Bytes of the v1 descriptor up to and including `destroy`: a plugin must provide at least these.
constexpr size_t kMinDescriptorSize =
    offsetof(renkei_plugin_descriptor, destroy) + sizeof(renkei_plugin_descriptor::destroy);

std::string bounded(const char* s, const std::string& what, const std::string& file) {
    if (s == nullptr) throw PluginLoadError(file + ": descriptor field '" + what + "' is NULL");
    size_t n = strnlen(s, kMaxString + 1);
    if (n == 0) throw PluginLoadError(file + ": descriptor field '" + what + "' is empty");
    if (n > kMaxString)
        throw PluginLoadError(file + ": descriptor field '" + what + "' is longer than " +
                              std::to_string(kMaxString) + " bytes");
    return std::string(s, n);
}

// Boost.DLL clears dlerror() on failure; load once more through dlopen only to recover the
// loader's own diagnostic (e.g. "undefined symbol: foo").
std::string dlopen_diagnostic(const std::filesystem::path& path) {
    void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (h != nullptr) {
        dlclose(h);
        return {};
    }
    const char* e = dlerror();
    return e != nullptr ? e : "";
}

std::string version_text(uint32_t major, uint32_t minor) {
    return std::to_string(major) + "." + std::to_string(minor);
}

} // namespace

std::string PluginInfo::kind_name() const {
    switch (kind) {
    case RENKEI_KIND_BUSINESS: return "business";
    case RENKEI_KIND_ADAPTER: return "adapter";
    default: return "unknown(" + std::to_string(kind) + ")";
    }
}

bool type_matches(const std::string& pattern, const std::string& type) {
    if (pattern.size() >= 2 && pattern.compare(pattern.size() - 2, 2, ".*") == 0)
        return type.size() >= pattern.size() - 1 &&
               type.compare(0, pattern.size() - 1, pattern, 0, pattern.size() - 1) == 0;
    return pattern == type;
}

std::shared_ptr<LoadedPlugin> load_plugin(const std::filesystem::path& path) {
    const std::string file = path.string();
    std::error_code fec;
    if (!std::filesystem::is_regular_file(path, fec))
        throw PluginLoadError(file + ": no such plugin file");

    std::shared_ptr<LoadedPlugin> p(new LoadedPlugin());
    boost::dll::fs::error_code ec;
    p->library_.load(path, boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local, ec);
    if (ec) {
        std::string why = dlopen_diagnostic(path);
        throw PluginLoadError(file + ": cannot load library: " + (why.empty() ? ec.message() : why));
    }
    if (!p->library_.has(RENKEI_ENTRY_SYMBOL))
        throw PluginLoadError(file + ": missing entry symbol '" RENKEI_ENTRY_SYMBOL
                              "' (not a renkei plugin, or built without RENKEI_PLUGIN)");

    auto& entry = p->library_.get<const renkei_plugin_descriptor*()>(RENKEI_ENTRY_SYMBOL);
    const renkei_plugin_descriptor* d = entry();
    if (d == nullptr) throw PluginLoadError(file + ": " RENKEI_ENTRY_SYMBOL " returned NULL");

    // Read the three header words first; nothing else is trusted until they check out.
    uint32_t major = d->abi_major, minor = d->abi_minor, size = d->struct_size;
    std::string name = d->name != nullptr ? std::string(d->name, strnlen(d->name, kMaxString))
                                          : std::string("<unnamed>");
    const std::string who = "plugin '" + name + "' (" + file + ")";
    if (major != RENKEI_ABI_MAJOR)
        throw PluginLoadError(who + " was built for ABI " + version_text(major, minor) +
                              " but this host speaks ABI " +
                              version_text(RENKEI_ABI_MAJOR, RENKEI_ABI_MINOR) +
                              ": the major versions differ");
    if (minor > RENKEI_ABI_MINOR)
        throw PluginLoadError(who + " was built for ABI " + version_text(major, minor) +
                              ", newer than this host's ABI " +
                              version_text(RENKEI_ABI_MAJOR, RENKEI_ABI_MINOR) +
                              ": upgrade the host or rebuild the plugin against this SDK");
    if (size < kMinDescriptorSize)
        throw PluginLoadError(who + ": descriptor struct_size " + std::to_string(size) +
                              " is smaller than the ABI 1 minimum of " +
                              std::to_string(kMinDescriptorSize));

    std::memcpy(&p->descriptor_, d, std::min<size_t>(size, sizeof(renkei_plugin_descriptor)));
    const auto& desc = p->descriptor_;
    if (desc.create == nullptr || desc.start == nullptr || desc.handle == nullptr ||
        desc.stop == nullptr || desc.destroy == nullptr)
        throw PluginLoadError(who + ": descriptor lacks one of create/start/handle/stop/destroy");

    PluginInfo& info = p->info_;
    info.name = bounded(desc.name, "name", file);
    info.version = bounded(desc.version, "version", file);
    info.kind = desc.kind;
    info.abi_major = major;
    info.abi_minor = minor;
    info.path = std::filesystem::absolute(path);
    if (desc.kind != RENKEI_KIND_BUSINESS && desc.kind != RENKEI_KIND_ADAPTER)
        throw PluginLoadError(who + ": kind " + std::to_string(desc.kind) +
                              " is neither business (1) nor adapter (2)");
    if (desc.message_types == nullptr)
        throw PluginLoadError(who + ": message_types is NULL (declare at least one type)");
    for (size_t i = 0; desc.message_types[i] != nullptr; ++i) {
        if (i >= kMaxTypes)
            throw PluginLoadError(who + ": more than " + std::to_string(kMaxTypes) +
                                  " message types (missing NULL terminator?)");
        std::string t = bounded(desc.message_types[i], "message_types[" + std::to_string(i) + "]",
                                file);
        if (t.find('.') == std::string::npos || t.front() == '.' || t.back() == '.')
            throw PluginLoadError(who + ": message type '" + t +
                                  "' must look like '<plugin>.<Message>'");
        info.message_types.push_back(std::move(t));
    }
    if (info.message_types.empty())
        throw PluginLoadError(who + ": declares no message types");
    return p;
}

} // namespace renkei
