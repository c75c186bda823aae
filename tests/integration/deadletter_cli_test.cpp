// `renkei deadletter list|replay|drop`, run as a real process against a real outbox.db whose
// entries died the way they do in a host: out of attempts, or refused by the peer.
#include "renkei/audit_log.hpp"
#include "renkei/dead_letters.hpp"
#include "renkei/deadletter_cli.hpp"
#include "renkei/envelope.hpp"
#include "renkei/outbox.hpp"

#include "test_support.hpp"

#include <gtest/gtest.h>

#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

using namespace renkei;
using namespace renkei::test;

namespace {


bool has(const std::string& haystack, const std::string& needle) {
    return haystack.find(needle) != std::string::npos;
}

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) out.push_back(line);
    return out;
}

int64_t wall_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

std::vector<uint8_t> bytes_of(const std::string& s) { return {s.begin(), s.end()}; }

// 2024-05-01T09:30:00.250Z
constexpr int64_t kQueued = 1'714'555'800'250;

OutboxOptions short_retry() {
    OutboxOptions o;
    o.retry.base_delay_ms = 10;
    o.retry.max_delay_ms = 20;
    o.retry.jitter = 0.0;
    o.retry.max_attempts = 2;
    return o;
}

std::string content_of(int i) { return "SECRET-CONTENT-" + std::to_string(i) + "-個人番号123456789012"; }

// A data directory whose outbox.db holds three dead letters: two that ran out of attempts (sent
// twice, never acknowledged) and one the peer refused for good, with a reason that tries to
// break the line. Oldest death first: exhausted[0], exhausted[1], refused.
struct Fixture {
    TempDir tmp;
    std::filesystem::path data = tmp / "data";
    std::filesystem::path db = data / "outbox.db";
    std::vector<MessageId> exhausted;
    MessageId refused{};

