// `renkei media export|inspect|copy|import|erase`, run as real processes between nodes whose keys
// come from `renkei keygen` and whose trust comes from a trust store signed with `renkei trust`;
// every action, done or refused, must be in the acting node's audit trail, and the trail verifies.
#include "test_support.hpp"

#include <gtest/gtest.h>

#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <fstream>
#include <random>
#include <set>
#include <sstream>

using namespace renkei::test;
namespace fs = std::filesystem;

namespace {


bool has(const std::string& haystack, const std::string& needle) { return haystack.find(needle) != std::string::npos; }

std::string quoted(const fs::path& p) { return "'" + p.string() + "'"; }

std::vector<std::string> fields_of(const std::string& line) {
    std::vector<std::string> f(1);
    for (char c : line) {
        if (c == '\t') f.emplace_back();
        else f.back().push_back(c);
    }
    return f;
}

// An audit record: seq time event id type from to purpose operator outcome detail subject prev hash
struct Record {
    std::string event, id, type, from, to, purpose, op, outcome, detail;
};

std::vector<Record> audit_of(const fs::path& data) {
    std::vector<fs::path> files;
    std::error_code ec;
    for (auto& e : fs::directory_iterator(data / "audit", ec))
        if (e.path().extension() == ".log") files.push_back(e.path());
    std::sort(files.begin(), files.end());
    std::vector<Record> out;
    for (auto& f : files) {
        std::istringstream in(read_file(f));
        for (std::string line; std::getline(in, line);) {
            auto x = fields_of(line);
            out.push_back({x.at(2), x.at(3), x.at(4), x.at(5), x.at(6), x.at(7), x.at(8), x.at(9), x.at(10)});
        }
    }
    return out;
}

std::set<std::string> listing(const fs::path& dir) {
    std::set<std::string> names;
    std::error_code ec;
    for (auto& e : fs::directory_iterator(dir, ec)) names.insert(e.path().filename().string());
    return names;
}

// Three nodes of one network: a municipality's CS, its prefecture and an agency that is no link
// neighbour of either; the trust store lists all three, signed by the network root.
class MediaCli : public ::testing::Test {
protected:
    void SetUp() override {
        auto root = run_renkei("trust keygen --dir " + quoted(tmp / "root"));
        ASSERT_EQ(root.code, 0) << root.output;
        root_pub = read_file(tmp / "root" / "root.pub");
        while (!root_pub.empty() && (root_pub.back() == '\n' || root_pub.back() == ' ')) root_pub.pop_back();
        std::string nodes;
        for (auto id : {"muni:131016", "pref:13", "agency:nta"}) {
            auto data = dir_of(id);
            auto r = run_renkei("keygen --dir " + quoted(data / "keys") + " --node " + id);
            ASSERT_EQ(r.code, 0) << r.output;
            nodes += read_file(data / "keys" / "node.toml") + "\n";
        }
        write_file(tmp / "trust.toml", "[trust]\nnetwork = \"media-test\"\nserial = 1\nissued_at = 2019-01-01T00:00:00Z\n"
                                       "expires_at = 2099-01-01T00:00:00Z\n\n" + nodes);
        auto sign = run_renkei("trust sign " + quoted(tmp / "trust.toml") + " --key " + quoted(tmp / "root" / "root.key"));
        ASSERT_EQ(sign.code, 0) << sign.output;
        for (auto id : {"muni:131016", "pref:13", "agency:nta"})
            write_file(config_of(id), "[node]\nid = \"" + std::string(id) + "\"\ndata_dir = \"" + dir_of(id).string() +
                                          "\"\ntrust_store = \"" + (tmp / "trust.toml").string() + "\"\ntrust_root = \"" +
                                          root_pub + "\"\n");
        fs::create_directories(tmp / "src");
        records = "0001,山田太郎,住所変更\n0002,鈴木花子,転入\n0003,佐藤次郎,出生\n";
        write_file(tmp / "src" / "records.csv", records);
        std::mt19937 rng(42);
        big.reserve(2'500'000);
        while (big.size() < 2'500'000) {
            for (int i = 0; i < 80; ++i) big.push_back(static_cast<char>('0' + rng() % 10));
            big.push_back('\n');
        }
        write_file(tmp / "src" / "batch.txt", big);
    }

    fs::path dir_of(const std::string& id) {
        std::string safe = id;
        std::replace(safe.begin(), safe.end(), ':', '-');
        return tmp / safe;
    }
    fs::path config_of(const std::string& id) { return dir_of(id) / "node.toml"; }
    std::string as(const std::string& id, const std::string& op) {
        return "--config " + quoted(config_of(id)) + " --operator " + op;
    }

