#include <renkei/recent_ids.hpp>

#include <algorithm>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>

namespace renkei {

RecentIds::RecentIds(size_t capacity) : capacity_(capacity), index_(16, kEmpty) {
    if (capacity == 0 || capacity > UINT32_MAX / 4)
        throw std::invalid_argument("recent ids: capacity must be between 1 and " + std::to_string(UINT32_MAX / 4) +
                                    " (got " + std::to_string(capacity) + ")");
    std::random_device random;
    for (auto& k : key_) k = (uint64_t(random()) << 32) ^ random();
}

namespace {

// MurmurHash3's 64-bit finaliser: every input bit reaches every output bit, so ids that differ
// anywhere (in the random tail, or only in a counter's high byte) spread over the whole index.
uint64_t mix(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    return x ^ (x >> 33);
}

} // namespace

size_t RecentIds::slot_of(const MessageId& id) const {
    uint64_t a, b;
    std::memcpy(&a, id.data(), 8);
    std::memcpy(&b, id.data() + 8, 8);
    return static_cast<size_t>(mix(mix(a ^ key_[0]) ^ b ^ key_[1])) & (index_.size() - 1);
}

size_t RecentIds::find(const MessageId& id) const {
    const size_t mask = index_.size() - 1;
    for (size_t s = slot_of(id);; s = (s + 1) & mask) // ends: the index is never more than half full
        if (index_[s] == kEmpty || ring_[index_[s]] == id) return s;
}

bool RecentIds::contains(const MessageId& id) const { return index_[find(id)] != kEmpty; }

void RecentIds::erase_slot(size_t slot) {
    // Backward shift: each later entry of the run that may live in the hole moves into it, so no
    // probe ever stops early at a gap.
    const size_t mask = index_.size() - 1;
    size_t hole = slot;
    for (size_t j = (slot + 1) & mask; index_[j] != kEmpty; j = (j + 1) & mask) {
        size_t home = slot_of(ring_[index_[j]]);
        bool between = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
        if (!between) {
            index_[hole] = index_[j];
            hole = j;
        }
    }
    index_[hole] = kEmpty;
}

void RecentIds::grow() {
    index_.assign(index_.size() * 2, kEmpty);
    const size_t mask = index_.size() - 1;
    for (size_t p = 0; p < ring_.size(); ++p) { // not yet wrapped: every position holds an id
        size_t s = slot_of(ring_[p]);
        while (index_[s] != kEmpty) s = (s + 1) & mask;
        index_[s] = static_cast<uint32_t>(p);
    }
}

void RecentIds::insert(const MessageId& id) {
    if (index_[find(id)] != kEmpty) return;
    size_t pos;
    if (size_ == capacity_) { // the oldest makes room
        erase_slot(find(ring_[oldest_]));
        pos = oldest_;
        ring_[pos] = id;
        oldest_ = (oldest_ + 1) % capacity_;
    } else {
        if (2 * (size_ + 1) > index_.size()) grow();
        pos = ring_.size();
        ring_.push_back(id);
        ++size_;
    }
    index_[find(id)] = static_cast<uint32_t>(pos);
}

void RecentIds::clear() {
    ring_.clear();
    std::fill(index_.begin(), index_.end(), kEmpty);
    oldest_ = 0;
    size_ = 0;
}

} // namespace renkei
