// The host configuration: one TOML file per node. Every problem is reported with file, line and key.
#pragma once

#include <renkei/calendar.hpp>

#include <toml++/toml.h>

#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

namespace renkei {

enum class Isolation { in_process, process };

struct PluginConfig {
    std::string name;              // instance name, unique per node
    std::filesystem::path path;    // resolved path of the .so
    Isolation isolation = Isolation::in_process;
    toml::table settings;          // [plugin.settings], handed to the plugin verbatim
};

struct PeerConfig {
    std::string node;                   // e.g. "pref:13"
    std::vector<std::string> endpoints; // primary first, then spares; none: the peer dials us
    std::string curve_public;           // Z85, 40 characters
    std::string sign_public;            // hex Ed25519 public key
    std::string seal_public;            // hex X25519 public key (for sealing end to end)
    std::vector<std::string> reaches;   // node ids (or "kind:*" / "*") reached through this peer
    bool batch_signing = false;         // signing = "batch": one signature per Merkle batch sent to it
    // delivery = "memory": what is sent to it waits for its acknowledgement in memory, not in the
    // outbox, and what comes from it is deduplicated in memory, not in inbox.db. Faster; a crash
    // loses what was in flight and a restart forgets the ids taken. Default "durable".
    bool memory_delivery = false;
};

// [links]: what the links keep in memory for peers with delivery = "memory", and how they send.
struct LinksConfig {
    size_t in_flight_messages = 65536;          // sent, unacknowledged, held in memory; past it: the outbox
    size_t in_flight_bytes = size_t(256) << 20; // the same in bytes (in_flight_mib)
    size_t memory_dedup_ids = size_t(1) << 20;  // ids taken from memory peers remembered (the newest)
    // Ids taken from durable peers are kept in inbox.db this long (dedup_retention_days), then
    // forgotten: far longer than a sender retries (about 3 minutes), so only a dead letter
    // replayed later than this could be taken twice.
    int64_t dedup_retention_ms = int64_t(30) * 86'400'000;
    // Every link: the frames queued for one peer go out together in bundles of at most this many
    // bytes (bundle_kib); 0 sends each alone, for peers still on a build that reads no bundles.
    size_t bundle_bytes = size_t(128) << 10;
};

struct HostConfig {
    std::filesystem::path source;        // the file it came from
    std::string node_id;                 // e.g. "muni:131016"
    std::filesystem::path data_dir;      // state: stores, outbox, audit
    std::filesystem::path keys_dir;      // this node's key files
    std::string listen;                  // transport bind endpoint, empty = no inbound links
    std::filesystem::path policy_file;   // access policy for messages from other hosts (deny all if unset)
    std::filesystem::path trust_store;   // signed trust store (peer keys come from it), empty: keys in [[peer]]
    std::string trust_root;              // hex Ed25519 public key of the network root that signs it
    std::string admin_listen;            // "127.0.0.1:<port>", empty = admin HTTP off
    std::string log_level = "info";
    std::vector<std::filesystem::path> plugin_dirs;
    std::vector<PluginConfig> plugins;
    std::vector<PeerConfig> peers;
    CalendarConfig calendar;       // [calendar]: operating days and the common operating window
    std::vector<HoursRule> hours;  // [[hours]]: message types that keep to the window
    LinksConfig links;             // [links]
};

struct ConfigIssue {
    std::string file;
    int64_t line = 0;
    std::string key;
    std::string message;
    std::string to_string() const; // "file:line: key: message"
};

class ConfigError : public std::runtime_error {
public:
    explicit ConfigError(std::vector<ConfigIssue> issues);
    const std::vector<ConfigIssue>& issues() const { return issues_; }

private:
    std::vector<ConfigIssue> issues_;
};

// Parses and validates; throws ConfigError listing every problem found (not just the first).
// `extra_plugin_dirs` are searched after the file's own plugin_dirs for bare plugin names.
HostConfig load_config(const std::filesystem::path& file,
                       const std::vector<std::filesystem::path>& extra_plugin_dirs = {});

// The same checks, returning the problems instead of throwing (empty = valid).
std::vector<ConfigIssue> check_config(const std::filesystem::path& file,
                                      const std::vector<std::filesystem::path>& extra_plugin_dirs = {});

// Node ids are "<kind>:<name>"; kinds: muni, pref, jlis, ipn, agency, vendor, wallet.
// Returns an empty string when valid, otherwise the rule that was broken.
std::string node_id_problem(const std::string& node_id);
std::string node_kind(const std::string& node_id);

} // namespace renkei
