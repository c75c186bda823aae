#include "test_support.hpp"

#include <renkei/audit_log.hpp>

#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
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
        AuditOptions unsynced;
        unsynced.durable = false;
        AuditLog log(tmp / "audit", unsynced);
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

// Several processes append to one directory (the host and an operator command beside it).
namespace {

AuditOptions options(bool durable, uint64_t max_file_bytes) {
    AuditOptions o;
    o.durable = durable;
    o.max_file_bytes = max_file_bytes;
    return o;
}

AuditRecord tagged(const std::string& who, int i) {
    AuditRecord r = rec(i);
    r.event = "admin";
    r.detail = who + "-" + std::to_string(i);
    return r;
}

// The detail field (index 10) of every record in the directory, in chain order.
std::vector<std::string> details_in_order(const fs::path& dir) {
    std::vector<fs::path> files;
    for (auto& e : fs::directory_iterator(dir))
        if (e.path().extension() == ".log") files.push_back(e.path());
    std::sort(files.begin(), files.end());
    std::vector<std::string> out;
    for (auto& f : files)
        for (auto& line : lines_of(f)) {
            std::vector<std::string> fields(1);
            for (char c : line) {
                if (c == '\t') fields.emplace_back();
                else fields.back().push_back(c);
            }
            out.push_back(fields.at(10));
        }
    return out;
}

// Each writer's records appear in the order it appended them, and all of them.
void expect_each_in_order(const std::vector<std::string>& details, const std::vector<std::string>& writers, int n) {
    for (auto& w : writers) {
        int next = 0;
        for (auto& d : details)
            if (d.rfind(w + "-", 0) == 0) {
                EXPECT_EQ(d, w + "-" + std::to_string(next)) << "out of order";
                ++next;
            }
        EXPECT_EQ(next, n) << w;
    }
}

void write_byte(int fd) {
    char c = 'x';
    while (::write(fd, &c, 1) < 0 && errno == EINTR) {
    }
}

bool read_byte(int fd) {
    char c;
    ssize_t n;
    while ((n = ::read(fd, &c, 1)) < 0 && errno == EINTR) {
    }
    return n == 1;
}

int wait_child(pid_t pid) {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}


} // namespace

// Two processes, each with the log open all along, take strict turns: every record of one is
// written after the other moved the tail, so each must re-read it before writing.
TEST(AuditLog, TwoProcessesTakingTurnsKeepOneChain) {
    TempDir tmp;
    auto dir = tmp / "audit";
    fill(dir, 3); // an existing trail both continue
    constexpr int kRounds = 150;
    int to_child[2], to_parent[2];
    ASSERT_EQ(::pipe(to_child), 0);
    ASSERT_EQ(::pipe(to_parent), 0);
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        int code = 0;
        try {
            AuditLog log(dir, options(false, 4000)); // small files: rotations by both sides
            write_byte(to_parent[1]);                     // open before the parent writes
            for (int i = 0; i < kRounds; ++i) {
                if (!read_byte(to_child[0])) _exit(3);
                log.append(tagged("child", i));
                log.flush();
                write_byte(to_parent[1]);
            }
        } catch (...) {
            code = 2;
        }
        _exit(code);
    }
    {
        AuditLog log(dir, options(false, 4000));
        ASSERT_TRUE(read_byte(to_parent[0]));
        for (int i = 0; i < kRounds; ++i) {
            log.append(tagged("parent", i));
            log.flush();
            write_byte(to_child[1]);
            ASSERT_TRUE(read_byte(to_parent[0]));
        }
    }
    EXPECT_EQ(wait_child(pid), 0);
    for (int fd : {to_child[0], to_child[1], to_parent[0], to_parent[1]}) ::close(fd);

    auto r = verify_audit(dir);
    EXPECT_TRUE(r.ok) << r.error;
    EXPECT_EQ(r.records, 3u + 2 * kRounds);
    auto details = details_in_order(dir);
    ASSERT_EQ(details.size(), 3u + 2 * kRounds);
    for (int i = 0; i < kRounds; ++i) { // strictly alternating, as the turns were taken
        EXPECT_EQ(details[3 + 2 * i], "parent-" + std::to_string(i));
        EXPECT_EQ(details[4 + 2 * i], "child-" + std::to_string(i));
    }
    auto cli = run_renkei("audit verify " + dir.string());
    EXPECT_EQ(cli.code, 0) << cli.output;
    EXPECT_NE(cli.output.find("ok, " + std::to_string(3 + 2 * kRounds) + " records, chain intact"), std::string::npos)
        << cli.output;
}

