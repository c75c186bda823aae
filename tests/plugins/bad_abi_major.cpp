// Claims ABI 2.x: the host must refuse it before calling anything.
#include <renkei/plugin.h>

#include <cstdlib>

namespace {
const char* const types[] = {"bad.Major", nullptr};
int32_t never(const renkei_host_api*, void**, renkei_error*) { std::abort(); }
int32_t never_start(void*, renkei_error*) { std::abort(); }
int32_t never_handle(void*, const uint8_t*, size_t, renkei_error*) { std::abort(); }
void never_stop(void*) { std::abort(); }
const renkei_plugin_descriptor descriptor{RENKEI_ABI_MAJOR + 1, 0, sizeof(renkei_plugin_descriptor),
                                          RENKEI_KIND_ADAPTER, "bad-major", "0.0.1", types, never,
                                          never_start, never_handle, never_stop, never_stop, nullptr};
} // namespace
RENKEI_DEFINE_ENTRY(descriptor)
