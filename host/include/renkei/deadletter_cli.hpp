// `renkei deadletter list|replay|drop`: the operator's tools for the dead letters of a node's
// outbox (<data_dir>/outbox.db). main.cpp only parses the options; everything else is here so
// it can be called (and tested) without a process.
//
// Exit codes: 0 done; 1 the action failed (unknown or malformed id, a storage error);
// 2 the store could not be opened (no outbox.db, a bad configuration, neither or both of
// --data-dir and --config).
//
// Safe while the host runs: the database is SQLite in WAL mode, every change is one transaction,
// and a replayed message is due at once, so the host's resend loop sends it within its next tick.
// Message content is never printed, only its size.
//
// replay and drop need --operator and are recorded in the node's audit trail (<data_dir>/audit),
// one record per dead letter acted on and one per refused attempt; AuditLog's directory lock lets
// them append while the host runs.
#pragma once

#include <cstddef>
#include <filesystem>
#include <ostream>
#include <string>
#include <vector>

namespace renkei {

enum class DeadLetterAction { list, replay, drop };

struct DeadLetterCliOptions {
    DeadLetterAction action = DeadLetterAction::list;
    // Exactly one of these: the data directory, or a node configuration to take it from.
    std::filesystem::path data_dir;
    std::filesystem::path config_file;
    std::vector<std::filesystem::path> plugin_dirs;  // for loading config_file, as `renkei host`

    // list
    size_t limit = 100;
    size_t offset = 0;
    bool json = false;

    // replay (id or all) and drop (id)
    std::string id;  // 32 hex digits
    bool all = false;
    std::string operator_id; // who does it: required for replay and drop (into the audit trail)
};

// Runs the action; results go to `out`, problems to `err`. Returns the exit code.
int run_deadletter_command(const DeadLetterCliOptions& options, std::ostream& out,
                           std::ostream& err);

// "2024-05-01T09:30:00.250Z": milliseconds since the Unix epoch as ISO 8601 UTC.
std::string iso8601_utc(int64_t unix_ms);

} // namespace renkei