    // muni exports records.csv and batch.txt for `to`; returns the bundle id.
    std::string export_for(const std::string& to, const fs::path& out) {
        auto r = run_renkei("media export " + as("muni:131016", "ops:tanaka") + " --purpose juki-30-6 --to " + to +
                            " --out " + quoted(out) + " " + quoted(tmp / "src" / "records.csv") + " " +
                            quoted(tmp / "src" / "batch.txt"));
        EXPECT_EQ(r.code, 0) << r.output;
        auto at = r.output.find("exported bundle ");
        EXPECT_NE(at, std::string::npos) << r.output;
        return at == std::string::npos ? "" : r.output.substr(at + 16, 32);
    }

    void expect_trail_intact(const std::string& id, size_t records_expected) {
        auto r = run_renkei("audit verify " + quoted(dir_of(id) / "audit"));
        EXPECT_EQ(r.code, 0) << r.output;
        EXPECT_TRUE(has(r.output, "ok, " + std::to_string(records_expected) + " records, chain intact")) << r.output;
    }

    TempDir tmp;
    std::string root_pub, records, big;
};

} // namespace

TEST_F(MediaCli, ExportInspectCopyImportAreAuditedAndTheTrailsVerify) {
    auto bundle = tmp / "out" / "update.rkm";
    fs::create_directories(bundle.parent_path());
    auto id = export_for("pref:13", bundle);
    ASSERT_EQ(id.size(), 32u);

    // The operator at either end reads the manifest without any key.
    auto look = run_renkei("media inspect --in " + quoted(bundle));
    EXPECT_EQ(look.code, 0) << look.output;
    EXPECT_TRUE(has(look.output, "bundle " + id)) << look.output;
    EXPECT_TRUE(has(look.output, "sender     muni:131016")) << look.output;
    EXPECT_TRUE(has(look.output, "recipient  pref:13")) << look.output;
    EXPECT_TRUE(has(look.output, "records.csv  3 record(s) (lines)")) << look.output;
    EXPECT_TRUE(has(look.output, "batch.txt  " + std::to_string(big.size() / 81) + " record(s)")) << look.output;
    EXPECT_TRUE(has(look.output, "signatures not checked")) << look.output;

    // The prefecture checks it against the trust store, copies it off the medium and imports it.
    auto checked = run_renkei("media inspect " + as("pref:13", "ops:sato") + " --in " + quoted(bundle));
    EXPECT_EQ(checked.code, 0) << checked.output;
    EXPECT_TRUE(has(checked.output, "signatures: ok (signed by muni:131016")) << checked.output;
    auto copy = tmp / "pref-intake" / "update.rkm";
    fs::create_directories(copy.parent_path());
    auto copied = run_renkei("media copy " + as("pref:13", "ops:sato") + " --in " + quoted(bundle) + " --out " + quoted(copy));
    EXPECT_EQ(copied.code, 0) << copied.output;
    EXPECT_TRUE(has(copied.output, "read back identical")) << copied.output;
    auto inbox = tmp / "pref-inbox";
    auto imported = run_renkei("media import " + as("pref:13", "ops:sato") + " --purpose juki-30-6 --in " + quoted(copy) +
                               " --out " + quoted(inbox));
    ASSERT_EQ(imported.code, 0) << imported.output;
    EXPECT_TRUE(has(imported.output, "imported bundle " + id + " from muni:131016")) << imported.output;
    EXPECT_TRUE(has(imported.output, "counts and digests reconciled")) << imported.output;
    EXPECT_EQ(read_file(inbox / "records.csv"), records);
    EXPECT_EQ(read_file(inbox / "batch.txt"), big);
    EXPECT_EQ(listing(inbox), (std::set<std::string>{"records.csv", "batch.txt"}));

    // The sender's trail: the export, with the operator, purpose, bundle id, counts and digests.
    auto muni = audit_of(dir_of("muni:131016"));
    ASSERT_EQ(muni.size(), 1u);
    EXPECT_EQ(muni[0].event, "admin");
    EXPECT_EQ(muni[0].type, "media.export");
    EXPECT_EQ(muni[0].id, id);
    EXPECT_EQ(muni[0].from, "muni:131016");
    EXPECT_EQ(muni[0].to, "pref:13");
    EXPECT_EQ(muni[0].purpose, "juki-30-6");
    EXPECT_EQ(muni[0].op, "ops:tanaka");
    EXPECT_EQ(muni[0].outcome, "ok");
    EXPECT_TRUE(has(muni[0].detail, "2 file(s), " + std::to_string(3 + big.size() / 81) + " record(s)")) << muni[0].detail;
    EXPECT_TRUE(has(muni[0].detail, "records.csv records=3 bytes=" + std::to_string(records.size()) + " sha256=")) << muni[0].detail;
    EXPECT_FALSE(has(muni[0].detail, "山田")) << "no record content in the trail";
    expect_trail_intact("muni:131016", 1);

    // The recipient's: inspect, copy, import.
    auto pref = audit_of(dir_of("pref:13"));
    ASSERT_EQ(pref.size(), 3u);
    EXPECT_EQ(pref[0].type, "media.inspect");
    EXPECT_EQ(pref[1].type, "media.copy");
    EXPECT_EQ(pref[2].type, "media.import");
    for (auto& r : pref) {
        EXPECT_EQ(r.id, id);
        EXPECT_EQ(r.op, "ops:sato");
        EXPECT_EQ(r.outcome, "ok");
        EXPECT_EQ(r.from, "muni:131016");
    }
    EXPECT_TRUE(has(pref[2].detail, "into " + inbox.string())) << pref[2].detail;
    expect_trail_intact("pref:13", 3);

    // The agency is in the same trust store but no neighbour: it can be sent media too.
    auto for_agency = tmp / "out" / "provision.rkm";
    ASSERT_EQ(export_for("agency:nta", for_agency).size(), 32u);
    auto at_agency = run_renkei("media import " + as("agency:nta", "nta:ito") + " --in " + quoted(for_agency) + " --out " +
                                quoted(tmp / "nta-inbox"));
    EXPECT_EQ(at_agency.code, 0) << at_agency.output;
    EXPECT_EQ(read_file(tmp / "nta-inbox" / "records.csv"), records);
}

