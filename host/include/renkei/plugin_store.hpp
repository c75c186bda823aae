// The key-value store the host keeps for one plugin instance ("renkei.store.v1"), and the record
// of which message ids the instance has handled, in the same SQLite database so that a message's
// effects and its "handled" mark commit together (exactly-once effect).
#pragma once

#include <renkei/envelope.hpp>
#include <renkei/sqlite.hpp>

#include <filesystem>
#include <memory>
#include <optional>
#include <vector>

namespace renkei {

class PluginStore {
public:
    explicit PluginStore(const std::filesystem::path& file);

    // Runs `handle` for message `id` exactly once: skipped (returns RENKEI_OK) when the id was
    // handled before; otherwise its writes and the id commit together if it returns RENKEI_OK and
    // are rolled back if not.
    int32_t handle_once(const MessageId& id, const std::function<int32_t()>& handle);

    void put(std::span<const uint8_t> key, std::span<const uint8_t> value);
    std::optional<std::vector<uint8_t>> get(std::span<const uint8_t> key);
    void remove(std::span<const uint8_t> key);
    bool handled(const MessageId& id);

private:
    sqlite::Database db_;
    sqlite::Statement put_, get_, remove_, seen_, mark_;
};

} // namespace renkei
