#include "test_support.hpp"

#include <renkei/audit_log.hpp>

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <thread>

using namespace renkei;
using namespace renkei::test;
namespace fs = std::filesystem;

namespace {

AuditRecord rec(int i, int64_t time_ms = 1000) {
    AuditRecord r;
    r.time_ms = time_ms + i;
    r.event = "delivered";
    r.message_id = "id" + std::to_string(i);
    r.type = "juki.IdentityUpdate";
    r.from = "muni:131016";
    r.to = "pref:13";
    r.purpose = "juki-30-6";
    r.operator_id = "op\t7"; // separators are escaped
    r.outcome = "ok";
    r.detail = "line\nbreak";
    r.subject = "123456789018";
    return r;
}

std::vector<std::string> lines_of(const fs::path& f) {
    std::ifstream in(f);
    std::vector<std::string> out;
    for (std::string l; std::getline(in, l);) out.push_back(l);
    return out;
}

void write_lines(const fs::path& f, const std::vector<std::string>& lines) {
    std::ofstream out(f, std::ios::trunc);
    for (auto& l : lines) out << l << '\n';
}

fs::path only_file(const fs::path& dir) {
    for (auto& e : fs::directory_iterator(dir))
        if (e.path().extension() == ".log") return e.path();
    return {};
}

void fill(const fs::path& dir, int n, AuditOptions o = {}) {
    AuditLog log(dir, o);
    for (int i = 0; i < n; ++i) log.append(rec(i));
    log.flush();
}

} // namespace

TEST(AuditLog, ChainVerifiesAndSubjectIsNeverStoredRaw) {
    TempDir tmp;
    fill(tmp / "audit", 50);
    auto r = verify_audit(tmp / "audit");
    EXPECT_TRUE(r.ok) << r.error;
    EXPECT_EQ(r.records, 50u);
    auto text = read_file(only_file(tmp / "audit"));
    EXPECT_EQ(text.find("123456789018"), std::string::npos);
    EXPECT_NE(text.find("op\\t7"), std::string::npos);
}

TEST(AuditLog, EditIsDetectedAtTheRecord) {
    TempDir tmp;
    fill(tmp / "audit", 20);
    auto f = only_file(tmp / "audit");
    auto lines = lines_of(f);
    lines[9].replace(lines[9].find("pref:13"), 7, "pref:14");
    write_lines(f, lines);
    auto r = verify_audit(tmp / "audit");
    EXPECT_FALSE(r.ok);
    EXPECT_EQ(r.records, 9u);
    EXPECT_NE(r.error.find(":10: record 10: hash mismatch"), std::string::npos) << r.error;
}

TEST(AuditLog, DeletionInsertionAndReorderingAreDetected) {
    TempDir tmp;
    fill(tmp / "audit", 20);
    auto f = only_file(tmp / "audit");
    auto original = lines_of(f);

    auto deleted = original;
    deleted.erase(deleted.begin() + 5);
    write_lines(f, deleted);
    auto r = verify_audit(tmp / "audit");
    EXPECT_FALSE(r.ok);
    EXPECT_NE(r.error.find("record 6: sequence number 7 where 6 was expected"), std::string::npos) << r.error;

    auto swapped = original;
    std::swap(swapped[3], swapped[4]);
    write_lines(f, swapped);
    r = verify_audit(tmp / "audit");
    EXPECT_FALSE(r.ok);
    EXPECT_NE(r.error.find("record 4"), std::string::npos) << r.error;

    auto inserted = original;
    inserted.insert(inserted.begin() + 8, original[7]); // a forged copy of a real record
    write_lines(f, inserted);
    r = verify_audit(tmp / "audit");
    EXPECT_FALSE(r.ok);
    EXPECT_NE(r.error.find("record 9"), std::string::npos) << r.error;

    write_lines(f, original);
    std::string text = read_file(f);
    write_file(f, text.substr(0, text.size() - 10)); // cut mid-record
    r = verify_audit(tmp / "audit");
    EXPECT_FALSE(r.ok);
    EXPECT_NE(r.error.find("record 20"), std::string::npos) << r.error;
}

TEST(AuditLog, ReopenContinuesTheChainAndRepairsATornTail) {
    TempDir tmp;
    fill(tmp / "audit", 10);
    auto f = only_file(tmp / "audit");
    std::ofstream(f, std::ios::app) << "11\t12"; // a crash mid-write
    fill(tmp / "audit", 5);
    auto r = verify_audit(tmp / "audit");
    EXPECT_TRUE(r.ok) << r.error;
    EXPECT_EQ(r.records, 15u);
}

TEST(AuditLog, RotationAndRetentionKeepWhatRemainsVerifiable) {
    TempDir tmp;
    AuditOptions o;
    o.max_file_bytes = 2000;
    {
        AuditLog log(tmp / "audit", o);
        for (int i = 0; i < 100; ++i) {
            log.append(rec(i, i < 60 ? 1000 : 900000));
            if (i % 10 == 9) log.flush(); // batches end at file boundaries
        }
        log.flush();
        size_t files_before = 0;
        for (auto& e : fs::directory_iterator(tmp / "audit")) files_before += e.path().extension() == ".log";
        ASSERT_GT(files_before, 3u);
        EXPECT_GT(log.expire_before(500000), 0u);
    }
    auto r = verify_audit(tmp / "audit");
    EXPECT_TRUE(r.ok) << r.error;
    EXPECT_LT(r.records, 100u);
    EXPECT_GE(r.records, 40u);

    // Deleting a middle file is still detected.
    std::vector<fs::path> files;
    for (auto& e : fs::directory_iterator(tmp / "audit"))
        if (e.path().extension() == ".log") files.push_back(e.path());
    std::sort(files.begin(), files.end());
    ASSERT_GE(files.size(), 3u);
    fs::remove(files[1]);
    r = verify_audit(tmp / "audit");
    EXPECT_FALSE(r.ok);
    EXPECT_NE(r.error.find("was expected"), std::string::npos) << r.error;
}

TEST(AuditLog, ConcurrentAppendersProduceOneValidChain) {
    TempDir tmp;
    {
        AuditLog log(tmp / "audit", AuditOptions{false});
        std::vector<std::thread> threads;
        for (int t = 0; t < 4; ++t)
            threads.emplace_back([&] {
                for (int i = 0; i < 2500; ++i) log.append(rec(i));
            });
        for (auto& th : threads) th.join();
        log.flush();
        EXPECT_EQ(log.appended(), 10000u);
    }
    auto r = verify_audit(tmp / "audit");
    EXPECT_TRUE(r.ok) << r.error;
    EXPECT_EQ(r.records, 10000u);
}
