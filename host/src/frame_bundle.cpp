#include <renkei/frame_bundle.hpp>

#include <cstring>

namespace renkei {

namespace frame_bundle {

namespace {

constexpr uint8_t kMagic[8] = {0xFF, 0xFF, 0xFF, 0xFF, 'R', 'K', 'B', '1'};

void put_u32(uint8_t* at, uint32_t v) {
    for (int i = 0; i < 4; ++i) at[i] = static_cast<uint8_t>(v >> (8 * i));
}

uint32_t get_u32(const uint8_t* at) {
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= uint32_t{at[i]} << (8 * i);
    return v;
}

bool zeros(const uint8_t* at, size_t n) {
    for (size_t i = 0; i < n; ++i)
        if (at[i] != 0) return false;
    return true;
}

} // namespace

size_t encoded_size(const std::vector<const std::vector<uint8_t>*>& frames) {
    size_t size = kHeader;
    for (auto* f : frames) size += kFrameHeader + padded(f->size());
    return size;
}

void encode_into(const std::vector<const std::vector<uint8_t>*>& frames, uint8_t* p) {
    std::memcpy(p, kMagic, sizeof kMagic);
    put_u32(p + 8, static_cast<uint32_t>(frames.size()));
    std::memset(p + 12, 0, 4);
    p += kHeader;
    for (auto* f : frames) {
        put_u32(p, static_cast<uint32_t>(f->size()));
        std::memset(p + 4, 0, 4);
        std::memcpy(p + kFrameHeader, f->data(), f->size());
        std::memset(p + kFrameHeader + f->size(), 0, padded(f->size()) - f->size());
        p += kFrameHeader + padded(f->size());
    }
}

void encode(const std::vector<const std::vector<uint8_t>*>& frames, std::vector<uint8_t>& out) {
    size_t at = out.size();
    out.resize(at + encoded_size(frames));
    encode_into(frames, out.data() + at);
}

bool is_bundle(const uint8_t* data, size_t size) { return size >= sizeof kMagic && std::memcmp(data, kMagic, sizeof kMagic) == 0; }

std::string decode(const uint8_t* data, size_t size, const std::function<void(const uint8_t*, size_t)>& each) {
    if (!is_bundle(data, size)) return "header: not a bundle";
    if (size < kHeader) return "header: " + std::to_string(size) + " bytes, shorter than the 16 of a header";
    const uint32_t count = get_u32(data + 8);
    if (count < 2) return "count: " + std::to_string(count) + ", a bundle carries at least 2 frames";
    if (!zeros(data + 12, 4)) return "header: the reserved bytes are not zero";
    if (count > (size - kHeader) / (kFrameHeader + 8))
        return "count: " + std::to_string(count) + " frames cannot fit in " + std::to_string(size) + " bytes";
    size_t at = kHeader;
    for (uint32_t i = 0; i < count; ++i) {
        auto which = [&] { return "frame " + std::to_string(i + 1) + " of " + std::to_string(count); }; // only when refused
        if (size - at < kFrameHeader) return which() + ": its header runs past the end";
        const uint32_t n = get_u32(data + at);
        if (n == 0) return which() + ": length 0, a frame is never empty";
        if (!zeros(data + at + 4, 4)) return which() + ": the reserved bytes are not zero";
        if (padded(n) > size - at - kFrameHeader) return which() + ": length " + std::to_string(n) + " runs past the end";
        if (!zeros(data + at + kFrameHeader + n, padded(n) - n)) return which() + ": the padding is not zero";
        at += kFrameHeader + padded(n);
    }
    if (at != size) return std::to_string(size - at) + " bytes after the last frame";
    for (at = kHeader; at < size; at += kFrameHeader + padded(get_u32(data + at))) each(data + at + kFrameHeader, get_u32(data + at));
    return {};
}

} // namespace frame_bundle

} // namespace renkei
