#include "test_support.hpp"

#include <renkei/keys.hpp>

#include <gtest/gtest.h>
#include <sys/stat.h>

using namespace renkei;
using namespace renkei::test;

namespace {
mode_t mode_of(const std::filesystem::path& p) {
    struct stat st{};
    stat(p.c_str(), &st);
    return st.st_mode & 0777;
}
} // namespace

TEST(NodeKeys, GenerateWritesPrivateFiles0600AndLoads) {
    TempDir tmp;
    auto dir = tmp / "keys";
    auto card = generate_node_keys(dir, "pref:13");
    EXPECT_EQ(mode_of(dir), 0700u);
    for (auto f : {"curve.key", "sign.key", "seal.key"}) EXPECT_EQ(mode_of(dir / f), 0600u) << f;
    EXPECT_EQ(card.curve_public.size(), 40u);
    EXPECT_EQ(card.sign_public.size(), 64u);
    auto keys = load_node_keys(dir);
    EXPECT_EQ(keys.node_id, "pref:13");
    EXPECT_EQ(card_of(keys).sign_public, card.sign_public);
    EXPECT_EQ(card_of(keys).seal_public, card.seal_public);
    EXPECT_EQ(keys.curve_public, card.curve_public);
    // The private key never shows up in the public card.
    std::string seed = crypto::to_hex(keys.sign.seed().view());
    EXPECT_EQ(read_file(dir / "node.toml").find(seed), std::string::npos);
}

TEST(NodeKeys, RefusesToOverwriteUnlessForced) {
    TempDir tmp;
    auto first = generate_node_keys(tmp / "k", "muni:131016");
    EXPECT_THROW(generate_node_keys(tmp / "k", "muni:131016"), std::runtime_error);
    EXPECT_EQ(load_node_keys(tmp / "k").curve_public, first.curve_public);
    auto second = generate_node_keys(tmp / "k", "muni:131016", true);
    EXPECT_NE(second.curve_public, first.curve_public);
}

TEST(NodeKeys, RefusesAReadablePrivateKeyNamingTheFile) {
    TempDir tmp;
    generate_node_keys(tmp / "k", "muni:131016");
    chmod((tmp / "k" / "sign.key").c_str(), 0644);
    try {
        load_node_keys(tmp / "k");
        FAIL();
    } catch (const std::runtime_error& e) {
        std::string m = e.what();
        EXPECT_NE(m.find("sign.key"), std::string::npos) << m;
        EXPECT_NE(m.find("0644"), std::string::npos) << m;
        EXPECT_NE(m.find("must be 0600"), std::string::npos) << m;
    }
}

TEST(NodeKeys, DetectsMismatchedAndMalformedFiles) {
    TempDir tmp;
    generate_node_keys(tmp / "a", "muni:131016");
    generate_node_keys(tmp / "b", "muni:131016");
    std::filesystem::copy_file(tmp / "b" / "sign.pub", tmp / "a" / "sign.pub", std::filesystem::copy_options::overwrite_existing);
    EXPECT_THROW(load_node_keys(tmp / "a"), std::runtime_error);

    generate_node_keys(tmp / "c", "muni:131016");
    std::filesystem::remove(tmp / "c" / "seal.key");
    write_file(tmp / "c" / "seal.key", "not hex\n");
    chmod((tmp / "c" / "seal.key").c_str(), 0600);
    EXPECT_THROW(load_node_keys(tmp / "c"), std::runtime_error);
    EXPECT_THROW(generate_node_keys(tmp / "d", "muni:131017"), std::runtime_error); // bad node id
}
