// adapters/mock-legacy-juki drives a real CS: synthetic births and 異動 with a deterministic seed
// reach J-LIS through the prefecture, and the same seed gives the same national file.
#include "network.hpp"

#include <identity_store.hpp>
#include <sqlite3.h>

#include <gtest/gtest.h>

using namespace renkei;
using namespace renkei::test;
using namespace std::chrono_literals;

namespace {

// J-LIS, a prefecture and a CS driven by mock-legacy-juki with `seed`; an agency may join.
struct MockNet {
    TempDir tmp;
    Network net{tmp};
    static std::string policy(const char* f) { return read_file(std::string(RENKEI_SOURCE_DIR) + "/examples/policy/" + f); }

    explicit MockNet(const std::string& seed) {
        write_file(tmp / "secret", std::string(48, 'k'));
        PluginConfig national;
        national.name = "juki";
        national.path = plugin_path("plugins/juki", "juki");
        national.settings.insert("role", "national");
        national.settings.insert("store", (tmp / "jlis" / "juki.db").string());
        national.settings.insert("number_secret_file", (tmp / "secret").string());
        PluginConfig pref = national;
        pref.settings = toml::table{{"role", "pref"}, {"store", (tmp / "pref" / "juki.db").string()}};
        PluginConfig cs = national;
        cs.settings = toml::table{{"role", "cs"}, {"store", (tmp / "cs" / "juki.db").string()},
                                  {"municipality", "131016"}, {"prefecture", "pref:13"}};
        PluginConfig legacy;
        legacy.name = "legacy";
        legacy.path = plugin_path("adapters/mock-legacy-juki", "mock_legacy_juki");
        legacy.settings = toml::table{{"seed", seed}, {"residents", "30"}, {"events", "40"}, {"rate", "2000"}, {"batch", "7"}};
        net.start({"jlis:juki", true, {national}, {{"pref:13", {"muni:13*"}}, {"agency:nenkin", {}}},
                   policy("juki-national.toml")});
        net.start({"pref:13", true, {pref}, {{"jlis:juki", {"jlis:*"}}, {"muni:131016", {}}}, policy("juki-prefecture.toml")});
        net.start({"muni:131016", false, {cs, legacy}, {{"pref:13", {"*"}}}, policy("juki-municipality.toml")});
    }

    // J-LIS's file: one line per resident.
    std::string dump() {
        juki::IdentityStore s(tmp / "jlis" / "juki.db");
        std::string out;
        sqlite3_stmt* q = nullptr;
        sqlite3_prepare_v2(s.db(), "SELECT code, my_number, name, kana, address, removed FROM residents ORDER BY code", -1,
                           &q, nullptr);
        while (sqlite3_step(q) == SQLITE_ROW) {
            for (int i = 0; i < 6; ++i) out += std::string(reinterpret_cast<const char*>(sqlite3_column_text(q, i))) + "|";
            out += "\n";
        }
        sqlite3_finalize(q);
        return out;
    }

    // Settled: every batch the CS sent is confirmed by both tiers, and the file stops changing.
    std::string settled() {
        std::string last;
        for (int i = 0; i < 200; ++i) {
            std::this_thread::sleep_for(200ms);
            juki::IdentityStore cs_store(tmp / "cs" / "juki.db");
            auto now = dump();
            if (cs_store.pending().empty() && std::count(now.begin(), now.end(), '\n') == 30 && now == last) break;
            last = now;
        }
        return last;
    }
};

std::string national_file_after(const std::string& seed) { return MockNet(seed).settled(); }

} // namespace

TEST(JukiMock, LegacySystemDrivesTheChainAndTheSameSeedGivesTheSameFile) {
    auto a = national_file_after("7");
    ASSERT_EQ(std::count(a.begin(), a.end(), '\n'), 30) << a;
    EXPECT_NE(a.find("\xEE\x80\x80"), std::string::npos) << "a name with 外字 (private-use character) reached J-LIS";
    EXPECT_NE(a.find("|1|"), std::string::npos) << "someone died (record deleted, kept)";
    auto b = national_file_after("7");
    EXPECT_EQ(a, b) << "the same seed must give the same national file";
    auto c = national_file_after("8");
    EXPECT_NE(a, c) << "another seed gives other residents";
}

TEST(JukiMock, AgencyGetsWhatItsAffairsAllowAndIsRefusedTheRest) {
    MockNet t("3");
    auto file = t.settled();
    ASSERT_EQ(std::count(file.begin(), file.end(), '\n'), 30);
    PluginConfig agency;
    agency.name = "agency";
    agency.path = plugin_path("adapters/mock-agency", "mock_agency");
    auto report = t.tmp / "agency-report.txt";
    agency.settings = toml::table{{"purposes", "juki-beppyo1:5,marketing"}, {"municipality", "131016"},
                                  {"count", "30"}, {"batch", "10"}, {"report_file", report.string()}};
    t.net.start({"agency:nenkin", false, {agency}, {{"jlis:juki", {"jlis:*"}}}, MockNet::policy("juki-agency.toml")});
    std::string got;
    const std::string want = "juki-beppyo1:5 provided=30 notFound=0 refused=0\nmarketing provided=0 notFound=0 refused=30\n";
    for (int i = 0; i < 200 && got != want; ++i) {
        std::this_thread::sleep_for(100ms);
        if (std::filesystem::exists(report)) got = read_file(report);
    }
    EXPECT_EQ(got, want);
}
