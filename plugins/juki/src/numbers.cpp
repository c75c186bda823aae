#include "numbers.hpp"

#include <renkei/validate.hpp>

#include "sql.hpp"

#include <openssl/hmac.h>

#include <stdexcept>

namespace renkei::juki {
using sql::Stmt;
using sql::Tx;

Numbers::Numbers(std::vector<uint8_t> secret) : secret_(std::move(secret)) {
    if (secret_.size() < 32) throw std::invalid_argument("number_secret_file: the secret must be at least 32 bytes");
}

NumberRegistry::NumberRegistry(const std::filesystem::path& store, std::vector<uint8_t> secret)
    : Numbers(std::move(secret)), file_(store) {
    db_ = sql::open(store, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA cache_size=-65536;"
                           " PRAGMA mmap_size=1073741824; PRAGMA wal_autocheckpoint=16384;");
    sql::exec(db_,
         // The current number of each person.
         "CREATE TABLE IF NOT EXISTS numbers (resident_code TEXT PRIMARY KEY, my_number TEXT NOT NULL UNIQUE,"
         " generation INTEGER NOT NULL, assigned_ms INTEGER NOT NULL);"
         // Every number ever issued: never issued twice, kept after a change (link history).
         "CREATE TABLE IF NOT EXISTS issued (my_number TEXT PRIMARY KEY, resident_code TEXT NOT NULL,"
         " generation INTEGER NOT NULL, issued_ms INTEGER NOT NULL, replaced_ms INTEGER, reason TEXT);"
         // Answers by request id, so a redelivered or retried request gets the same answer.
         "CREATE TABLE IF NOT EXISTS requests (id TEXT PRIMARY KEY, resident_code TEXT NOT NULL,"
         " my_number TEXT NOT NULL, previous TEXT NOT NULL, generation INTEGER NOT NULL);"
         // 住民票コード changes (住基法30条の4): the old code stays linked to the new one.
         "CREATE TABLE IF NOT EXISTS code_changes (old_code TEXT PRIMARY KEY, new_code TEXT NOT NULL,"
         " changed_ms INTEGER NOT NULL);");
}

NumberRegistry::~NumberRegistry() {
    sqlite3_finalize(current_);
    sqlite3_close(db_);
}

bool NumberRegistry::tx_begin(TxKind kind) { return sql::begin(db_, kind == TxKind::Read); }
void NumberRegistry::tx_commit(bool nested) { sql::commit(db_, nested); }
void NumberRegistry::tx_rollback(bool nested) noexcept { sql::rollback(db_, nested); }

std::string Numbers::candidate(const std::string& code, uint32_t generation, uint32_t counter) const {
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

namespace renkei::juki {

std::optional<std::string> NumberRegistry::current(const std::string& code) {
    // J-LIS checks every update against this: prepared once.
    if (current_ == nullptr &&
        sqlite3_prepare_v3(db_, "SELECT my_number FROM numbers WHERE resident_code = ?1", -1,
                           SQLITE_PREPARE_PERSISTENT, &current_, nullptr) != SQLITE_OK)
        sql::fail(db_, "prepare current");
    Stmt q(current_);
    q.text(1, code);
    if (!q.row()) return std::nullopt;
    return q.col(0);
}

std::optional<std::string> NumberRegistry::holder(const std::string& my_number) {
    Stmt q(db_, "SELECT resident_code FROM issued WHERE my_number = ?1");
    q.text(1, my_number);
    if (!q.row()) return std::nullopt;
    return q.col(0);
}

void NumberRegistry::change_code(const std::string& old_code, const std::string& new_code, int64_t now_ms) {
    Tx tx(db_);
    {
        Stmt q(db_, "SELECT 1 FROM numbers WHERE resident_code = ?1");
        q.text(1, new_code);
        if (q.row()) throw std::invalid_argument("residentCode " + new_code + " already has a 個人番号");
    }
    Stmt u(db_, "UPDATE numbers SET resident_code = ?2 WHERE resident_code = ?1");
    u.text(1, old_code).text(2, new_code);
    u.run();
    if (sqlite3_changes(db_) == 0) throw std::invalid_argument("previousResidentCode " + old_code + " has no 個人番号");
    Stmt i(db_, "UPDATE issued SET resident_code = ?2 WHERE resident_code = ?1");
    i.text(1, old_code).text(2, new_code);
    i.run();
    Stmt c(db_, "INSERT INTO code_changes (old_code, new_code, changed_ms) VALUES (?1, ?2, ?3)");
    c.text(1, old_code).text(2, new_code).integer(3, now_ms);
    c.run();
    tx.commit();
}

} // namespace renkei::juki
