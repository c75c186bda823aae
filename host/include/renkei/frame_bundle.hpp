// Frame bundles: several frames for one peer in one ZeroMQ message (transport.hpp), so CURVE's
// per-message work, the I/O threads' and the syscalls are paid once per bundle, not per frame.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace renkei {

// The bundle layout: a header of 8 bytes that no Cap'n Proto message starts with (FF FF FF FF, a
// segment count that cannot be, then "RKB1"), the frame count (u32, little-endian, at least 2) and
// 4 zero bytes; then each frame as its length (u32 LE, at least 1), 4 zero bytes, and its bytes
// padded with zeros to a multiple of 8, so each frame starts 8-aligned within the bundle. Nothing
// may follow the last frame.
namespace frame_bundle {
constexpr size_t kHeader = 16, kFrameHeader = 8;
constexpr size_t padded(size_t n) { return (n + 7) & ~size_t{7}; }
// Appends the bundle of `frames` (two or more, none empty) to `out`.
void encode(const std::vector<const std::vector<uint8_t>*>& frames, std::vector<uint8_t>& out);
// The same written to `out`, which has room for exactly encoded_size(frames) bytes (a ZeroMQ
// message's, so the bundle is not copied again to be sent).
size_t encoded_size(const std::vector<const std::vector<uint8_t>*>& frames);
void encode_into(const std::vector<const std::vector<uint8_t>*>& frames, uint8_t* out);
bool is_bundle(const uint8_t* data, size_t size);
// Checks the whole bundle, then calls `each` for every frame in order. Returns why it is malformed
// (naming the frame and the rule) without calling `each` at all, or an empty string.
std::string decode(const uint8_t* data, size_t size, const std::function<void(const uint8_t*, size_t)>& each);
} // namespace frame_bundle

} // namespace renkei
