// Dead letters: outgoing messages the host gave up on, kept with the reason so an operator can
// inspect them (`renkei deadletter list`) and put them back in the outbox (`renkei deadletter
// replay`, which is Outbox::replay_dead_letter so the move is one transaction).
#pragma once

#include "renkei/envelope.hpp"
#include "renkei/sqlite.hpp"

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace renkei {

struct DeadLetter {
    MessageId id{};
    std::string peer;             // the next hop it was queued for
    std::string type;             // envelope type, e.g. "juki.IdentityUpdate"
    std::vector<uint8_t> bytes;   // the envelope as queued
    int attempts = 0;             // sends made before giving up
    std::string reason;           // why it was given up (never contains the message content)
    int64_t queued_ms = 0;        // when it entered the outbox
    int64_t dead_ms = 0;          // when it was moved here
};

// Read and discard access to the dead letters of an outbox database. Thread-safe.
class DeadLetters {
public:
    // Opens an existing outbox database file (the dead-letter table lives beside the outbox
    // table). Throws sqlite::Error naming the file if there is none.
    explicit DeadLetters(const std::filesystem::path& path, const sqlite::OpenOptions& options = {});

    // Oldest first (by the time they died, then by id).
    std::vector<DeadLetter> list(size_t limit, size_t offset = 0);
    std::optional<DeadLetter> get(const MessageId& id);
    size_t count();
    // Discards one for good, an operator's decision. False if there was none with that id.
    bool remove(const MessageId& id);

private:
    std::mutex mutex_;
    sqlite::Database db_;
};

// The table itself, for Outbox, which moves entries in and out inside its own transactions.
namespace dead_letter_table {

void create(sqlite::Database& db);
// Inserts, replacing an older dead letter with the same id. Call inside a transaction.
void insert(sqlite::Database& db, const DeadLetter& letter);
// Reads and deletes the dead letter with `id`. Call inside a transaction.
std::optional<DeadLetter> take(sqlite::Database& db, const MessageId& id);
// A statement deleting the dead letter with id ?1 queued for peer ?2: a late ack proves it was
// delivered after all.
sqlite::Statement prepare_delete_delivered(sqlite::Database& db);

} // namespace dead_letter_table

} // namespace renkei
