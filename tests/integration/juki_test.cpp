// juki across real hosts: a municipality asks J-LIS, through its prefecture, for 個人番号.
#include "collector.hpp"
#include "network.hpp"

#include <juki.capnp.h>
#include <renkei/validate.hpp>

#include <gtest/gtest.h>

using namespace renkei;
using namespace renkei::test;
using namespace std::chrono_literals;

namespace {

struct JukiNet {
    TempDir tmp;
    Network net{tmp};
    JukiNet() {
        write_file(tmp / "jlis-secret", std::string(48, 'k') + "J-LIS number secret for tests");
        PluginConfig juki;
        juki.name = "juki";
        juki.path = plugin_path("plugins/juki", "juki");
        juki.settings.insert("role", "national");
        juki.settings.insert("store", (tmp / "jlis-juki" / "numbers.db").string());
        juki.settings.insert("number_secret_file", (tmp / "jlis-secret").string());
        // J-LIS runs the example policy: number requests only from municipalities, for 番号法8条.
        net.start({"jlis:juki", true, {juki}, {{"pref:13", {"muni:*"}}},
                   read_file(std::string(RENKEI_SOURCE_DIR) + "/examples/policy/juki-national.toml")});
        net.start({"pref:13", true, {}, {{"jlis:juki", {"jlis:*"}}, {"muni:131016", {}}}});
        net.start({"muni:131016", false, {}, {{"pref:13", {"*"}}}});
    }
};

std::string request(Host& muni, const std::string& origin, const std::string& code, bool change = false,
                    const std::string& reason = {}) {
    capnp::MallocMessageBuilder mb;
    auto r = mb.initRoot<juki::NumberRequest>();
    r.setResidentCode(code);
    r.setChange(change);
    r.setReason(reason);
    auto flat = capnp::messageToFlatArray(mb);
    auto bytes = flat.asBytes();
    return submit_new(muni, origin, "juki.NumberRequest", "jlis:juki",
                      std::string(reinterpret_cast<const char*>(bytes.begin()), bytes.size()), "bango-8");
}

struct Answer {
    std::string my_number, previous;
    uint32_t generation = 0;
};

Answer parse(const Received& r) {
    auto words = kj::heapArray<capnp::word>(r.payload.size() / 8);
    memcpy(words.begin(), r.payload.data(), r.payload.size());
    capnp::FlatArrayMessageReader reader(words.asPtr());
    auto a = reader.getRoot<juki::NumberAssigned>();
    return {a.getMyNumber(), a.getPrevious(), a.getGeneration()};
}

} // namespace

TEST(Juki, NumberGenerationIsValidUniqueStableAndChangesWithHistory) {
    JukiNet t;
    Collector cs("cs", {"juki.NumberAssigned", "juki.NumberRequest.Fault"});
    t.net["muni:131016"].add_endpoint(cs.endpoint());
    auto& muni = t.net["muni:131016"];

    request(muni, cs.name(), "12345678901");
    auto got = cs.wait_for(1, 20s);
    ASSERT_EQ(got.size(), 1u);
    ASSERT_EQ(got[0].type, "juki.NumberAssigned") << got[0].fault_message;
    auto first = parse(got[0]);
    EXPECT_TRUE(validate::my_number("myNumber", first.my_number)) << first.my_number;
    EXPECT_EQ(first.generation, 1u);
    EXPECT_TRUE(first.previous.empty());
    EXPECT_EQ(first.my_number.find("12345678901"), std::string::npos) << "not the 住民票コード itself";

    // A retry for the same person gets the same number; another person gets another.
    request(muni, cs.name(), "12345678901");
    request(muni, cs.name(), "98765432109");
    got = cs.wait_for(3, 20s);
    ASSERT_EQ(got.size(), 3u);
    std::map<std::string, Answer> by_number;
    for (size_t i = 1; i < 3; ++i) {
        ASSERT_EQ(got[i].type, "juki.NumberAssigned") << got[i].fault_message;
        auto a = parse(got[i]);
        by_number[a.my_number] = a;
    }
    EXPECT_EQ(by_number.size(), 2u);
    EXPECT_TRUE(by_number.count(first.my_number)) << "a retry must get the same number";

    // A change (番号法7条2項) issues a new valid number and names the one it replaces.
    request(muni, cs.name(), "12345678901", true, "漏えいにより不正に用いられるおそれ");
    got = cs.wait_for(4, 20s);
    ASSERT_EQ(got.size(), 4u);
    ASSERT_EQ(got[3].type, "juki.NumberAssigned") << got[3].fault_message;
    auto changed = parse(got[3]);
    EXPECT_NE(changed.my_number, first.my_number);
    EXPECT_TRUE(validate::my_number("myNumber", changed.my_number));
    EXPECT_EQ(changed.previous, first.my_number);
    EXPECT_EQ(changed.generation, 2u);
    // After the change, a plain request answers the new number.
    request(muni, cs.name(), "12345678901");
    got = cs.wait_for(5, 20s);
    ASSERT_EQ(got.size(), 5u);
    EXPECT_EQ(parse(got[4]).my_number, changed.my_number);
}

TEST(Juki, BadRequestsComeBackAsFaultsNamingTheField) {
    JukiNet t;
    Collector cs("cs", {"juki.NumberAssigned", "juki.NumberRequest.Fault"});
    t.net["muni:131016"].add_endpoint(cs.endpoint());
    request(t.net["muni:131016"], cs.name(), "1234567890X");
    auto got = cs.wait_for(1, 20s);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].type, "juki.NumberRequest.Fault");
    EXPECT_EQ(got[0].fault_code, RENKEI_ERR_INVALID);
    EXPECT_NE(got[0].fault_message.find("residentCode"), std::string::npos) << got[0].fault_message;
    request(t.net["muni:131016"], cs.name(), "12345678901", true, "");
    got = cs.wait_for(2, 20s);
    ASSERT_EQ(got.size(), 2u);
    EXPECT_EQ(got[1].type, "juki.NumberRequest.Fault");
    EXPECT_NE(got[1].fault_message.find("reason"), std::string::npos) << got[1].fault_message;
    // Without the legal basis the policy names, J-LIS's host refuses before the plugin sees it.
    capnp::MallocMessageBuilder mb;
    mb.initRoot<juki::NumberRequest>().setResidentCode("12345678901");
    auto flat = capnp::messageToFlatArray(mb);
    submit_new(t.net["muni:131016"], cs.name(), "juki.NumberRequest", "jlis:juki",
               std::string(reinterpret_cast<const char*>(flat.asBytes().begin()), flat.asBytes().size()), "curiosity");
    got = cs.wait_for(3, 20s);
    ASSERT_EQ(got.size(), 3u);
    EXPECT_EQ(got[2].type, "juki.NumberRequest.Fault");
    EXPECT_EQ(got[2].fault_code, RENKEI_ERR_DENIED);
    EXPECT_NE(got[2].fault_message.find("denied by default"), std::string::npos) << got[2].fault_message;
}
