// Small helpers the juki and adapter tests share: the example policies, a message as bytes, and
// a payload read back as a juki struct.
#pragma once

#include "test_support.hpp"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <renkei/sdk.hpp>

#include <string>

namespace renkei::test {

// examples/policy/<name> (the policies a deployment starts from).
inline std::string policy(const char* name) {
    return read_file(std::string(RENKEI_SOURCE_DIR) + "/examples/policy/" + name);
}

// The message as flat bytes (a payload for submit_new).
inline std::string flat(capnp::MallocMessageBuilder& mb) {
    auto words = capnp::messageToFlatArray(mb);
    auto b = words.asBytes();
    return std::string(reinterpret_cast<const char*>(b.begin()), b.size());
}

// A received payload read as T.
template <typename T> struct Parsed : sdk::Flat<T> {
    explicit Parsed(const std::string& payload) : sdk::Flat<T>(sdk::bytes_of(payload.data(), payload.size()), 64) {}
};

} // namespace renkei::test