TEST_F(MediaCli, RefusalsAreAuditedAndLeaveNothingBehind) {
    auto bundle = tmp / "update.rkm";
    auto id = export_for("pref:13", bundle);

    // Sealed to someone else.
    auto inbox = tmp / "nta-inbox";
    auto wrong = run_renkei("media import " + as("agency:nta", "nta:ito") + " --in " + quoted(bundle) + " --out " + quoted(inbox));
    EXPECT_EQ(wrong.code, 1) << wrong.output;
    EXPECT_TRUE(has(wrong.output, "sealed to pref:13, not to this node agency:nta; refused")) << wrong.output;
    EXPECT_TRUE(listing(inbox).empty());

    // One byte altered in the middle of the encrypted data.
    auto bytes = read_file(bundle);
    bytes[bytes.size() / 2] ^= 0x20;
    write_file(tmp / "altered.rkm", bytes);
    auto pref_inbox = tmp / "pref-inbox";
    auto altered = run_renkei("media import " + as("pref:13", "ops:sato") + " --in " + quoted(tmp / "altered.rkm") +
                              " --out " + quoted(pref_inbox));
    EXPECT_EQ(altered.code, 1) << altered.output;
    EXPECT_TRUE(has(altered.output, "altered")) << altered.output;
    EXPECT_TRUE(listing(pref_inbox).empty()) << "nothing of a refused bundle is written";

    // Truncated (the medium was pulled out while copying).
    write_file(tmp / "short.rkm", read_file(bundle).substr(0, bytes.size() - 100));
    auto cut = run_renkei("media import " + as("pref:13", "ops:sato") + " --in " + quoted(tmp / "short.rkm") + " --out " +
                          quoted(pref_inbox));
    EXPECT_EQ(cut.code, 1) << cut.output;
    EXPECT_TRUE(has(cut.output, "truncated")) << cut.output;
    EXPECT_TRUE(listing(pref_inbox).empty());

    // Not naming an operator, or a bad count rule: refused before anything, nothing audited.
    auto anonymous = run_renkei("media import --config " + quoted(config_of("pref:13")) + " --in " + quoted(bundle) +
                                " --out " + quoted(pref_inbox));
    EXPECT_EQ(anonymous.code, 2) << anonymous.output;
    EXPECT_TRUE(has(anonymous.output, "--operator is required")) << anonymous.output;
    auto bad_count = run_renkei("media export " + as("muni:131016", "ops:tanaka") + " --count fixed:0 --to pref:13 --out " +
                                quoted(tmp / "never.rkm") + " " + quoted(tmp / "src" / "records.csv"));
    EXPECT_EQ(bad_count.code, 2) << bad_count.output;
    EXPECT_TRUE(has(bad_count.output, "--count: 'fixed:0' is not a record count")) << bad_count.output;

    // An export to a node the trust store does not know is refused and audited.
    auto unknown = run_renkei("media export " + as("muni:131016", "ops:tanaka") + " --to agency:nobody --out " +
                              quoted(tmp / "never.rkm") + " " + quoted(tmp / "src" / "records.csv"));
    EXPECT_EQ(unknown.code, 1) << unknown.output;
    EXPECT_TRUE(has(unknown.output, "no trusted sealing key for agency:nobody")) << unknown.output;
    EXPECT_FALSE(fs::exists(tmp / "never.rkm"));

    auto nta = audit_of(dir_of("agency:nta"));
    ASSERT_EQ(nta.size(), 1u);
    EXPECT_EQ(nta[0].type, "media.import");
    EXPECT_EQ(nta[0].outcome, "refused");
    EXPECT_EQ(nta[0].id, id);
    EXPECT_EQ(nta[0].op, "nta:ito");
    EXPECT_TRUE(has(nta[0].detail, "wrong recipient: ")) << nta[0].detail;
    expect_trail_intact("agency:nta", 1);

    auto pref = audit_of(dir_of("pref:13"));
    ASSERT_EQ(pref.size(), 2u);
    EXPECT_EQ(pref[0].outcome, "refused");
    EXPECT_EQ(pref[0].id, id) << "the bundle id is read before the refusal";
    EXPECT_TRUE(has(pref[0].detail, "altered: ")) << pref[0].detail;
    EXPECT_TRUE(has(pref[1].detail, "truncated: ")) << pref[1].detail;
    expect_trail_intact("pref:13", 2);

    auto muni = audit_of(dir_of("muni:131016"));
    ASSERT_EQ(muni.size(), 2u); // the export, and the refused one
    EXPECT_EQ(muni[1].type, "media.export");
    EXPECT_EQ(muni[1].to, "agency:nobody");
    EXPECT_EQ(muni[1].outcome, "refused");
    expect_trail_intact("muni:131016", 2);
}

