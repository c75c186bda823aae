#include <renkei/recent_ids.hpp>

#include <algorithm>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>

namespace renkei {
namespace {

// A hash key drawn afresh in each process, so a peer cannot choose ids that collide.
void random_key(uint64_t (&key)[2]) {
    std::random_device random;
    for (auto& k : key) k = (uint64_t(random()) << 32) ^ random();
}

// An id's two 64-bit halves.
void halves(const MessageId& id, uint64_t& a, uint64_t& b) {
    std::memcpy(&a, id.data(), 8);
    std::memcpy(&b, id.data() + 8, 8);
}

} // namespace

RecentIds::RecentIds(size_t capacity) : capacity_(capacity), index_(16, kEmpty) {
    if (capacity == 0 || capacity > UINT32_MAX / 4)
        throw std::invalid_argument("recent ids: capacity must be between 1 and " + std::to_string(UINT32_MAX / 4) +
                                    " (got " + std::to_string(capacity) + ")");
    random_key(key_);
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

uint32_t RecentIds::hash_of(const MessageId& id) const {
    uint64_t a, b;
    halves(id, a, b);
    return static_cast<uint32_t>(mix(mix(a ^ key_[0]) ^ b ^ key_[1]));
}

size_t RecentIds::find(const MessageId& id, uint32_t h) const {
    const size_t mask = index_.size() - 1;
    for (size_t s = h & mask;; s = (s + 1) & mask) { // ends: the index is never more than half full
        const uint64_t e = index_[s];
        if (e == kEmpty || (static_cast<uint32_t>(e >> 32) == h && ring_[static_cast<uint32_t>(e)] == id)) return s;
    }
}

bool RecentIds::contains(const MessageId& id) const { return index_[find(id, hash_of(id))] != kEmpty; }

void RecentIds::erase_slot(size_t slot) {
    // Backward shift: each later entry of the run that may live in the hole moves into it, so no
    // probe ever stops early at a gap.
    const size_t mask = index_.size() - 1;
    size_t hole = slot;
    for (size_t j = (slot + 1) & mask; index_[j] != kEmpty; j = (j + 1) & mask) {
        size_t home = static_cast<size_t>(index_[j] >> 32) & mask;
        bool between = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
        if (!between) {
            index_[hole] = index_[j];
            hole = j;
        }
    }
    index_[hole] = kEmpty;
}

void RecentIds::grow() {
    std::vector<uint64_t> old(index_.size() * 2, kEmpty);
    old.swap(index_);
    const size_t mask = index_.size() - 1;
    for (uint64_t e : old) { // each entry's hash says where it goes: the ring is not read
        if (e == kEmpty) continue;
        size_t s = static_cast<size_t>(e >> 32) & mask;
        while (index_[s] != kEmpty) s = (s + 1) & mask;
        index_[s] = e;
    }
}

void RecentIds::insert(const MessageId& id) {
    const uint32_t h = hash_of(id);
    size_t slot = find(id, h);
    if (index_[slot] != kEmpty) return;
    size_t pos;
    if (size_ == capacity_) { // the oldest makes room
        const MessageId& oldest = ring_[oldest_];
        erase_slot(find(oldest, hash_of(oldest)));
        pos = oldest_;
        ring_[pos] = id;
        oldest_ = (oldest_ + 1) % capacity_;
        slot = find(id, h); // the shift may have moved the end of its run
    } else {
        if (2 * (size_ + 1) > index_.size()) {
            grow();
            slot = find(id, h);
        }
        pos = ring_.size();
        ring_.push_back(id);
        ++size_;
    }
    index_[slot] = uint64_t{h} << 32 | pos;
}

void RecentIds::clear() {
    ring_.clear();
    std::fill(index_.begin(), index_.end(), kEmpty);
    oldest_ = 0;
    size_ = 0;
}

IdFilter::IdFilter(uint64_t expected) {
    uint64_t bits = uint64_t(1) << 16;
    while (bits < (uint64_t(1) << 32) && bits / 16 < expected) bits <<= 1;
    words_.assign(bits / 64, 0);
    mask_ = bits - 1;
    capacity_ = bits / 16;
    random_key(key_);
}

namespace {

constexpr int kFilterProbes = 4;

// Two independent hashes of `id`; probe i is h1 + i * h2 (Kirsch and Mitzenmacher).
void filter_hashes(const MessageId& id, const uint64_t key[2], uint64_t& h1, uint64_t& h2) {
    uint64_t a, b;
    halves(id, a, b);
    h1 = mix(mix(a ^ key[0]) ^ b);
    h2 = mix(mix(b ^ key[1]) ^ a) | 1;
}

} // namespace

void IdFilter::add(const MessageId& id) {
    uint64_t h1, h2;
    filter_hashes(id, key_, h1, h2);
    for (int i = 0; i < kFilterProbes; ++i, h1 += h2) words_[(h1 & mask_) >> 6] |= uint64_t(1) << (h1 & 63);
    ++added_;
}

bool IdFilter::may_contain(const MessageId& id) const {
    uint64_t h1, h2;
    filter_hashes(id, key_, h1, h2);
    for (int i = 0; i < kFilterProbes; ++i, h1 += h2)
        if (!(words_[(h1 & mask_) >> 6] >> (h1 & 63) & 1)) return false;
    return true;
}

} // namespace renkei
