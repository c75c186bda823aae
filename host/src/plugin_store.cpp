#include <renkei/plugin_store.hpp>

#include <renkei/plugin.h>

#include <chrono>

namespace renkei {

PluginStore::PluginStore(const std::filesystem::path& file)
    : db_((std::filesystem::create_directories(file.parent_path()), file)),
      put_((db_.exec("CREATE TABLE IF NOT EXISTS kv (key BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;"
                     "CREATE TABLE IF NOT EXISTS handled (id BLOB PRIMARY KEY, at INTEGER NOT NULL) WITHOUT ROWID;",
                     "create plugin store tables"),
            db_.prepare("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", "store put"))),
      get_(db_.prepare("SELECT value FROM kv WHERE key = ?", "store get")),
      remove_(db_.prepare("DELETE FROM kv WHERE key = ?", "store remove")),
      seen_(db_.prepare("SELECT 1 FROM handled WHERE id = ?", "check handled message")),
      mark_(db_.prepare("INSERT INTO handled (id, at) VALUES (?, ?)", "mark message handled")) {}

void PluginStore::put(std::span<const uint8_t> key, std::span<const uint8_t> value) {
    put_.bind_blob(1, key).bind_blob(2, value).run();
    put_.reset();
}

std::optional<std::vector<uint8_t>> PluginStore::get(std::span<const uint8_t> key) {
    get_.bind_blob(1, key);
    std::optional<std::vector<uint8_t>> out;
    if (get_.step()) out = get_.column_blob(0);
    get_.reset();
    return out;
}

void PluginStore::remove(std::span<const uint8_t> key) {
    remove_.bind_blob(1, key).run();
    remove_.reset();
}

bool PluginStore::handled(const MessageId& id) {
    seen_.bind_blob(1, std::span<const uint8_t>(id.data(), id.size()));
    bool seen = seen_.step();
    seen_.reset();
    return seen;
}

int32_t PluginStore::handle_once(const MessageId& id, const std::function<int32_t()>& handle) {
    sqlite::Transaction tx(db_);
    if (handled(id)) {
        tx.commit();
        return RENKEI_OK; // its effects are already committed: acknowledge, do not redo
    }
    int32_t rc = handle();
    if (rc != RENKEI_OK) return rc; // rolls back whatever the plugin wrote
    auto now = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    mark_.bind_blob(1, std::span<const uint8_t>(id.data(), id.size())).bind(2, now).run();
    mark_.reset();
    tx.commit();
    return RENKEI_OK;
}

} // namespace renkei
