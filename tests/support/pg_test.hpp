// The throw-away PostgreSQL cluster of the tests: ctest's fixture juki_pg starts it once
// (tests/support/pg_cluster.sh, see tests/CMakeLists.txt) and gives its connection string through
// the file named by JUKI_PG_DSN_FILE; JUKI_PG_DSN names a server directly. No cluster is a failure,
// not a skip: ./dev installs PostgreSQL.
#pragma once

#include <libpq-fe.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <string>

#include <unistd.h>

namespace renkei::test {

inline std::string pg_dsn() {
    if (const char* d = std::getenv("JUKI_PG_DSN"); d && *d) return d;
    const char* file = std::getenv("JUKI_PG_DSN_FILE");
    if (!file || !*file)
        throw std::runtime_error("no PostgreSQL test cluster: run the test through ctest (fixture juki_pg starts one "
                                 "with tests/support/pg_cluster.sh) or set JUKI_PG_DSN");
    std::ifstream in(file);
    std::string dsn;
    if (!in || !std::getline(in, dsn) || dsn.empty())
        throw std::runtime_error(std::string("no PostgreSQL test cluster: ") + file +
                                 " is missing or empty (did the fixture JukiPg.ClusterStart fail? see its output)");
    return dsn;
}

// Runs `sql` on the test cluster; throws with the server's message.
inline void pg_exec(const std::string& sql) {
    PGconn* c = PQconnectdb(pg_dsn().c_str());
    std::string why;
    if (PQstatus(c) != CONNECTION_OK) {
        why = PQerrorMessage(c);
    } else {
        PQsetNoticeProcessor(c, [](void*, const char*) {}, nullptr); // "drop cascades to ..."
        PGresult* r = PQexec(c, sql.c_str());
        if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) why = PQresultErrorMessage(r);
        PQclear(r);
    }
    PQfinish(c);
    if (!why.empty()) throw std::runtime_error("PostgreSQL test cluster: " + why);
}

// A schema name of its own for one test (tests run in parallel against one cluster), dropped with
// everything in it at the end.
class PgSchema {
public:
    explicit PgSchema(const std::string& tag = "t") {
        static std::atomic<int> n{0};
        name_ = "test_" + tag + "_" + std::to_string(::getpid()) + "_" + std::to_string(n++);
        pg_exec("DROP SCHEMA IF EXISTS " + name_ + " CASCADE");
    }
    ~PgSchema() {
        try {
            pg_exec("DROP SCHEMA IF EXISTS " + name_ + " CASCADE");
        } catch (...) {
        }
    }
    PgSchema(const PgSchema&) = delete;
    PgSchema& operator=(const PgSchema&) = delete;
    const std::string& name() const { return name_; }

private:
    std::string name_;
};

} // namespace renkei::test
