#include "numbers.hpp"

#include <renkei/validate.hpp>

#include <openssl/hmac.h>
#include <sqlite3.h>

#include <memory>
#include <stdexcept>

namespace renkei::juki {
namespace {

struct Stmt {
    sqlite3_stmt* s = nullptr;
    Stmt(sqlite3* db, const char* sql) {
        if (sqlite3_prepare_v2(db, sql, -1, &s, nullptr) != SQLITE_OK)
            throw std::runtime_error(std::string("juki store: ") + sqlite3_errmsg(db));
    }
    ~Stmt() { sqlite3_finalize(s); }
    Stmt& text(int i, const std::string& v) {
        sqlite3_bind_text(s, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
        return *this;
    }
    Stmt& integer(int i, int64_t v) {
        sqlite3_bind_int64(s, i, v);
        return *this;
    }
    bool row() {
        int rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) return true;
        if (rc == SQLITE_DONE) return false;
        throw std::runtime_error(std::string("juki store: ") + sqlite3_errmsg(sqlite3_db_handle(s)));
    }
    std::string col(int i) {
        auto* p = sqlite3_column_text(s, i);
        return p ? reinterpret_cast<const char*>(p) : "";
    }
    int64_t num(int i) { return sqlite3_column_int64(s, i); }
};

// Rolls back unless committed.
struct Tx {
    sqlite3* db;
    bool done = false;
    explicit Tx(sqlite3* d) : db(d) { sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr); }
    void commit() {
        if (sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK)
            throw std::runtime_error(std::string("juki store commit: ") + sqlite3_errmsg(db));
        done = true;
    }
    ~Tx() {
        if (!done) sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    }
};

} // namespace

NumberRegistry::NumberRegistry(const std::filesystem::path& store, std::vector<uint8_t> secret)
    : secret_(std::move(secret)) {
    if (secret_.size() < 32) throw std::invalid_argument("number_secret_file: the secret must be at least 32 bytes");
    if (store.has_parent_path()) std::filesystem::create_directories(store.parent_path());
    if (sqlite3_open(store.c_str(), &db_) != SQLITE_OK) {
        std::string why = db_ ? sqlite3_errmsg(db_) : "out of memory";
        sqlite3_close(db_);
        throw std::runtime_error(store.string() + ": " + why);
    }
    sqlite3_busy_timeout(db_, 5000);
    exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
         // The current number of each person.
         "CREATE TABLE IF NOT EXISTS numbers (resident_code TEXT PRIMARY KEY, my_number TEXT NOT NULL UNIQUE,"
         " generation INTEGER NOT NULL, assigned_ms INTEGER NOT NULL);"
         // Every number ever issued: never issued twice, kept after a change (link history).
         "CREATE TABLE IF NOT EXISTS issued (my_number TEXT PRIMARY KEY, resident_code TEXT NOT NULL,"
         " generation INTEGER NOT NULL, issued_ms INTEGER NOT NULL, replaced_ms INTEGER, reason TEXT);"
         // Answers by request id, so a redelivered or retried request gets the same answer.
         "CREATE TABLE IF NOT EXISTS requests (id TEXT PRIMARY KEY, resident_code TEXT NOT NULL,"
         " my_number TEXT NOT NULL, previous TEXT NOT NULL, generation INTEGER NOT NULL);");
}

NumberRegistry::~NumberRegistry() { sqlite3_close(db_); }

void NumberRegistry::exec(const char* sql) {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
        std::string why = err ? err : "unknown";
        sqlite3_free(err);
        throw std::runtime_error("juki store: " + why);
    }
}

std::string NumberRegistry::candidate(const std::string& code, uint32_t generation, uint32_t counter) const {
    std::string msg = code;
    msg.push_back('\0');
    for (uint32_t v : {generation, counter})
        for (int s = 24; s >= 0; s -= 8) msg.push_back(static_cast<char>((v >> s) & 0xff));
    unsigned char mac[32];
    unsigned int len = 0;
    HMAC(EVP_sha256(), secret_.data(), static_cast<int>(secret_.size()),
         reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), mac, &len);
    uint64_t n = 0;
    for (int i = 0; i < 8; ++i) n = (n << 8) | mac[i];
    std::string digits = std::to_string(n % 100000000000ULL);
    digits.insert(0, 11 - digits.size(), '0');
    return digits + char('0' + validate::compute_my_number_check_digit(digits));
}

Assignment NumberRegistry::assign(const std::string& request_id, const std::string& code, bool change,
                                  const std::string& reason, int64_t now_ms) {
    Tx tx(db_);
    {
        Stmt q(db_, "SELECT my_number, previous, generation, resident_code FROM requests WHERE id = ?1");
        q.text(1, request_id);
        if (q.row()) {
            if (q.col(3) != code)
                throw std::invalid_argument("request id " + request_id + " was used for another 住民票コード");
            return Assignment{q.col(0), q.col(1), static_cast<uint32_t>(q.num(2))};
        }
    }
    Assignment a;
    std::string current;
    uint32_t generation = 0;
    {
        Stmt q(db_, "SELECT my_number, generation FROM numbers WHERE resident_code = ?1");
        q.text(1, code);
        if (q.row()) {
            current = q.col(0);
            generation = static_cast<uint32_t>(q.num(1));
        }
    }
    if (!current.empty() && !change) {
        a = Assignment{current, "", generation};
    } else {
        a.generation = generation + 1;
        a.previous = current;
        for (uint32_t counter = 0;; ++counter) { // a collision with any number ever issued: next one
            auto n = candidate(code, a.generation, counter);
            Stmt q(db_, "SELECT 1 FROM issued WHERE my_number = ?1");
            q.text(1, n);
            if (!q.row()) {
                a.my_number = n;
                break;
            }
        }
        if (!current.empty()) {
            Stmt u(db_, "UPDATE issued SET replaced_ms = ?2, reason = ?3 WHERE my_number = ?1");
            u.text(1, current).integer(2, now_ms).text(3, reason);
            u.row();
        }
        Stmt i(db_, "INSERT INTO issued (my_number, resident_code, generation, issued_ms) VALUES (?1, ?2, ?3, ?4)");
        i.text(1, a.my_number).text(2, code).integer(3, a.generation).integer(4, now_ms);
        i.row();
        Stmt n(db_, "INSERT INTO numbers (resident_code, my_number, generation, assigned_ms) VALUES (?1, ?2, ?3, ?4)"
                    " ON CONFLICT (resident_code) DO UPDATE SET my_number = ?2, generation = ?3, assigned_ms = ?4");
        n.text(1, code).text(2, a.my_number).integer(3, a.generation).integer(4, now_ms);
        n.row();
    }
    Stmt r(db_, "INSERT INTO requests (id, resident_code, my_number, previous, generation) VALUES (?1, ?2, ?3, ?4, ?5)");
    r.text(1, request_id).text(2, code).text(3, a.my_number).text(4, a.previous).integer(5, a.generation);
    r.row();
    tx.commit();
    return a;
}

std::vector<std::string> NumberRegistry::history(const std::string& code) {
    std::vector<std::string> out;
    Stmt q(db_, "SELECT my_number FROM issued WHERE resident_code = ?1 ORDER BY generation");
    q.text(1, code);
    while (q.row()) out.push_back(q.col(0));
    return out;
}

} // namespace renkei::juki