// Three processes and this one append as fast as they can, rotating small files, while this one
// also verifies the trail again and again: every verify passes (it never sees a half-written
// line) and in the end every record is there once, each writer's in its own order.
TEST(AuditLog, ProcessesAppendingFreelyWhileVerifying) {
    TempDir tmp;
    auto dir = tmp / "audit";
    constexpr int kChildren = 3, kEach = 1500;
    int start[2];
    ASSERT_EQ(::pipe(start), 0);
    std::vector<pid_t> pids;
    for (int c = 0; c < kChildren; ++c) {
        pid_t pid = ::fork();
        ASSERT_GE(pid, 0);
        if (pid == 0) {
            ::close(start[1]);
            int code = 0;
            try {
                read_byte(start[0]); // returns at EOF: all start together
                AuditLog log(dir, options(c == 0, 16000));
                for (int i = 0; i < kEach; ++i) {
                    log.append(tagged("w" + std::to_string(c), i));
                    if (i % 7 == 0) log.flush(); // many small batches
                }
                log.flush();
            } catch (...) {
                code = 2;
            }
            _exit(code);
        }
        pids.push_back(pid);
    }
    ::close(start[0]);
    ::close(start[1]); // go
    int verifies = 0;
    {
        AuditLog log(dir, options(false, 16000));
        for (int i = 0; i < kEach; ++i) {
            log.append(tagged("w" + std::to_string(kChildren), i));
            if (i % 50 == 0) {
                log.flush();
                auto r = verify_audit(dir);
                EXPECT_TRUE(r.ok) << "while appending: " << r.error;
                ++verifies;
            }
        }
    }
    for (auto pid : pids) EXPECT_EQ(wait_child(pid), 0);
    EXPECT_GT(verifies, 0);

    auto r = verify_audit(dir);
    EXPECT_TRUE(r.ok) << r.error;
    EXPECT_EQ(r.records, static_cast<uint64_t>((kChildren + 1) * kEach));
    std::vector<std::string> writers;
    for (int c = 0; c <= kChildren; ++c) writers.push_back("w" + std::to_string(c));
    expect_each_in_order(details_in_order(dir), writers, kEach);
    size_t files = 0;
    for (auto& e : fs::directory_iterator(dir)) files += e.path().extension() == ".log";
    EXPECT_GT(files, 3u) << "the writers rotated files under each other";
}

// Retention in one process while another appends: the anchor and the tail stay consistent.
TEST(AuditLog, ExpiryInOneProcessWhileAnotherAppends) {
    TempDir tmp;
    auto dir = tmp / "audit";
    AuditOptions small = options(false, 2000);
    {
        AuditLog log(dir, small);
        for (int i = 0; i < 60; ++i) {
            log.append(rec(i, 1000)); // old
            if (i % 10 == 9) log.flush();
        }
    }
    int go[2];
    ASSERT_EQ(::pipe(go), 0);
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        ::close(go[1]);
        int code = 0;
        try {
            AuditLog log(dir, small);
            read_byte(go[0]);
            for (int i = 0; i < 400; ++i) {
                auto r = tagged("late", i);
                r.time_ms = 900000 + i; // newer than the cutoff: never expired
                log.append(std::move(r));
                if (i % 5 == 0) log.flush();
            }
        } catch (...) {
            code = 2;
        }
        _exit(code);
    }
    ::close(go[0]);
    size_t removed = 0;
    {
        AuditLog log(dir, small);
        ::close(go[1]);
        removed = log.expire_before(500000);
    }
    EXPECT_EQ(wait_child(pid), 0);
    EXPECT_GT(removed, 0u);
    auto r = verify_audit(dir);
    EXPECT_TRUE(r.ok) << r.error;
    expect_each_in_order(details_in_order(dir), {"late"}, 400);
}