TEST_F(MediaCli, EraseOverwritesRemovesAndIsAudited) {
    auto bundle = tmp / "done.rkm";
    auto id = export_for("pref:13", bundle);
    write_file(tmp / "export-copy.csv", records);
    auto r = run_renkei("media erase " + as("muni:131016", "ops:tanaka") + " " + quoted(bundle) + " " +
                        quoted(tmp / "export-copy.csv") + " " + quoted(tmp / "no-such-file"));
    EXPECT_EQ(r.code, 1) << "one of three could not be erased: " << r.output;
    EXPECT_TRUE(has(r.output, "erased " + bundle.string())) << r.output;
    EXPECT_TRUE(has(r.output, ", bundle " + id)) << r.output;
    EXPECT_TRUE(has(r.output, "no-such-file: cannot open for erasing")) << r.output;
    EXPECT_FALSE(fs::exists(bundle));
    EXPECT_FALSE(fs::exists(tmp / "export-copy.csv"));

    auto muni = audit_of(dir_of("muni:131016"));
    ASSERT_EQ(muni.size(), 4u);
    EXPECT_EQ(muni[1].type, "media.erase");
    EXPECT_EQ(muni[1].id, id);
    EXPECT_EQ(muni[1].outcome, "ok");
    EXPECT_TRUE(has(muni[1].detail, "overwritten with random data, synced and unlinked")) << muni[1].detail;
    EXPECT_EQ(muni[2].type, "media.erase");
    EXPECT_EQ(muni[2].id, "");
    EXPECT_EQ(muni[2].outcome, "ok");
    EXPECT_EQ(muni[3].outcome, "failed");
    expect_trail_intact("muni:131016", 4);
}

