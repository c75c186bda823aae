// The newest message ids seen, up to a fixed number, forgetting the oldest: what a link with
// delivery = "memory" deduplicates against instead of inbox.db.
//
// A ring holds the ids in the order they came; an open-addressing index (linear probing, never
// more than half full) points into it. Nothing is allocated per id, a lookup touches one or two
// cache lines, and the index is hashed under a random key of this process, so ids chosen by a
// peer cannot be made to pile up in one run of the table.
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
    static constexpr uint32_t kEmpty = UINT32_MAX;
    size_t slot_of(const MessageId& id) const; // where its probe starts
    // The index slot pointing at `id` in the ring, or the empty slot where it would go.
    size_t find(const MessageId& id) const;
    void erase_slot(size_t slot);
    void grow();

    size_t capacity_;
    std::vector<MessageId> ring_; // grows to capacity_, then wraps
    size_t oldest_ = 0;           // ring position of the oldest id once the ring is full
    size_t size_ = 0;
    std::vector<uint32_t> index_; // ring positions; a power of two at least twice size_
    uint64_t key_[2];
};

} // namespace renkei
