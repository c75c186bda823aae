// Batch signing's Merkle tree: every leaf's proof leads to the root, and nothing else does.
#include <renkei/merkle.hpp>

#include <gtest/gtest.h>

#include <numeric>

#include <string>

using namespace renkei::merkle;

namespace {

std::vector<Hash> leaves(size_t n) {
    std::vector<Hash> out;
    for (size_t i = 0; i < n; ++i) {
        std::string body = "envelope " + std::to_string(i);
        out.push_back(leaf_hash({reinterpret_cast<const uint8_t*>(body.data()), body.size()}));
    }
    return out;
}

} // namespace

TEST(Merkle, EveryLeafOfEveryBatchSizeProvesTheRoot) {
    for (uint32_t n = 1; n <= 40; ++n) {
        auto l = leaves(n);
        Tree tree(l);
        for (uint32_t i = 0; i < n; ++i) {
            Hash root;
            std::string why;
            ASSERT_TRUE(root_from_proof(l[i], i, n, tree.proof(i), root, why)) << n << "/" << i << ": " << why;
            EXPECT_EQ(root, tree.root()) << n << "/" << i;
        }
    }
}

TEST(Merkle, RootDependsOnEveryLeafAndItsPosition) {
    auto l = leaves(7);
    Hash root = Tree(l).root();
    auto changed = l;
    changed[6][0] ^= 1;
    EXPECT_NE(Tree(changed).root(), root);
    auto swapped = l;
    std::swap(swapped[2], swapped[3]);
    EXPECT_NE(Tree(swapped).root(), root);
    EXPECT_NE(Tree(std::vector<Hash>(l.begin(), l.end() - 1)).root(), root); // a dropped leaf
}

TEST(Merkle, TamperedLeafSiblingOrIndexGivesAnotherRoot) {
    auto l = leaves(9);
    Tree tree(l);
    Hash root;
    std::string why;
    auto proof = tree.proof(4);
    Hash leaf = l[4];
    leaf[31] ^= 0x80;
    ASSERT_TRUE(root_from_proof(leaf, 4, 9, proof, root, why));
    EXPECT_NE(root, tree.root());
    auto bad = proof;
    bad[0][0] ^= 1;
    ASSERT_TRUE(root_from_proof(l[4], 4, 9, bad, root, why));
    EXPECT_NE(root, tree.root());
    ASSERT_TRUE(root_from_proof(l[4], 5, 9, proof, root, why));
    EXPECT_NE(root, tree.root());
}

TEST(Merkle, MalformedProofsAreRefusedWithTheField) {
    auto l = leaves(8);
    Tree tree(l);
    Hash root;
    std::string why;
    auto proof = tree.proof(3);
    auto shorter = std::vector<Hash>(proof.begin(), proof.end() - 1);
    EXPECT_FALSE(root_from_proof(l[3], 3, 8, shorter, root, why));
    EXPECT_NE(why.find("merkleProof is shorter"), std::string::npos) << why;
    auto longer = proof;
    longer.push_back(proof[0]);
    EXPECT_FALSE(root_from_proof(l[3], 3, 8, longer, root, why));
    EXPECT_NE(why.find("merkleProof is longer"), std::string::npos) << why;
    EXPECT_FALSE(root_from_proof(l[3], 8, 8, proof, root, why));
    EXPECT_NE(why.find("leafIndex 8"), std::string::npos) << why;
    EXPECT_FALSE(root_from_proof(l[3], 0, 0, {}, root, why));
    EXPECT_NE(why.find("batchSize 0"), std::string::npos) << why;
    EXPECT_FALSE(root_from_proof(l[3], 0, kMaxLeaves + 1, proof, root, why));
    EXPECT_NE(why.find("batchSize"), std::string::npos) << why;
}

TEST(Merkle, LeafAndInnerNodeHashesAreSeparated) {
    // A one-leaf batch's root is the leaf hash, which differs from hashing the body as a node.
    auto l = leaves(2);
    Tree two(l);
    std::vector<uint8_t> concatenated(l[0].begin(), l[0].end());
    concatenated.insert(concatenated.end(), l[1].begin(), l[1].end());
    EXPECT_NE(leaf_hash(concatenated), two.root()); // an inner node cannot be passed off as a leaf
    EXPECT_EQ(Tree({l[0]}).root(), l[0]);
    auto m = signed_message(two.root());
    EXPECT_EQ(std::string(m.begin(), m.begin() + 16), "renkei-merkle-v1");
    EXPECT_EQ(m.size(), 16u + 32u);
}