TEST_F(MediaCli, ASecondImportIsRefusedAuditedAndLeavesNothingAndReimportIsAudited) {
    auto bundle = tmp / "update.rkm";
    auto id = export_for("pref:13", bundle);
    ASSERT_EQ(id.size(), 32u);
    auto inbox = tmp / "pref-inbox";
    auto first = run_renkei("media import " + as("pref:13", "ops:sato") + " --purpose juki-30-6 --in " + quoted(bundle) +
                            " --out " + quoted(inbox));
    ASSERT_EQ(first.code, 0) << first.output;
    EXPECT_TRUE(fs::exists(dir_of("pref:13") / "media-imports.db")) << "the ledger is in the node's data_dir";
    auto imported = listing(inbox);

    // The same bundle again, into another directory or the same one: refused, nothing written.
    auto other = tmp / "pref-inbox-2";
    auto again = run_renkei("media import " + as("pref:13", "ops:kato") + " --purpose juki-30-6 --in " + quoted(bundle) +
                            " --out " + quoted(other));
    EXPECT_EQ(again.code, 1) << again.output;
    EXPECT_TRUE(has(again.output, "bundle_id " + id + ": already imported at 20")) << again.output;
    EXPECT_TRUE(has(again.output, " by ops:sato into " + inbox.string() + "; rule media.import_once")) << again.output;
    EXPECT_TRUE(has(again.output, "--reimport")) << again.output;
    EXPECT_FALSE(fs::exists(other)) << "a refused import creates nothing";
    auto same = run_renkei("media import " + as("pref:13", "ops:kato") + " --in " + quoted(bundle) + " --out " + quoted(inbox));
    EXPECT_EQ(same.code, 1) << same.output;
    EXPECT_TRUE(has(same.output, "rule media.import_once")) << same.output;
    EXPECT_EQ(listing(inbox), imported);
    EXPECT_EQ(read_file(inbox / "records.csv"), records);

    // --reimport says why: without --purpose it does not start (nothing audited).
    auto restored = tmp / "pref-inbox-restored";
    auto why = run_renkei("media import " + as("pref:13", "ops:kato") + " --reimport --in " + quoted(bundle) + " --out " +
                          quoted(restored));
    EXPECT_EQ(why.code, 2) << why.output;
    EXPECT_TRUE(has(why.output, "--reimport (import a bundle this node imported before) needs --purpose")) << why.output;
    EXPECT_FALSE(fs::exists(restored));

    // The destination was restored from a backup that predates the import.
    auto re = run_renkei("media import " + as("pref:13", "ops:kato") + " --reimport --purpose restore-2024-05 --in " +
                         quoted(bundle) + " --out " + quoted(restored));
    ASSERT_EQ(re.code, 0) << re.output;
    EXPECT_TRUE(has(re.output, "re-imported bundle " + id + " from muni:131016")) << re.output;
    EXPECT_TRUE(has(re.output, "imported before at 20")) << re.output;
    EXPECT_EQ(read_file(restored / "records.csv"), records);
    EXPECT_EQ(read_file(restored / "batch.txt"), big);

    // And still once for a plain import.
    auto third = run_renkei("media import " + as("pref:13", "ops:kato") + " --in " + quoted(bundle) + " --out " +
                            quoted(tmp / "pref-inbox-3"));
    EXPECT_EQ(third.code, 1) << third.output;
    EXPECT_TRUE(has(third.output, "by ops:kato into " + restored.string() + " (2 imports on record)")) << third.output;
    EXPECT_FALSE(fs::exists(tmp / "pref-inbox-3"));

    auto pref = audit_of(dir_of("pref:13"));
    ASSERT_EQ(pref.size(), 5u);
    EXPECT_EQ(pref[0].type, "media.import");
    EXPECT_EQ(pref[0].outcome, "ok");
    for (size_t i : {1u, 2u, 4u}) {
        EXPECT_EQ(pref[i].type, "media.import") << i;
        EXPECT_EQ(pref[i].outcome, "refused") << i;
        EXPECT_EQ(pref[i].id, id) << i;
        EXPECT_EQ(pref[i].from, "muni:131016") << i;
        EXPECT_EQ(pref[i].to, "pref:13") << i;
        EXPECT_EQ(pref[i].op, "ops:kato") << i;
        EXPECT_TRUE(has(pref[i].detail, "already imported: ")) << pref[i].detail;
        EXPECT_TRUE(has(pref[i].detail, "bundle_id " + id + ": already imported at ")) << pref[i].detail;
        EXPECT_TRUE(has(pref[i].detail, "rule media.import_once")) << pref[i].detail;
    }
    EXPECT_EQ(pref[1].purpose, "juki-30-6");
    EXPECT_TRUE(has(pref[1].detail, "into " + other.string())) << pref[1].detail;
    EXPECT_EQ(pref[3].type, "media.reimport");
    EXPECT_EQ(pref[3].outcome, "ok");
    EXPECT_EQ(pref[3].id, id);
    EXPECT_EQ(pref[3].op, "ops:kato");
    EXPECT_EQ(pref[3].purpose, "restore-2024-05");
    EXPECT_TRUE(has(pref[3].detail, "re-import (--reimport) of bundle " + bundle.string() + " into " + restored.string()))
        << pref[3].detail;
    EXPECT_TRUE(has(pref[3].detail, "imported before at 20")) << pref[3].detail;
    EXPECT_TRUE(has(pref[3].detail, " by ops:sato into " + inbox.string())) << pref[3].detail;
    EXPECT_TRUE(has(pref[3].detail, "2 file(s), ")) << pref[3].detail;
    expect_trail_intact("pref:13", 5);
}
