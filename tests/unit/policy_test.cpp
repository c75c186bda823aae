#include <renkei/policy.hpp>

#include <gtest/gtest.h>

using namespace renkei;

namespace {
const char* kPolicy = R"(
[[rule]]
sender = "kind:agency"
type = "juki.Query"
purpose = "juki-beppyo1:3"
conditions = [["myNumber"], ["residentCode"], ["name", "dateOfBirth", "sex"], ["name", "address"]]
comment = "住基法別表第一 3"

[[rule]]
sender = "muni:131016"
type = "juki.*"
purpose = "*"

[[rule]]
sender = "agency:blocked"
type = "*"
purpose = "*"
deny = true

[[rule]]
sender = "*"
type = "echo.Ping"
purpose = "test"
)";
}

TEST(Policy, DenyByDefault) {
    auto p = Policy::from_string("", "empty.toml");
    auto d = p.check("muni:131016", "juki.IdentityUpdate", "x", {});
    EXPECT_FALSE(d.allowed);
    EXPECT_NE(d.reason.find("denied by default"), std::string::npos);
}

TEST(Policy, ExactKindWildcardAndPrefix) {
    auto p = Policy::from_string(kPolicy, "p.toml");
    EXPECT_TRUE(p.check("muni:131016", "juki.IdentityUpdate", "anything", {}).allowed);   // exact + prefix
    EXPECT_FALSE(p.check("muni:011002", "juki.IdentityUpdate", "anything", {}).allowed);  // other muni
    EXPECT_TRUE(p.check("agency:nta", "juki.Query", "juki-beppyo1:3", {"myNumber"}).allowed); // kind
    EXPECT_TRUE(p.check("wallet:x", "echo.Ping", "test", {}).allowed);                   // wildcard
    EXPECT_FALSE(p.check("wallet:x", "echo.Ping", "other", {}).allowed);                 // purpose mismatch
    auto d = p.check("muni:131016", "juki.IdentityUpdate", "x", {});
    EXPECT_EQ(d.rule, "p.toml:9");
}

TEST(Policy, ExplicitDenyWins) {
    auto p = Policy::from_string(kPolicy, "p.toml");
    auto d = p.check("agency:blocked", "echo.Ping", "test", {});
    EXPECT_FALSE(d.allowed);
    EXPECT_NE(d.reason.find("denied by rule p.toml:14"), std::string::npos) << d.reason;
}

TEST(Policy, QueryConditionSets) {
    auto p = Policy::from_string(kPolicy, "p.toml");
    EXPECT_FALSE(p.check("agency:nta", "juki.Query", "juki-beppyo1:3", {"name"}).allowed); // name alone
    EXPECT_TRUE(p.check("agency:nta", "juki.Query", "juki-beppyo1:3", {"name", "dateOfBirth", "sex"}).allowed);
    EXPECT_TRUE(p.check("agency:nta", "juki.Query", "juki-beppyo1:3", {"address", "name"}).allowed);
    EXPECT_TRUE(p.check("agency:nta", "juki.Query", "juki-beppyo1:3", {"residentCode"}).allowed);
    auto d = p.check("agency:nta", "juki.Query", "juki-beppyo1:3", {"name", "sex"});
    EXPECT_FALSE(d.allowed);
    EXPECT_NE(d.reason.find("query conditions name+sex are not allowed by rule p.toml:2"), std::string::npos) << d.reason;
    EXPECT_FALSE(p.check("agency:nta", "juki.Query", "juki-beppyo1:4", {"myNumber"}).allowed); // other affair
}

TEST(Policy, MalformedFilesNameLineAndKey) {
    try {
        Policy::from_string("[[rule]]\nsender = \"kind:agency\"\ntype = \"juki.Query\"\npurpose = \"x\"\nconditons = [[\"myNumber\"]]\n", "typo.toml");
        FAIL();
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("typo.toml:5: rule[0].conditons: unknown key"), std::string::npos) << e.what();
    }
    try {
        Policy::from_string("[[rule]]\nsender = \"muni:131017\"\ntype = \"x.Y\"\n", "bad.toml");
        FAIL();
    } catch (const std::runtime_error& e) {
        std::string m = e.what();
        EXPECT_NE(m.find("bad.toml:2: rule[0].sender:"), std::string::npos) << m;
        EXPECT_NE(m.find("rule[0].purpose: required key is missing"), std::string::npos) << m;
    }
    EXPECT_THROW(Policy::from_string("[[rule]]\nsender = \"*\"\ntype = \"*\"\npurpose = \"*\"\nconditions = []\n", "c.toml"),
                 std::runtime_error);
    EXPECT_THROW(Policy::from_string("[[rule]\n", "syntax.toml"), std::runtime_error);
}

TEST(Policy, ExampleFileLoads) {
    auto p = Policy::from_file(std::string(RENKEI_SOURCE_DIR) + "/examples/policy/juki-national.toml");
    EXPECT_GT(p.size(), 3u);
    EXPECT_TRUE(p.check("agency:nta", "juki.IdentityQuery", "juki-beppyo1:3", {"myNumber"}).allowed);
    EXPECT_FALSE(p.check("agency:nta", "juki.IdentityQuery", "juki-beppyo1:3", {"name"}).allowed);
    EXPECT_FALSE(p.check("agency:nta", "juki.IdentityQuery", "juki-beppyo2:3", {"myNumber"}).allowed);
    EXPECT_FALSE(p.check("agency:nta", "juki.IdentityQuery", "bango-9:3", {"name", "dateOfBirth", "sex"}).allowed);
    EXPECT_FALSE(p.check("wallet:acme", "juki.IdentityQuery", "juki-beppyo1:3", {"myNumber"}).allowed);
    EXPECT_TRUE(p.check("pref:13", "juki.IdentityUpdate", "juki-30-7", {}).allowed);
    EXPECT_FALSE(p.check("muni:131016", "juki.IdentityUpdate", "juki-30-7", {}).allowed);
    EXPECT_TRUE(p.check("muni:131016", "juki.NumberRequest", "bango-8", {}).allowed);
    EXPECT_FALSE(p.check("agency:nta", "juki.NumberRequest", "bango-8", {}).allowed);
}
