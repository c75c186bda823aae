// Where a juki role keeps its stores, as its settings ([plugin.settings]) say: read by the plugin
// and by tools that open the same stores (`renkei load`, adapters/legacy-file).
#pragma once

#include "identity_store.hpp"
#include "numbers.hpp"

#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>

namespace renkei::juki {

// A setting that cannot be used: `field` is "settings.<key>", `rule` names the rule (may be empty).
class SettingError : public std::runtime_error {
public:
    SettingError(std::string field_, std::string rule_, const std::string& message)
        : std::runtime_error(message), field(std::move(field_)), rule(std::move(rule_)) {}
    std::string field, rule;
};

// A setting's value by key, nullopt when it is not set.
using Settings = std::function<std::optional<std::string>(const char* key)>;

// settings.store: a SQLite file, or a postgresql:// URI; or store_backend = "postgresql" with
// store_dsn (a libpq connection string); store_schema names the PostgreSQL schema (juki).
StoreLocation store_location(const Settings& settings);

// A numeric setting in [min, max], `fallback` when unset; anything else is a SettingError naming it.
double setting_number(const Settings& settings, const char* key, double fallback, double min, double max);

// How a role opens its store: search indexes unless it is a CS (a CS answers no queries), and
// store_cache_mib of page cache (512 at J-LIS, 32 elsewhere).
StoreOptions store_options(const Settings& settings, const std::string& role);

// J-LIS's 個人番号 registry: number_secret_file (required) and number_store, a SQLite file (default
// <store>.numbers beside a SQLite store), a postgresql:// URI, or with a PostgreSQL store a schema
// of its own on the same server (number_schema, default juki_numbers).
std::unique_ptr<Numbers> open_numbers(const Settings& settings, const StoreLocation& where);

} // namespace renkei::juki
