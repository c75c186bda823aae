// Batch signing's Merkle tree: every leaf's proof leads to the root, and nothing else does.
#include <renkei/merkle.hpp>

#include <gtest/gtest.h>

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
