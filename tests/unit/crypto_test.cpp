#include <renkei/crypto.hpp>

#include <gtest/gtest.h>

#include <thread>

using namespace renkei::crypto;

TEST(Ed25519, SignVerifyRoundTripAndRejections) {
    auto k = SigningKey::generate();
    auto v = k.verify_key();
    Bytes msg{1, 2, 3, 4, 5};
    auto sig = k.sign(msg);
    ASSERT_EQ(sig.size(), 64u);
    EXPECT_TRUE(v.verify(msg, sig));
    Bytes other = msg;
    other[0] ^= 1;
    EXPECT_FALSE(v.verify(other, sig));
    for (size_t i = 0; i < sig.size(); i += 7) {
        Bytes bad = sig;
        bad[i] ^= 0x40;
        EXPECT_FALSE(v.verify(msg, bad)) << "byte " << i;
    }
    EXPECT_FALSE(v.verify(msg, Bytes(sig.begin(), sig.end() - 1)));
    EXPECT_FALSE(SigningKey::generate().verify_key().verify(msg, sig)); // wrong key
}

TEST(Ed25519, Rfc8032TestVector1) {
    // RFC 8032 §7.1 TEST 1: empty message.
    auto k = SigningKey::from_seed(from_hex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"));
    EXPECT_EQ(to_hex(k.public_raw()), "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
    EXPECT_EQ(to_hex(k.sign({})),
              "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
              "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b");
}

TEST(Ed25519, ConcurrentSigningWithOneKey) {
    auto k = SigningKey::generate();
    auto v = k.verify_key();
    std::vector<std::thread> threads;
    std::atomic<int> good{0};
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([&, t] {
            for (int i = 0; i < 200; ++i) {
                Bytes m{static_cast<uint8_t>(t), static_cast<uint8_t>(i)};
                if (v.verify(m, k.sign(m))) ++good;
            }
        });
    for (auto& th : threads) th.join();
    EXPECT_EQ(good.load(), 800);
}

TEST(Seal, RoundTripAndEveryKindOfTamper) {
    auto bob = SealKeyPair::generate();
    Bytes plain(300);
    for (size_t i = 0; i < plain.size(); ++i) plain[i] = static_cast<uint8_t>(i);
    auto aad = view("muni:131016");
    auto box = seal(bob.public_key, plain, aad);
    EXPECT_EQ(box.size(), 1 + 32 + 12 + plain.size() + 16);
    EXPECT_EQ(open(bob, box, aad), plain);

    // Flip one byte in each region: version, ephemeral key, nonce, ciphertext, tag.
    for (size_t at : {size_t(0), size_t(5), size_t(40), size_t(100), box.size() - 3}) {
        Bytes bad = box;
        bad[at] ^= 1;
        EXPECT_THROW(open(bob, bad, aad), CryptoError) << "byte " << at;
    }
    EXPECT_THROW(open(bob, Bytes(box.begin(), box.end() - 1), aad), CryptoError);     // truncated
    EXPECT_THROW(open(bob, Bytes(box.begin(), box.begin() + 20), aad), CryptoError);  // far too short
    EXPECT_THROW(open(SealKeyPair::generate(), box, aad), CryptoError);               // someone else
    EXPECT_THROW(open(bob, box, view("muni:011002")), CryptoError);                   // other binding
    EXPECT_NE(seal(bob.public_key, plain, aad), box);                                 // fresh each time
}

TEST(Seal, KeyFromPrivateMatches) {
    auto a = SealKeyPair::generate();
    auto b = SealKeyPair::from_private(a.private_key.view());
    EXPECT_EQ(a.public_key, b.public_key);
    EXPECT_EQ(open(b, seal(a.public_key, view("x"))), Bytes{'x'});
}

TEST(Hex, RoundTripAndErrors) {
    Bytes b{0x00, 0xab, 0xff};
    EXPECT_EQ(to_hex(b), "00abff");
    EXPECT_EQ(from_hex("00ABff"), b);
    EXPECT_THROW(from_hex("abc"), CryptoError);
    EXPECT_THROW(from_hex("zz"), CryptoError);
}

TEST(Sha256, KnownValue) {
    EXPECT_EQ(to_hex(sha256(view("abc"))), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}