namespace {

// A verifier's answer for leaf `i` of `tree`, counting the roots it had to check; the signature
// check is played by comparing with the tree's real root.
struct Checked {
    BatchVerifier& v;
    const Tree& tree;
    int roots = 0;
    std::string operator()(const Hash& leaf, uint32_t i, const std::vector<Hash>& proof, std::string_view batch = "a") {
        return v.check(batch, leaf, i, tree.size(), proof, [&](const Hash& root) {
            ++roots;
            return root == tree.root();
        });
    }
};

} // namespace

TEST(MerkleBatchVerifier, EveryLeafInAnyOrderPassesWithOneRootCheckAndAboutOneHashEach) {
    for (uint32_t n : {1u, 2u, 3u, 7u, 64u, 257u, 1000u}) {
        auto l = leaves(n);
        Tree tree(l);
        std::vector<uint32_t> order(n);
        std::iota(order.begin(), order.end(), 0u); // sending order first
        for (int pass = 0; pass < 2; ++pass) {
            if (pass == 1) // a fixed shuffle: every leaf once, far from sending order
                for (uint32_t i = 0; i < n; ++i) std::swap(order[i], order[(i * 2654435761u) % n]);
            BatchVerifier v;
            Checked check{v, tree};
            for (uint32_t i : order) ASSERT_EQ(check(l[i], i, tree.proof(i)), "") << n << "/" << i;
            EXPECT_EQ(check.roots, 1) << n;
            // A tree of n leaves has n - 1 inner nodes; each is hashed at most once per leaf that
            // meets it first, so the total stays near n, not n * log2(n).
            EXPECT_LE(v.node_hashes(), 2u * n) << n << " pass " << pass;
        }
    }
}

TEST(MerkleBatchVerifier, RemembersNothingThatDidNotVerifyAndRefusesTamperingAfterwards) {
    auto l = leaves(16);
    Tree tree(l);
    BatchVerifier v;
    Checked check{v, tree};
    // Before any leaf verified: a changed leaf is refused, and teaches the verifier nothing.
    Hash changed = l[5];
    changed[0] ^= 1;
    EXPECT_NE(check(changed, 5, tree.proof(5)), "");
    EXPECT_EQ(check(l[4], 4, tree.proof(4)), ""); // leaf 5's hash is now remembered, as leaf 4's sibling
    const int roots = check.roots;
    // With leaf 5's path remembered, the same tampering is still refused:
    EXPECT_NE(check(changed, 5, tree.proof(5)), "") << "a changed leaf";
    auto bad_sibling = tree.proof(5);
    bad_sibling[2][7] ^= 1;
    EXPECT_NE(check(l[5], 5, bad_sibling), "") << "a changed sibling above the remembered node";
    auto bad_first = tree.proof(5);
    bad_first[0][0] ^= 1;
    EXPECT_NE(check(l[5], 5, bad_first), "") << "a changed first sibling";
    EXPECT_NE(check(l[5], 6, tree.proof(5)), "") << "another position";
    auto shorter = tree.proof(5);
    shorter.pop_back();
    EXPECT_NE(check(l[5], 5, shorter).find("merkleProof is shorter"), std::string::npos);
    auto longer = tree.proof(5);
    longer.push_back(longer[0]);
    EXPECT_NE(check(l[5], 5, longer).find("merkleProof is longer"), std::string::npos);
    // Another batch key is another batch: nothing of "a" is taken for it.
    EXPECT_EQ(check(l[5], 5, tree.proof(5), "b"), "");
    // The four tamperings went on to the root check (the malformed proofs stop before it), and so
    // did the new batch.
    EXPECT_EQ(check.roots, roots + 4 + 1);
    // The genuine leaf of batch "a" passes without one.
    EXPECT_EQ(check(l[5], 5, tree.proof(5)), "");
    EXPECT_EQ(check.roots, roots + 5);
}

TEST(MerkleBatchVerifier, ClearAndEvictionForgetBatches) {
    auto l = leaves(8);
    Tree tree(l);
    BatchVerifier v(2);
    Checked check{v, tree};
    EXPECT_EQ(check(l[0], 0, tree.proof(0), "a"), "");
    EXPECT_EQ(check(l[1], 1, tree.proof(1), "a"), "");
    EXPECT_EQ(check.roots, 1);
    v.clear(); // a key revoked: the batch's root must be checked again
    EXPECT_EQ(check(l[1], 1, tree.proof(1), "a"), "");
    EXPECT_EQ(check.roots, 2);
    EXPECT_EQ(check(l[0], 0, tree.proof(0), "b"), "");
    EXPECT_EQ(check(l[0], 0, tree.proof(0), "c"), ""); // "a" is the oldest of three: forgotten
    EXPECT_EQ(check.roots, 4);
    EXPECT_EQ(check(l[1], 1, tree.proof(1), "c"), "");
    EXPECT_EQ(check.roots, 4);
    EXPECT_EQ(check(l[1], 1, tree.proof(1), "a"), "");
    EXPECT_EQ(check.roots, 5);
}
