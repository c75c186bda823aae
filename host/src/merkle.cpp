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

namespace {

using Learned = std::vector<TreeNode>;

// root_from_proof, also telling `learned` (when given) every node on the path and every sibling,
// and counting the inner-node hashes in `hashes`.
bool walk(const Hash& leaf, uint32_t index, uint32_t size, std::span<const Hash> siblings, Hash& out,
          std::string& why, Learned* learned, uint64_t& hashes) {
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
    uint64_t i = index, width = size, level = 0;
    for (; width > 1; i /= 2, width = (width + 1) / 2, ++level) {
        if (learned) learned->push_back({level, i, h});
        uint64_t sibling = i ^ 1;
        if (sibling >= width) continue;
        if (used == siblings.size()) {
            why = "merkleProof is shorter than a batch of " + std::to_string(size) + " needs";
            return false;
        }
        if (learned) learned->push_back({level, sibling, siblings[used]});
        h = (i & 1) ? node(siblings[used], h) : node(h, siblings[used]);
        ++hashes;
        ++used;
    }
    if (used != siblings.size()) {
        why = "merkleProof is longer than a batch of " + std::to_string(size) + " needs";
        return false;
    }
    if (learned) learned->push_back({level, 0, h});
    out = h;
    return true;
}

} // namespace

bool root_from_proof(const Hash& leaf, uint32_t index, uint32_t size, std::span<const Hash> siblings,
                     Hash& out, std::string& why) {
    uint64_t hashes = 0;
    return walk(leaf, index, size, siblings, out, why, nullptr, hashes);
}

BatchVerifier::Batch* BatchVerifier::find(std::string_view key, uint32_t size) {
    for (auto& b : batches_)
        if (b.size == size && b.key == key) return &b;
    return nullptr;
}

BatchVerifier::Batch::Batch(std::string k, uint32_t n) : key(std::move(k)), size(n) {
    size_t total = 0;
    for (uint64_t width = n;; width = (width + 1) / 2) {
        first.push_back(total);
        total += width;
        if (width <= 1) break;
    }
    hashes.resize(total);
    known.resize(total);
}

std::string BatchVerifier::check(std::string_view key, const Hash& leaf, uint32_t index, uint32_t size,
                                 std::span<const Hash> siblings,
                                 const std::function<bool(const Hash&)>& root_verifies) {
    Batch* b = index < size ? find(key, size) : nullptr;
    learned_.clear();
    if (b) {
        // Up from the leaf until a remembered node: it must be the hash reached, and the proof from
        // there on exactly the remembered siblings. Anything else gets the full check below.
        Hash h = leaf;
        size_t used = 0;
        uint64_t i = index, width = size, level = 0;
        for (;;) {
            if (const Hash* met = b->get(level, i)) {
                if (*met != h) break;
                for (; width > 1; i /= 2, width = (width + 1) / 2, ++level) {
                    if ((i ^ 1) >= width) continue;
                    const Hash* s = b->get(level, i ^ 1);
                    if (used == siblings.size() || s == nullptr || *s != siblings[used]) break;
                    ++used;
                }
                if (width == 1 && used == siblings.size()) {
                    for (auto& n : learned_) b->put(n.level, n.position, n.hash);
                    return {};
                }
                break;
            }
            if (width == 1) break;
            learned_.push_back({level, i, h});
            if ((i ^ 1) < width) {
                if (used == siblings.size()) break;
                learned_.push_back({level, i ^ 1, siblings[used]});
                h = (i & 1) ? node(siblings[used], h) : node(h, siblings[used]);
                ++node_hashes_;
                ++used;
            }
            i /= 2;
            width = (width + 1) / 2;
            ++level;
        }
    }
    learned_.clear();
    Hash root;
    std::string why;
    if (!walk(leaf, index, size, siblings, root, why, &learned_, node_hashes_)) return "batch signature: " + why;
    if (!root_verifies(root)) return "batch signature does not verify (tampered, wrong proof or wrong key)";
    if (!b) b = find(key, size);
    if (!b) {
        if (batches_.size() >= max_batches_) batches_.pop_front();
        batches_.emplace_back(std::string(key), size);
        b = &batches_.back();
    }
    for (auto& n : learned_) b->put(n.level, n.position, n.hash);
    return {};
}

void BatchVerifier::clear() { batches_.clear(); }

std::vector<uint8_t> signed_message(const Hash& root) {
    static constexpr char kContext[] = "renkei-merkle-v1";
    constexpr size_t kContextSize = sizeof kContext - 1;
    // Sized once and filled (a range insert after the context drew a false -Warray-bounds from GCC 12).
    std::vector<uint8_t> m(kContextSize + root.size());
    std::memcpy(m.data(), kContext, kContextSize);
    std::memcpy(m.data() + kContextSize, root.data(), root.size());
    return m;
}

} // namespace renkei::merkle
