// The juki store backend of an adapter test, chosen per test run: "sqlite" keeps each tier's store
// in a file, "postgresql" in a schema of its own on the PostgreSQL test cluster (ctest fixture
// juki_pg, see pg_test.hpp), J-LIS's 個人番号 registry in another. Reads a tier's residents back
// from whichever it is.
#pragma once

#include "pg_test.hpp"

#include <sqlite3.h>
#include <toml++/toml.h>

#include <filesystem>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace renkei::test {

class JukiBackend {
public:
    explicit JukiBackend(std::string name) : name_(std::move(name)) {
        if (name_ != "sqlite" && name_ != "postgresql") throw std::invalid_argument("no juki backend " + name_);
    }
    bool pg() const { return name_ == "postgresql"; }
    const std::string& name() const { return name_; }

    // Puts `tier`'s store in `file` (SQLite) or in a new schema (PostgreSQL) in `settings`; J-LIS's
    // (role "national") 個人番号 registry gets a schema of its own too.
    void add_store(toml::table& settings, const std::string& tier, const std::filesystem::path& file) {
        if (!pg()) {
            settings.insert_or_assign("store", file.string());
            files_[tier] = file;
            return;
        }
        auto& s = schemas_[tier] = std::make_unique<PgSchema>(tier);
        settings.insert_or_assign("store_backend", "postgresql");
        settings.insert_or_assign("store_dsn", pg_dsn());
        settings.insert_or_assign("store_schema", s->name());
        if (settings["role"].value_or(std::string()) == "national") {
            auto& n = schemas_[tier + "_numbers"] = std::make_unique<PgSchema>(tier + "_numbers");
            settings.insert_or_assign("number_schema", n->name());
        }
    }

    // Rows of `sql` on `tier`'s store, each column as text (NULL as "").
    std::vector<std::vector<std::string>> rows(const std::string& tier, const std::string& sql) const {
        return pg() ? pg_rows(schemas_.at(tier)->name(), sql) : sqlite_rows(files_.at(tier), sql);
    }

    static std::vector<std::vector<std::string>> pg_rows(const std::string& schema, const std::string& sql) {
        PGconn* c = PQconnectdb(pg_dsn().c_str());
        std::vector<std::vector<std::string>> out;
        std::string why;
        if (PQstatus(c) != CONNECTION_OK) why = PQerrorMessage(c);
        PGresult* r = why.empty() ? PQexec(c, ("SET search_path TO " + schema + "; " + sql).c_str()) : nullptr;
        if (r && PQresultStatus(r) != PGRES_TUPLES_OK) why = PQresultErrorMessage(r);
        for (int i = 0; r && why.empty() && i < PQntuples(r); ++i) {
            out.emplace_back();
            for (int j = 0; j < PQnfields(r); ++j) out.back().push_back(PQgetvalue(r, i, j));
        }
        PQclear(r);
        PQfinish(c);
        if (!why.empty()) throw std::runtime_error("PostgreSQL test cluster: " + why);
        return out;
    }

    static std::vector<std::vector<std::string>> sqlite_rows(const std::filesystem::path& file, const std::string& sql) {
        std::vector<std::vector<std::string>> out;
        sqlite3* db = nullptr;
        if (sqlite3_open_v2(file.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
            sqlite3_close(db);
            return out; // not created yet: nothing recorded
        }
        sqlite3_busy_timeout(db, 5000);
        sqlite3_stmt* q = nullptr;
        if (sqlite3_prepare_v2(db, sql.c_str(), -1, &q, nullptr) == SQLITE_OK)
            while (sqlite3_step(q) == SQLITE_ROW) {
                out.emplace_back();
                for (int i = 0; i < sqlite3_column_count(q); ++i) {
                    auto* t = sqlite3_column_text(q, i);
                    out.back().push_back(t ? reinterpret_cast<const char*>(t) : "");
                }
            }
        sqlite3_finalize(q);
        sqlite3_close(db);
        return out;
    }

private:
    std::string name_;
    std::map<std::string, std::unique_ptr<PgSchema>> schemas_;
    std::map<std::string, std::filesystem::path> files_;
};

// gtest parameter names: "sqlite" -> "Sqlite", "csv-utf8" -> "CsvUtf8".
inline std::string camel(const std::string& s) {
    std::string out;
    bool up = true;
    for (char c : s) {
        if (c == '-' || c == '_') {
            up = true;
            continue;
        }
        out += up ? static_cast<char>(std::toupper(static_cast<unsigned char>(c))) : c;
        up = false;
    }
    return out;
}

} // namespace renkei::test
