// The signed trust store: only the root's signature over the exact file makes it valid; expiry,
// revocation and every malformed field are refused with the file, line and key.
#include "test_support.hpp"

#include <renkei/keys.hpp>
#include <renkei/trust_store.hpp>

#include <gtest/gtest.h>

using namespace renkei;
using namespace renkei::test;

namespace {

constexpr int64_t kNow = 1795392000000; // 2026-11-23T00:00:00Z

std::string header(int serial = 1, const std::string& expires = "2027-11-23T00:00:00Z") {
    return "[trust]\nnetwork = \"test\"\nserial = " + std::to_string(serial) +
           "\nissued_at = 2026-11-01T00:00:00Z\nexpires_at = " + expires + "\n\n";
}

struct Fixture {
    TempDir tmp;
    std::string root_pub = generate_root_key(tmp / "root");
    crypto::SigningKey root = load_signing_key(tmp / "root" / "root.key");
    NodeCard muni = generate_node_keys(tmp / "muni", "muni:131016");
    NodeCard pref = generate_node_keys(tmp / "pref", "pref:13");

    std::filesystem::path write_signed(const std::string& text) {
        auto f = tmp / "trust.toml";
        write_file(f, text);
        sign_trust_store(f, root);
        return f;
    }
    std::string expect_refused(const std::string& text, int64_t now = kNow) {
        auto f = write_signed(text);
        try {
            load_trust_store(f, root_pub, now);
        } catch (const TrustError& e) {
            return e.what();
        }
        ADD_FAILURE() << "accepted:\n" << text;
        return {};
    }
};

} // namespace

TEST(TrustStore, SignedStoreLoadsWithEveryNodeAndKey) {
    Fixture f;
    auto file = f.write_signed(header(3) + f.muni.to_toml() + f.pref.to_toml());
    auto ts = load_trust_store(file, f.root_pub, kNow);
    EXPECT_EQ(ts.serial, 3);
    EXPECT_EQ(ts.network, "test");
    ASSERT_NE(ts.node("muni:131016"), nullptr);
    EXPECT_EQ(ts.node("muni:131016")->curve_public, std::vector<std::string>{f.muni.curve_public});
    EXPECT_EQ(ts.node("pref:13")->sign_public, std::vector<std::string>{f.pref.sign_public});
    EXPECT_EQ(ts.node("pref:13")->seal_public, f.pref.seal_public);
    EXPECT_EQ(ts.node("jlis:juki"), nullptr);
    EXPECT_EQ(format_utc_ms(ts.expires_ms), "2027-11-23T00:00:00Z");
}

TEST(TrustStore, AlteredFileOrAnotherSignerOrNoSignatureIsRefused) {
    Fixture f;
    auto file = f.write_signed(header() + f.muni.to_toml());
    auto text = read_file(file);
    write_file(file, text + "\n"); // one byte more than was signed
    try {
        load_trust_store(file, f.root_pub, kNow);
        FAIL() << "an altered trust store was accepted";
    } catch (const TrustError& e) {
        EXPECT_NE(std::string(e.what()).find("does not verify with the network root key"), std::string::npos) << e.what();
    }
    write_file(file, text);
    auto other = crypto::SigningKey::generate();
    sign_trust_store(file, other);
    EXPECT_THROW(load_trust_store(file, f.root_pub, kNow), TrustError);
    sign_trust_store(file, f.root);
    EXPECT_NO_THROW(load_trust_store(file, f.root_pub, kNow));
    std::filesystem::remove(file.string() + ".sig");
    try {
        load_trust_store(file, f.root_pub, kNow);
        FAIL() << "an unsigned trust store was accepted";
    } catch (const TrustError& e) {
        EXPECT_NE(std::string(e.what()).find("trust.toml.sig"), std::string::npos) << e.what();
    }
}

TEST(TrustStore, ExpiredStoreIsRefusedWithItsExpiry) {
    Fixture f;
    auto why = f.expect_refused(header(1, "2026-11-22T00:00:00Z") + f.muni.to_toml());
    EXPECT_NE(why.find("expired at 2026-11-22T00:00:00Z"), std::string::npos) << why;
}

TEST(TrustStore, RevokedKeysAreDroppedAndRotationListsAreKept) {
    Fixture f;
    auto next = generate_node_keys(f.tmp / "muni-next", "muni:131016");
    std::string node = "[[node]]\nid = \"muni:131016\"\ncurve_public = [\"" + f.muni.curve_public + "\", \"" +
                       next.curve_public + "\"]\nsign_public = [\"" + f.muni.sign_public + "\", \"" +
                       next.sign_public + "\"]\n\n";
    auto revoked = "[[revoked]]\nkey = \"" + f.muni.sign_public + "\"\nreason = \"key compromised\"\n\n";
    auto ts = load_trust_store(f.write_signed(header() + node + revoked), f.root_pub, kNow);
    auto* n = ts.node("muni:131016");
    ASSERT_NE(n, nullptr);
    EXPECT_EQ(n->curve_public, (std::vector<std::string>{f.muni.curve_public, next.curve_public}));
    EXPECT_EQ(n->sign_public, std::vector<std::string>{next.sign_public});
    EXPECT_EQ(ts.revoked.at(f.muni.sign_public), "key compromised");
}

TEST(TrustStore, MalformedFieldsAreNamedWithLineAndKey) {
    Fixture f;
    auto why = f.expect_refused(header() + "[[node]]\nid = \"muni:131016\"\ncurve_public = \"short\"\n");
    EXPECT_NE(why.find("trust.toml:9: node[0].curve_public: must be a 40-character Z85 CURVE key"), std::string::npos) << why;
    why = f.expect_refused(header() + "[[node]]\nid = \"nobody\"\n");
    EXPECT_NE(why.find("node[0].id"), std::string::npos) << why;
    why = f.expect_refused(header() + f.muni.to_toml() + f.muni.to_toml());
    EXPECT_NE(why.find("listed twice"), std::string::npos) << why;
    why = f.expect_refused(f.muni.to_toml());
    EXPECT_NE(why.find("trust: required table is missing"), std::string::npos) << why;
    why = f.expect_refused("[trust]\nnetwork = \"t\"\nserial = 0\nissued_at = 2026-11-01T00:00:00Z\n"
                           "expires_at = 2026-10-01T00:00:00Z\n" + f.muni.to_toml());
    EXPECT_NE(why.find("trust.serial: must be an integer >= 1"), std::string::npos) << why;
    EXPECT_NE(why.find("trust.expires_at: must be after issued_at"), std::string::npos) << why;
    why = f.expect_refused("[trust]\nnetwork = \"t\"\nserial = 1\nissued_at = 2026-11-01\nexpires_at = 2027-11-01T00:00:00Z\n" +
                           f.muni.to_toml());
    EXPECT_NE(why.find("trust.issued_at: must be an offset date-time"), std::string::npos) << why;
    why = f.expect_refused(header() + f.muni.to_toml() + "[extra]\n");
    EXPECT_NE(why.find("extra: unknown key"), std::string::npos) << why;
}
