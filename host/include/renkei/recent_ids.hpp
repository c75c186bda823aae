// The newest message ids seen, up to a fixed number, forgetting the oldest: what a link with
// delivery = "memory" deduplicates against instead of inbox.db.
//
// A ring holds the ids in the order they came; an open-addressing index (linear probing, never
// more than half full) points into it. Each index slot keeps 32 bits of its id's hash beside the
// ring position, so a probe reads the ring only for a likely match: a lookup touches about one
// cache line of the index, and one of the ring when the id is there. Nothing is allocated per id,
// and the index is hashed under a random key of this process, so ids chosen by a peer cannot be
// made to pile up in one run of the table.
#pragma once

#include <renkei/envelope.hpp>

#include <cstdint>
#include <vector>

namespace renkei {

class RecentIds {
public:
    explicit RecentIds(size_t capacity); // at least 1
    bool contains(const MessageId& id) const;
    // Adds `id` (nothing if it is there already), forgetting the oldest beyond the capacity.
    void insert(const MessageId& id);
    void clear();
    size_t size() const { return size_; }

private:
    // An index slot: kEmpty, or the low 32 bits of the id's hash (where its probe starts, and a
    // filter: a probe reads the ring only when they match) over its ring position.
    static constexpr uint64_t kEmpty = UINT64_MAX;
    uint32_t hash_of(const MessageId& id) const;
    // The index slot pointing at `id` (whose hash is `h`) in the ring, or the empty slot where it
    // would go.
    size_t find(const MessageId& id, uint32_t h) const;
    void erase_slot(size_t slot);
    void grow();

    size_t capacity_;
    std::vector<MessageId> ring_; // grows to capacity_, then wraps
    size_t oldest_ = 0;           // ring position of the oldest id once the ring is full
    size_t size_ = 0;
    std::vector<uint64_t> index_; // hash and ring position; a power of two at least twice size_
    uint64_t key_[2];
};

// A Bloom filter over message ids: "perhaps recorded" or "certainly not". It lets the durable
// dedup store answer most lookups of new ids without reading its file. Its hashes are keyed
// afresh in each process, so a peer cannot choose ids that collide. Not thread-safe.
class IdFilter {
public:
    // Sized for `expected` ids at 16 bits each (about 0.2% false positives when full): at least
    // 2^16 bits (8 KiB), at most 2^32 (512 MiB, 268 million ids).
    explicit IdFilter(uint64_t expected);
    void add(const MessageId& id);
    bool may_contain(const MessageId& id) const;
    uint64_t capacity() const { return capacity_; } // ids it holds at its design rate
    uint64_t added() const { return added_; }

private:
    std::vector<uint64_t> words_;
    uint64_t mask_;    // bits - 1
    uint64_t capacity_;
    uint64_t added_ = 0;
    uint64_t key_[2];
};

} // namespace renkei
