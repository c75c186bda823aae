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
#include <deque>
#include <functional>
#include <span>
#include <string>
#include <string_view>
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

// A node of a batch's tree: level 0 holds the leaves.
struct TreeNode {
    uint64_t level, position;
    Hash hash;
};

// Checks the leaves of signed batches as they arrive, remembering for the newest batches every node
// a proof has authenticated (its path and its siblings, once the root verified). A later leaf of the
// same batch hashes its way up only until it meets such a node, then must bring exactly the siblings
// remembered above it: about one inner-node hash per leaf instead of log2(batch size), with the
// same verdict as root_from_proof and a signature check. Not thread-safe: one per receiver.
class BatchVerifier {
public:
    explicit BatchVerifier(size_t batches = 8) : max_batches_(batches > 0 ? batches : 1) {}
    // "" when `leaf` is leaf `index` of the batch of `size` signed as `batch` (for example the
    // sender and its signature: any bytes that differ between batches whose roots differ). Only
    // when no remembered node is met is the root computed and `root_verifies(root)` asked.
    std::string check(std::string_view batch, const Hash& leaf, uint32_t index, uint32_t size,
                      std::span<const Hash> siblings, const std::function<bool(const Hash&)>& root_verifies);
    // Forgets every batch (keys rotated or revoked: their roots must be checked again).
    void clear();
    // Inner-node hashes computed so far (the cost the memory saves).
    uint64_t node_hashes() const { return node_hashes_; }

private:
    // The authenticated nodes of one batch's tree, level by level in one array (the tree's shape
    // follows from its size): no hashing and no allocation per node.
    struct Batch {
        Batch(std::string key, uint32_t size);
        const Hash* get(uint64_t level, uint64_t position) const {
            size_t k = first[level] + position;
            return known[k] ? &hashes[k] : nullptr;
        }
        void put(uint64_t level, uint64_t position, const Hash& h) {
            size_t k = first[level] + position;
            if (!known[k]) hashes[k] = h, known[k] = 1;
        }
        std::string key;
        uint32_t size;
        std::vector<size_t> first; // index of each level's first node
        std::vector<Hash> hashes;
        std::vector<uint8_t> known;
    };
    Batch* find(std::string_view key, uint32_t size);
    size_t max_batches_;
    std::deque<Batch> batches_; // newest last
    std::vector<TreeNode> learned_; // scratch: what the leaf being checked would authenticate
    uint64_t node_hashes_ = 0;
};

} // namespace renkei::merkle
