#include <renkei/merkle.hpp>

#include <renkei/crypto.hpp>

#include <cstring>
#include <stdexcept>

namespace renkei::merkle {
namespace {

Hash digest(uint8_t prefix, std::span<const uint8_t> a, std::span<const uint8_t> b = {}) {
    thread_local crypto::Sha256 h; // a batch hashes thousands of short inputs: reuse one context
    h.update(&prefix, 1);
    h.update(a.data(), a.size());
    h.update(b.data(), b.size());
    Hash out{};
    h.finish(out.data());
    return out;
}

Hash node(const Hash& l, const Hash& r) { return digest(0x01, l, r); }

} // namespace

Hash leaf_hash(std::span<const uint8_t> body) { return digest(0x00, body); }

Tree::Tree(std::vector<Hash> leaves) {
    if (leaves.empty()) throw std::invalid_argument("merkle tree of an empty batch");
    levels_.push_back(std::move(leaves));
    while (levels_.back().size() > 1) {
        const auto& below = levels_.back();
        std::vector<Hash> up;
        up.reserve((below.size() + 1) / 2);
        for (size_t i = 0; i < below.size(); i += 2)
            up.push_back(i + 1 < below.size() ? node(below[i], below[i + 1]) : below[i]);
        levels_.push_back(std::move(up));
    }
}

std::vector<Hash> Tree::proof(uint32_t index) const {
    if (index >= levels_[0].size()) throw std::invalid_argument("merkle proof index out of range");
    std::vector<Hash> out;
    size_t i = index;
    for (size_t l = 0; l + 1 < levels_.size(); ++l, i /= 2)
        if ((i ^ 1) < levels_[l].size()) out.push_back(levels_[l][i ^ 1]);
    return out;
}

bool root_from_proof(const Hash& leaf, uint32_t index, uint32_t size, std::span<const Hash> siblings,
                     Hash& out, std::string& why) {
    if (size == 0 || size > kMaxLeaves) {
        why = "batchSize " + std::to_string(size) + " is outside 1.." + std::to_string(kMaxLeaves);
        return false;
    }
    if (index >= size) {
        why = "leafIndex " + std::to_string(index) + " is not below batchSize " + std::to_string(size);
        return false;
    }
    Hash h = leaf;
    size_t used = 0;
    uint64_t i = index, width = size;
    while (width > 1) {
        uint64_t sibling = i ^ 1;
        if (sibling < width) {
            if (used == siblings.size()) {
                why = "merkleProof is shorter than a batch of " + std::to_string(size) + " needs";
                return false;
            }
            h = (i & 1) ? node(siblings[used], h) : node(h, siblings[used]);
            ++used;
        }
        i /= 2;
        width = (width + 1) / 2;
    }
    if (used != siblings.size()) {
        why = "merkleProof is longer than a batch of " + std::to_string(size) + " needs";
        return false;
    }
    out = h;
    return true;
}

std::vector<uint8_t> signed_message(const Hash& root) {
    static constexpr char kContext[] = "renkei-merkle-v1";
    std::vector<uint8_t> m(kContext, kContext + sizeof kContext - 1);
    m.insert(m.end(), root.begin(), root.end());
    return m;
}

} // namespace renkei::merkle
