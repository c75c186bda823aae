// What the host does for plugins: routing their messages, crypto with host-held keys, the clock.
// The C function table (plugin_context.hpp) and the isolated-plugin bridge both call into this.
#pragma once

#include <renkei/calendar.hpp>
#include <renkei/plugin.h>

#include <kj/common.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace renkei {

// A failure to report back across the ABI as a status and message.
class HostCallError : public std::runtime_error {
public:
    HostCallError(renkei_status code, const std::string& message)
        : std::runtime_error(message), code_(code) {}
    renkei_status code() const { return code_; }

private:
    renkei_status code_;
};

class HostServices {
public:
    virtual ~HostServices() = default;

    // Accepts an envelope (flat Cap'n Proto bytes) sent by `plugin`. Throws HostCallError.
    virtual void submit_from_plugin(const std::string& plugin,
                                    kj::ArrayPtr<const kj::byte> envelope) = 0;
    virtual std::vector<uint8_t> sign(const std::string& key_name,
                                      kj::ArrayPtr<const kj::byte> data) = 0;
    virtual bool verify(const std::string& node_id, kj::ArrayPtr<const kj::byte> data,
                        kj::ArrayPtr<const kj::byte> signature) = 0;
    virtual std::vector<uint8_t> seal(const std::string& recipient,
                                      kj::ArrayPtr<const kj::byte> data) = 0;
    virtual std::vector<uint8_t> open(kj::ArrayPtr<const kj::byte> sealed) = 0;
    virtual int64_t now_unix_ms() = 0;
    // The node's operating calendar, if it has one to offer plugins ("renkei.calendar.v1").
    virtual const OperatingCalendar* calendar() const { return nullptr; }
};

} // namespace renkei
