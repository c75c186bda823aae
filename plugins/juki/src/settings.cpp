#include "settings.hpp"

#include "pg_store.hpp"

#include <cstdlib>
#include <fstream>
#include <iterator>

namespace renkei::juki {

namespace {

std::string get(const Settings& s, const char* key, const std::string& fallback) {
    auto v = s(key);
    return v ? *v : fallback;
}

bool is_uri(const std::string& s) { return s.rfind("postgresql://", 0) == 0 || s.rfind("postgres://", 0) == 0; }

void check_schema(const std::string& key, const std::string& schema) {
    if (!valid_schema_name(schema))
        throw SettingError("settings." + key, "juki.store_schema",
                           "settings." + key + ": '" + schema +
                               "' must be lower-case letters, digits and _ (not starting with a digit), at most 63");
}

} // namespace

double setting_number(const Settings& settings, const char* key, double fallback, double min, double max) {
    auto text = settings(key);
    if (!text) return fallback;
    char* end = nullptr;
    double v = std::strtod(text->c_str(), &end);
    if (text->empty() || *end != '\0' || !(v >= min && v <= max))
        throw SettingError(std::string("settings.") + key, "juki.setting_range",
                           std::string("settings.") + key + ": '" + *text + "' must be a number from " +
                               std::to_string(static_cast<long long>(min)) + " to " +
                               std::to_string(static_cast<long long>(max)));
    return v;
}

StoreOptions store_options(const Settings& settings, const std::string& role) {
    StoreOptions o;
    o.search_indexes = role != "cs";
    o.cache_kib = static_cast<int64_t>(setting_number(settings, "store_cache_mib", role == "national" ? 512 : 32, 1, 1 << 20)) * 1024;
    return o;
}

StoreLocation store_location(const Settings& settings) {
    StoreLocation w;
    auto store = get(settings, "store", "");
    auto backend = get(settings, "store_backend", "");
    bool uri = is_uri(store);
    if (backend.empty()) backend = uri ? "postgresql" : "sqlite";
    if (backend == "sqlite") {
        if (store.empty()) throw SettingError("settings.store", "", "settings.store: required (the SQLite file)");
        if (uri)
            throw SettingError("settings.store", "juki.store_backend",
                               "settings.store: a PostgreSQL URI with store_backend sqlite");
        w.file = store;
        return w;
    }
    if (backend != "postgresql")
        throw SettingError("settings.store_backend", "juki.store_backend",
                           "settings.store_backend: '" + backend + "' must be sqlite or postgresql");
    w.backend = StoreLocation::Backend::Postgres;
    w.dsn = get(settings, "store_dsn", uri ? store : "");
    if (w.dsn.empty())
        throw SettingError("settings.store_dsn", "",
                           "settings.store_dsn: required for store_backend postgresql (or store = \"postgresql://...\")");
    w.schema = get(settings, "store_schema", "juki");
    check_schema("store_schema", w.schema);
    return w;
}

std::unique_ptr<Numbers> open_numbers(const Settings& settings, const StoreLocation& where) {
    auto secret_file = settings("number_secret_file");
    if (!secret_file)
        throw SettingError("settings.number_secret_file", "", "settings.number_secret_file: required for role national");
    std::ifstream in(*secret_file, std::ios::binary);
    if (!in)
        throw SettingError("settings.number_secret_file", "", "settings.number_secret_file: cannot read " + *secret_file);
    std::vector<uint8_t> secret((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto numbers = get(settings, "number_store", "");
    bool uri = is_uri(numbers);
    if (uri || (numbers.empty() && where.backend == StoreLocation::Backend::Postgres)) {
        auto schema = get(settings, "number_schema", "juki_numbers");
        check_schema("number_schema", schema);
        if (schema == where.schema && where.backend == StoreLocation::Backend::Postgres)
            throw SettingError("settings.number_schema", "juki.store_schema",
                               "settings.number_schema: '" + schema + "' is the store's schema; the registry needs its own");
        return std::make_unique<PgNumberRegistry>(uri ? numbers : where.dsn, schema, std::move(secret));
    }
    if (numbers.empty()) numbers = where.file.string() + ".numbers";
    return std::make_unique<NumberRegistry>(numbers, std::move(secret));
}

} // namespace renkei::juki