    Fixture() {
        std::filesystem::create_directories(data);
        Outbox outbox(db, short_retry());
        // They die together, so the list orders them by id (bytes, as SQLite compares blobs).
        exhausted = {new_message_id(), new_message_id()};
        std::sort(exhausted.begin(), exhausted.end());
        for (int i = 0; i < 2; ++i) {
            outbox.put("pref:13", exhausted[i], "juki.IdentityUpdate", bytes_of(content_of(i)), kQueued);
        }
        refused = new_message_id();
        uint64_t refused_seq = outbox.put("jlis:juki", refused, "juki.Query", bytes_of(content_of(2)), kQueued);

        // The sender loop: send what is due, arm the retry, until the attempts are used up.
        int64_t now = kQueued;
        for (int attempt = 0; attempt < 2; ++attempt) {
            std::vector<uint64_t> seqs;
            for (auto& e : outbox.due(now, 100))
                if (e.id != refused) seqs.push_back(e.seq);
            EXPECT_EQ(seqs.size(), 2u);
            outbox.mark_sent(seqs, now);
            now += 1'000;
        }
        EXPECT_TRUE(outbox.due(now, 100).size() == 1) << "only the refused one still has attempts";
        auto moved = outbox.dead_letter_exhausted(now);
        EXPECT_EQ(moved.size(), 2u);
        EXPECT_TRUE(outbox.move_to_dead_letter(refused_seq, "refused: unknown municipality\ncode\x1b[2J", now + 1'000));
        EXPECT_EQ(outbox.size(), 0u);
        DeadLetters letters(db);
        EXPECT_EQ(letters.count(), 3u);
    }

    std::string dir_arg() const { return "--data-dir " + data.string(); }
};

} // namespace

TEST(DeadletterCli, ListShowsEachDeadLetterOnOneLineWithoutContent) {
    Fixture f;
    auto r = run_renkei("deadletter list " + f.dir_arg());
    ASSERT_EQ(r.code, 0) << r.output;
    auto lines = lines_of(r.output);
    ASSERT_EQ(lines.size(), 4u) << r.output;
    // Oldest death first; every field an operator needs to decide.
    EXPECT_EQ(lines[0].rfind(hex(f.exhausted[0]) + " ", 0), 0u) << lines[0];
    EXPECT_EQ(lines[1].rfind(hex(f.exhausted[1]) + " ", 0), 0u) << lines[1];
    EXPECT_EQ(lines[2].rfind(hex(f.refused) + " ", 0), 0u) << lines[2];
    for (int i = 0; i < 2; ++i) {
        EXPECT_TRUE(has(lines[i], " peer=pref:13 ")) << lines[i];
        EXPECT_TRUE(has(lines[i], " type=juki.IdentityUpdate ")) << lines[i];
        EXPECT_TRUE(has(lines[i], " attempts=2 ")) << lines[i];
        EXPECT_TRUE(has(lines[i], " queued=2024-05-01T09:30:00.250Z ")) << lines[i];
        EXPECT_TRUE(has(lines[i], " dead=2024-05-01T09:30:02.250Z ")) << lines[i];
        EXPECT_TRUE(has(lines[i], " reason=no acknowledgement after 2 sends")) << lines[i];
        EXPECT_TRUE(has(lines[i], " size=" + std::to_string(content_of(i).size()) + " ")) << lines[i];
    }
    EXPECT_TRUE(has(lines[2], " peer=jlis:juki type=juki.Query ")) << lines[2];
    EXPECT_TRUE(has(lines[2], " attempts=0 ")) << lines[2];
    EXPECT_TRUE(has(lines[2], " dead=2024-05-01T09:30:03.250Z ")) << lines[2];
    // The peer's reason cannot add a line or drive the terminal.
    EXPECT_TRUE(has(lines[2], " reason=refused: unknown municipality\\x0acode\\x1b[2J")) << lines[2];
    EXPECT_EQ(lines[3], "3 dead letter(s)");
    EXPECT_FALSE(has(r.output, "SECRET-CONTENT")) << r.output;
    EXPECT_FALSE(has(r.output, "123456789012")) << r.output;
}

TEST(DeadletterCli, ListPagesAndSaysHowManyThereAre) {
    Fixture f;
    auto r = run_renkei("deadletter list " + f.dir_arg() + " --limit 1 --offset 1");
    ASSERT_EQ(r.code, 0) << r.output;
    auto lines = lines_of(r.output);
    ASSERT_EQ(lines.size(), 2u) << r.output;
    EXPECT_EQ(lines[0].rfind(hex(f.exhausted[1]) + " ", 0), 0u) << lines[0];
    EXPECT_EQ(lines[1], "1 of 3 dead letter(s) shown (2-2); page with --offset and --limit");
    auto past = run_renkei("deadletter list " + f.dir_arg() + " --offset 3");
    EXPECT_EQ(past.code, 0) << past.output;
    EXPECT_EQ(past.output, "no dead letters at offset 3; 3 dead letter(s) in all\n");
}

TEST(DeadletterCli, ListJsonIsOneDocumentWithoutContent) {
    Fixture f;
    auto r = run_renkei("deadletter list " + f.dir_arg() + " --json", true);
    ASSERT_EQ(r.code, 0) << r.output;
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
    EXPECT_EQ(r.output.rfind("{\"database\":\"" + f.db.string() + "\",\"total\":3,\"offset\":0,\"limit\":100,", 0), 0u)
        << r.output;
    EXPECT_TRUE(has(r.output, "{\"id\":\"" + hex(f.exhausted[0]) +
                                  "\",\"peer\":\"pref:13\",\"type\":\"juki.IdentityUpdate\",\"size\":" +
                                  std::to_string(content_of(0).size()) +
                                  ",\"attempts\":2,\"queued\":\"2024-05-01T09:30:00.250Z\",\"dead\":\"2024-05-01T09:30:02.250Z\","
                                  "\"reason\":\"no acknowledgement after 2 sends\"}"))
        << r.output;
    EXPECT_TRUE(has(r.output, "\"id\":\"" + hex(f.refused) + "\"")) << r.output;
    EXPECT_TRUE(has(r.output, "\"reason\":\"refused: unknown municipality\\ncode\\u001b[2J\"")) << r.output;
    EXPECT_FALSE(has(r.output, "SECRET-CONTENT")) << r.output;
}

TEST(DeadletterCli, ReplayOfOneIdPutsItBackInTheOutboxDueNow) {
    Fixture f;
    // Opened before the command runs and kept open, as a running host holds it.
    Outbox outbox(f.db, short_retry());
    EXPECT_EQ(outbox.size(), 0u);
    int64_t before = wall_ms();
    auto r = run_renkei("deadletter replay --operator ops:tanaka " + f.dir_arg() + " --id " + hex(f.exhausted[1]));
    int64_t after = wall_ms();
    ASSERT_EQ(r.code, 0) << r.output;
    EXPECT_EQ(r.output.rfind("replayed " + hex(f.exhausted[1]) +
                                 " peer=pref:13 type=juki.IdentityUpdate attempts=2 reason=no acknowledgement after 2 sends -> outbox seq ",
                             0),
              0u)
        << r.output;
    EXPECT_TRUE(has(r.output, ", attempts 0, due now\n")) << r.output;
    EXPECT_FALSE(has(r.output, "SECRET-CONTENT")) << r.output;

    DeadLetters letters(f.db);
    EXPECT_EQ(letters.count(), 2u);
    EXPECT_FALSE(letters.get(f.exhausted[1])) << "replay takes it out of the dead letters";
    EXPECT_TRUE(letters.get(f.exhausted[0]));
    EXPECT_TRUE(letters.get(f.refused));

    // What the host's resend loop sees: one entry, due by the time the command returned, with a
    // fresh attempt count and the original bytes.
    EXPECT_EQ(outbox.size(), 1u);
    EXPECT_TRUE(outbox.due(before - 1, 10).empty()) << "due from the replay on, not before";
    auto due = outbox.due(after, 10);
    ASSERT_EQ(due.size(), 1u);
    EXPECT_EQ(due[0].id, f.exhausted[1]);
    EXPECT_EQ(due[0].peer, "pref:13");
    EXPECT_EQ(due[0].type, "juki.IdentityUpdate");
    EXPECT_EQ(due[0].attempts, 0);
    EXPECT_EQ(due[0].bytes, bytes_of(content_of(1)));
    EXPECT_TRUE(outbox.ack("pref:13", f.exhausted[1])) << "an ack now settles it";

    auto again = run_renkei("deadletter replay --operator ops:tanaka " + f.dir_arg() + " --id " + hex(f.exhausted[1]));
    EXPECT_EQ(again.code, 1) << "a second replay finds nothing: " << again.output;
}

TEST(DeadletterCli, ReplayOfAnUnknownIdFailsNamingIt) {
    Fixture f;
    auto unknown = hex(new_message_id());
    auto r = run_renkei("deadletter replay --operator ops:tanaka " + f.dir_arg() + " --id " + unknown);
    EXPECT_EQ(r.code, 1) << r.output;
    EXPECT_TRUE(has(r.output, "no dead letter with id " + unknown)) << r.output;
    EXPECT_TRUE(has(r.output, f.db.string())) << r.output;
    auto bad = run_renkei("deadletter replay --operator ops:tanaka " + f.dir_arg() + " --id xyz");
    EXPECT_EQ(bad.code, 1) << bad.output;
    EXPECT_TRUE(has(bad.output, "'xyz' is not a message id (32 hex digits)")) << bad.output;
    DeadLetters letters(f.db);
    EXPECT_EQ(letters.count(), 3u) << "nothing moved";
    Outbox outbox(f.db);
    EXPECT_EQ(outbox.size(), 0u);
}

TEST(DeadletterCli, ReplayAllRequeuesEveryOne) {
    Fixture f;
    auto r = run_renkei("deadletter replay --operator ops:tanaka " + f.dir_arg() + " --all");
    ASSERT_EQ(r.code, 0) << r.output;
    EXPECT_TRUE(has(r.output, "replayed " + hex(f.exhausted[0]) + " ")) << r.output;
    EXPECT_TRUE(has(r.output, "replayed " + hex(f.exhausted[1]) + " ")) << r.output;
    EXPECT_TRUE(has(r.output, "replayed " + hex(f.refused) + " ")) << r.output;
    EXPECT_TRUE(has(r.output, "\n3 dead letter(s) replayed\n")) << r.output;
    DeadLetters letters(f.db);
    EXPECT_EQ(letters.count(), 0u);
    Outbox outbox(f.db, short_retry());
    auto due = outbox.due(wall_ms(), 10);
    ASSERT_EQ(due.size(), 3u);
    for (auto& e : due) EXPECT_EQ(e.attempts, 0);

    auto empty = run_renkei("deadletter replay --operator ops:tanaka " + f.dir_arg() + " --all");
    EXPECT_EQ(empty.code, 0) << empty.output;
    EXPECT_EQ(empty.output, "no dead letters to replay in " + f.db.string() + "\n");
    auto list = run_renkei("deadletter list " + f.dir_arg());
    EXPECT_EQ(list.code, 0) << list.output;
    EXPECT_EQ(list.output, "no dead letters in " + f.db.string() + "\n");
}

TEST(DeadletterCli, DropDiscardsOne) {
    Fixture f;
    auto r = run_renkei("deadletter drop --operator ops:tanaka " + f.dir_arg() + " --id " + hex(f.refused));
    ASSERT_EQ(r.code, 0) << r.output;
    EXPECT_EQ(r.output.rfind("dropped " + hex(f.refused) + " peer=jlis:juki type=juki.Query attempts=0 reason=refused: ", 0),
              0u)
        << r.output;
    DeadLetters letters(f.db);
    EXPECT_EQ(letters.count(), 2u);
    EXPECT_FALSE(letters.get(f.refused));
    Outbox outbox(f.db);
    EXPECT_EQ(outbox.size(), 0u) << "dropped, not replayed";
    EXPECT_FALSE(outbox.replay_dead_letter(f.refused, wall_ms())) << "gone for good";

    auto again = run_renkei("deadletter drop --operator ops:tanaka " + f.dir_arg() + " --id " + hex(f.refused));
    EXPECT_EQ(again.code, 1) << again.output;
    EXPECT_TRUE(has(again.output, "no dead letter with id " + hex(f.refused))) << again.output;
}

TEST(DeadletterCli, MissingDatabaseIsAnErrorNamingTheFileAndNothingIsCreated) {
    TempDir tmp;
    auto missing = tmp / "nowhere" / "outbox.db";
    for (const std::string& cmd : std::vector<std::string>{"list", "replay --all --operator ops:tanaka",
                                                            "drop --operator ops:tanaka --id " + hex(new_message_id())}) {
        auto r = run_renkei("deadletter " + cmd + " --data-dir " + (tmp / "nowhere").string());
        EXPECT_EQ(r.code, 2) << cmd << ": " << r.output;
        EXPECT_TRUE(has(r.output, missing.string() + ": no such outbox database")) << cmd << ": " << r.output;
    }
    EXPECT_FALSE(std::filesystem::exists(tmp / "nowhere")) << "a mistyped directory is never created";
}

TEST(DeadletterCli, EmptyStoreSaysSo) {
    TempDir tmp;
    { Outbox outbox(tmp / "outbox.db"); }
    auto r = run_renkei("deadletter list --data-dir " + tmp.path().string());
    EXPECT_EQ(r.code, 0) << r.output;
    EXPECT_EQ(r.output, "no dead letters in " + (tmp / "outbox.db").string() + "\n");
    auto json = run_renkei("deadletter list --json --data-dir " + tmp.path().string(), true);
    EXPECT_EQ(json.code, 0) << json.output;
    EXPECT_TRUE(has(json.output, "\"total\":0,")) << json.output;
    EXPECT_TRUE(has(json.output, "\"dead_letters\":[]}")) << json.output;
}

TEST(DeadletterCli, ConfigFileGivesTheDataDirectory) {
    Fixture f;
    write_file(f.tmp / "node.toml", "[node]\nid = \"pref:13\"\ndata_dir = \"data\"\n");
    auto r = run_renkei("deadletter list --config " + (f.tmp / "node.toml").string());
    ASSERT_EQ(r.code, 0) << r.output;
    EXPECT_TRUE(has(r.output, hex(f.refused))) << r.output;
    EXPECT_TRUE(has(r.output, "3 dead letter(s)")) << r.output;

    write_file(f.tmp / "bad.toml", "[node]\nid = \"nonsense\"\n");
    auto bad = run_renkei("deadletter list --config " + (f.tmp / "bad.toml").string());
    EXPECT_EQ(bad.code, 2) << bad.output;
    EXPECT_TRUE(has(bad.output, "node.id")) << bad.output;

    auto both = run_renkei("deadletter list " + f.dir_arg() + " --config " + (f.tmp / "node.toml").string());
    EXPECT_NE(both.code, 0) << both.output;
    auto neither = run_renkei("deadletter list");
    EXPECT_EQ(neither.code, 2) << neither.output;
    EXPECT_TRUE(has(neither.output, "give either --data-dir DIR or --config FILE")) << neither.output;
}

TEST(DeadletterCli, RunsInProcessWithSeparateStreams) {
    Fixture f;
    DeadLetterCliOptions o;
    o.action = DeadLetterAction::replay;
    o.data_dir = f.data;
    o.id = hex(new_message_id());
    o.operator_id = "ops:tanaka";
    std::ostringstream out, err;
    EXPECT_EQ(run_deadletter_command(o, out, err), 1);
    EXPECT_EQ(out.str(), "");
    EXPECT_TRUE(has(err.str(), "no dead letter with id " + o.id)) << err.str();
    EXPECT_EQ(iso8601_utc(0), "1970-01-01T00:00:00.000Z");
    EXPECT_EQ(iso8601_utc(kQueued), "2024-05-01T09:30:00.250Z");
    EXPECT_EQ(iso8601_utc(-1), "1969-12-31T23:59:59.999Z");
}

// replay and drop are in the node's audit trail, one record per dead letter acted on or refused,
// appended while the host (here: an AuditLog held open on the same directory) appends too.
TEST(DeadletterCli, ReplayAndDropAreAuditedBesideTheRunningHost) {
    Fixture f;
    auto audit_dir = f.data / "audit";
    AuditLog host_log(audit_dir);
    AuditRecord before;
    before.event = "delivered";
    before.type = "juki.IdentityUpdate";
    before.outcome = "ok";
    host_log.append(AuditRecord(before));
    host_log.flush();

    auto no_operator = run_renkei("deadletter replay " + f.dir_arg() + " --id " + hex(f.exhausted[0]));
    EXPECT_EQ(no_operator.code, 2) << no_operator.output;
    EXPECT_TRUE(has(no_operator.output, "needs --operator NAME")) << no_operator.output;
    DeadLetters letters(f.db);
    EXPECT_EQ(letters.count(), 3u) << "nothing done without an operator";

    ASSERT_EQ(run_renkei("deadletter replay --operator ops:tanaka " + f.dir_arg() + " --id " + hex(f.exhausted[1])).code, 0);
    host_log.append(AuditRecord(before)); // the host goes on appending between the commands
    host_log.flush();
    ASSERT_EQ(run_renkei("deadletter drop --operator ops:suzuki " + f.dir_arg() + " --id " + hex(f.refused)).code, 0);
    auto unknown = hex(new_message_id());
    EXPECT_EQ(run_renkei("deadletter drop --operator ops:suzuki " + f.dir_arg() + " --id " + unknown).code, 1);
    host_log.append(AuditRecord(before));
    host_log.flush();

    auto verify = run_renkei("audit verify " + audit_dir.string());
    EXPECT_EQ(verify.code, 0) << verify.output;
    EXPECT_TRUE(has(verify.output, "ok, 6 records, chain intact")) << verify.output;

    std::string trail;
    for (auto& e : std::filesystem::directory_iterator(audit_dir))
        if (e.path().extension() == ".log") trail += read_file(e.path());
    auto records = lines_of(trail);
    ASSERT_EQ(records.size(), 6u) << trail;
    auto field = [](const std::string& line, size_t i) {
        std::vector<std::string> f(1);
        for (char c : line) {
            if (c == '\t') f.emplace_back();
            else f.back().push_back(c);
        }
        return f.at(i);
    };
    // seq time event id type from to purpose operator outcome detail subject prev hash
    EXPECT_EQ(field(records[1], 2), "admin");
    EXPECT_EQ(field(records[1], 3), hex(f.exhausted[1]));
    EXPECT_EQ(field(records[1], 4), "deadletter.replay");
    EXPECT_EQ(field(records[1], 6), "pref:13");
    EXPECT_EQ(field(records[1], 8), "ops:tanaka");
    EXPECT_EQ(field(records[1], 9), "ok");
    EXPECT_TRUE(has(field(records[1], 10), "type=juki.IdentityUpdate attempts=2")) << records[1];
    EXPECT_TRUE(has(field(records[1], 10), "-> outbox seq ")) << records[1];
    EXPECT_EQ(field(records[3], 3), hex(f.refused));
    EXPECT_EQ(field(records[3], 4), "deadletter.drop");
    EXPECT_EQ(field(records[3], 8), "ops:suzuki");
    EXPECT_EQ(field(records[3], 9), "ok");
    EXPECT_EQ(field(records[4], 3), unknown);
    EXPECT_EQ(field(records[4], 4), "deadletter.drop");
    EXPECT_EQ(field(records[4], 9), "refused");
    EXPECT_FALSE(has(trail, "SECRET-CONTENT")) << "content never reaches the trail";
}
