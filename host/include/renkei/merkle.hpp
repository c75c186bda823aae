// Batch signing: one Ed25519 signature over the SHA-256 Merkle root of many envelope bodies. Each
// envelope travels with its leaf index, the batch size and the sibling hashes up to the root, so a
// receiver checks any one envelope on its own (and verifies each root's signature only once).
//
// Leaves are SHA-256(0x00 || body), inner nodes SHA-256(0x01 || left || right) (domain separation,
// so a leaf can never pass for an inner node). A level with an odd count carries its last node up
// unchanged; the proof then has no sibling for that level. The signed message is
// "renkei-merkle-v1" || root, never a bare hash.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace renkei::merkle {

using Hash = std::array<uint8_t, 32>;

constexpr uint32_t kMaxLeaves = 1u << 16; // a batch bigger than this is refused by receivers

Hash leaf_hash(std::span<const uint8_t> body);

// The whole tree of a batch, built once: root() and every leaf's proof() without rehashing.
class Tree {
public:
    explicit Tree(std::vector<Hash> leaves); // must not be empty
    const Hash& root() const { return levels_.back()[0]; }
    // The sibling hashes from leaf `index` up to the root.
    std::vector<Hash> proof(uint32_t index) const;
    uint32_t size() const { return static_cast<uint32_t>(levels_[0].size()); }

private:
    std::vector<std::vector<Hash>> levels_; // leaves first, root last
};
// The root that `leaf` at `index` of a batch of `size` implies through `siblings`; empty when the
// proof has the wrong length for that position (the caller reports it as a bad proof).
bool root_from_proof(const Hash& leaf, uint32_t index, uint32_t size, std::span<const Hash> siblings,
                     Hash& out, std::string& why);
// The bytes a batch signature covers.
std::vector<uint8_t> signed_message(const Hash& root);

} // namespace renkei::merkle
