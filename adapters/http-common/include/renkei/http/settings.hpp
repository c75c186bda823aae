// Reading an adapter's settings with errors that name the setting and the rule.
#pragma once

#include <renkei/sdk.hpp>

#include <sys/stat.h>

#include <cstdint>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace renkei::http {

inline int64_t integer_setting(sdk::Host& host, const std::string& key, int64_t fallback, int64_t min, int64_t max) {
    auto v = host.config(key);
    if (!v) return fallback;
    int64_t n = 0;
    size_t used = 0;
    try {
        n = std::stoll(*v, &used);
    } catch (const std::exception&) {
        used = 0;
    }
    if (used == 0 || used != v->size() || n < min || n > max)
        throw sdk::Error(RENKEI_ERR_INVALID,
                         "settings." + key + ": must be a whole number " + std::to_string(min) + ".." + std::to_string(max),
                         "settings." + key, "settings.range");
    return n;
}

inline bool bool_setting(sdk::Host& host, const std::string& key, bool fallback) {
    auto v = host.config(key);
    if (!v) return fallback;
    if (*v == "true") return true;
    if (*v == "false") return false;
    throw sdk::Error(RENKEI_ERR_INVALID, "settings." + key + ": must be true or false", "settings." + key, "settings.bool");
}

// A secret from a file only its owner may read (0600 or stricter); at least `min_bytes` long
// (a trailing newline is not part of it).
inline std::vector<uint8_t> secret_file(const std::string& file, const std::string& setting, size_t min_bytes) {
    struct stat st {};
    if (::stat(file.c_str(), &st) != 0)
        throw sdk::Error(RENKEI_ERR_INVALID, setting + ": cannot read " + file, setting, "secret.readable");
    if ((st.st_mode & 077) != 0)
        throw sdk::Error(RENKEI_ERR_INVALID, setting + ": " + file + " is readable by group or others; chmod 600 it",
                         setting, "secret.mode_0600");
    std::ifstream in(file, std::ios::binary);
    std::vector<uint8_t> s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
    if (s.size() < min_bytes)
        throw sdk::Error(RENKEI_ERR_INVALID, setting + ": " + file + " holds " + std::to_string(s.size()) +
                                                 " bytes, at least " + std::to_string(min_bytes) + " required",
                         setting, "secret.length");
    return s;
}

} // namespace renkei::http
