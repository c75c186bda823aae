// Claims a newer ABI minor than the host knows: refused (it may rely on host functions the host lacks).
#include <renkei/plugin.h>

#include <cstdlib>

namespace {
const char* const types[] = {"bad.Minor", nullptr};
int32_t never(const renkei_host_api*, void**, renkei_error*) { std::abort(); }
int32_t never_start(void*, renkei_error*) { std::abort(); }
int32_t never_handle(void*, const uint8_t*, size_t, renkei_error*) { std::abort(); }
void never_stop(void*) { std::abort(); }
const renkei_plugin_descriptor descriptor{RENKEI_ABI_MAJOR, RENKEI_ABI_MINOR + 1, sizeof(renkei_plugin_descriptor),
                                          RENKEI_KIND_ADAPTER, "bad-minor", "0.0.1", types, never,
                                          never_start, never_handle, never_stop, never_stop, nullptr};
} // namespace
RENKEI_DEFINE_ENTRY(descriptor)
