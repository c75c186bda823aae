#include "pg_store.hpp"

#include "pg.hpp"

#include <algorithm>
#include <stdexcept>
#include <unordered_map>

namespace renkei::juki {
namespace {
using pg::Params;
using pg::Result;

// Columns: code, municipality, my_number, removed, updated_ms, record.
Resident resident_from(const Result& r, int row) {
    Resident x;
    x.code = r.col(row, 0);
    x.municipality = r.col(row, 1);
    x.my_number = r.col(row, 2);
    x.removed = r.num(row, 3) != 0;
    x.updated_ms = r.num(row, 4);
    x.record = unpack_record(r.bytes(row, 5), x.code);
    return x;
}

std::vector<Resident> residents_from(const Result& r) {
    std::vector<Resident> out;
    out.reserve(static_cast<size_t>(r.rows()));
    for (int i = 0; i < r.rows(); ++i) out.push_back(resident_from(r, i));
    return out;
}

// Every text column compares bytewise (COLLATE "C"): the same order as SQLite's, and no locale
// in the hot comparisons.
#define T " text COLLATE \"C\" NOT NULL"
#define ID " id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"

// Schema versions (table schema_version, one row). Step i brings a schema from version i to i + 1;
// all pending steps run in one transaction under an advisory lock, so two nodes starting on one
// schema at once migrate it once.
//  1: the layout of the SQLite store's version 2 (current versions once in residents, superseded
//     versions with when they were superseded in history).
const char* const kSteps[] = {
    "CREATE TABLE residents (code text COLLATE \"C\" PRIMARY KEY, municipality" T ", my_number" T ","
    " removed smallint NOT NULL, updated_ms bigint NOT NULL, name" T ", kana" T ", birth" T ","
    " sex smallint NOT NULL, address" T ", record bytea NOT NULL);"
    "CREATE TABLE history (" ID " code" T ", recorded_ms bigint NOT NULL, superseded_ms bigint NOT NULL,"
    " record bytea NOT NULL);"
    "CREATE INDEX history_code ON history (code);"
    "CREATE INDEX history_superseded ON history (superseded_ms);"
    "CREATE TABLE code_links (old_code text COLLATE \"C\" PRIMARY KEY, new_code" T ", changed_ms bigint NOT NULL);"
    "CREATE TABLE answers (sender" T ", batch" T ", answer bytea NOT NULL, at_ms bigint NOT NULL,"
    " PRIMARY KEY (sender, batch));"
    "CREATE TABLE sent (batch" T ", stage" T ", to_node" T ", municipality" T ", count bigint NOT NULL,"
    " hashes bytea NOT NULL, context bytea NOT NULL, sent_ms bigint NOT NULL, deadline_ms bigint NOT NULL,"
    " confirmed_ms bigint NOT NULL DEFAULT 0, PRIMARY KEY (batch, stage));"
    "CREATE TABLE alarms (" ID " at_ms bigint NOT NULL, batch" T ", detail" T ");"
    "CREATE TABLE provisions (" ID " at_ms bigint NOT NULL, recipient" T ", affair" T ", subject" T ","
    " outcome" T ", operator" T ", detail" T ");"
    "CREATE INDEX provisions_subject ON provisions (subject);"
    "CREATE INDEX provisions_at ON provisions (at_ms);"
    "CREATE TABLE notices (" ID " at_ms bigint NOT NULL, type" T ", from_node" T ", subject" T ","
    " body bytea NOT NULL);"
    "CREATE TABLE check_chunks (check_id" T ", chunk bigint NOT NULL, PRIMARY KEY (check_id, chunk));"
    "CREATE TABLE check_seen (check_id" T ", code" T ", PRIMARY KEY (check_id, code));"
    "CREATE TABLE check_totals (check_id text COLLATE \"C\" PRIMARY KEY, chunks bigint NOT NULL);"
    "CREATE TABLE check_diffs (" ID " check_id" T ", code" T ", kind integer NOT NULL, fields" T ","
    " registered_at" T ");"
    "CREATE INDEX check_diffs_check ON check_diffs (check_id, kind);"
    "CREATE TABLE erasures (" ID " at_ms bigint NOT NULL, history bigint NOT NULL, residents bigint NOT NULL,"
    " provisions bigint NOT NULL);",
};
constexpr int kStepCount = static_cast<int>(sizeof kSteps / sizeof kSteps[0]);
static_assert(kStepCount == PgIdentityStore::kSchemaVersion);

#undef T
#undef ID

// As in SQLite: only the nodes that answer queries keep the search indexes.
constexpr const char* kSearchIndexes =
    "CREATE INDEX IF NOT EXISTS residents_number ON residents (my_number);"
    "CREATE INDEX IF NOT EXISTS residents_name ON residents (name);"
    "CREATE INDEX IF NOT EXISTS residents_kana ON residents (kana);"
    "CREATE INDEX IF NOT EXISTS residents_municipality ON residents (municipality, code);";

constexpr const char* kResidentSelect =
    "SELECT code, municipality, my_number, removed, updated_ms, record FROM residents WHERE code = $1";
constexpr const char* kResidentsSelect =
    "SELECT code, municipality, my_number, removed, updated_ms, record FROM residents WHERE code = ANY($1::text[])";
constexpr const char* kByNumber = "SELECT code, municipality, my_number, removed, updated_ms, record FROM residents"
                                  " WHERE my_number = $1 ORDER BY code";
constexpr const char* kByNumbers = "SELECT code, municipality, my_number, removed, updated_ms, record FROM residents"
                                   " WHERE my_number = ANY($1::text[])";

// Brings `schema` to version `latest` by `steps` (step i: version i -> i + 1), inside the caller's
// transaction, under an advisory lock; refuses a schema of a newer version.
void migrate(pg::Conn& c, const std::string& schema, const char* const* steps, int latest) {
    // Two nodes (or a node and a tool) starting on one schema at once: the second waits here.
    c.once("SELECT pg_advisory_xact_lock(hashtext('renkei.juki.' || $1))", Params().text(schema));
    if (c.once("SELECT 1 FROM pg_namespace WHERE nspname = $1", Params().text(schema)).rows() == 0)
        c.exec("CREATE SCHEMA \"" + schema + "\"");
    c.exec("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)");
    auto v = c.once("SELECT version FROM schema_version");
    int version = v.rows() ? static_cast<int>(v.num(0, 0)) : 0;
    if (v.rows() == 0) c.exec("INSERT INTO schema_version VALUES (0)");
    if (version > latest)
        throw std::runtime_error("PostgreSQL schema " + schema + ": juki store schema version " +
                                 std::to_string(version) + " is newer than this build's " + std::to_string(latest));
    for (int step = version; step < latest; ++step) c.exec(steps[step]);
    c.once("UPDATE schema_version SET version = $1", Params().integer(latest));
}

// Transactions on one connection: BEGIN at depth 0, savepoints inside.
bool begin(pg::Conn& c, int& depth, bool read) {
    bool nested = depth > 0;
    c.exec(nested ? "SAVEPOINT tx" : read ? "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY" : "BEGIN");
    c.set_depth(++depth);
    return nested;
}
void commit(pg::Conn& c, int& depth, bool nested) {
    c.sync(); // a queued write's error is the caller's, as if it had thrown when written
    // COMMIT of a transaction an error aborted "succeeds" as a ROLLBACK: say so instead.
    if (PQtransactionStatus(c.raw()) == PQTRANS_INERROR)
        throw std::runtime_error("juki store (PostgreSQL): the transaction was aborted by an earlier error");
    c.exec(nested ? "RELEASE SAVEPOINT tx" : "COMMIT");
    c.set_depth(--depth);
}
void rollback(pg::Conn& c, int& depth, bool nested) noexcept {
    PQclear(PQexec(c.raw(), nested ? "ROLLBACK TO SAVEPOINT tx; RELEASE SAVEPOINT tx" : "ROLLBACK"));
    c.set_depth(--depth);
}

std::string setup_sql(const std::string& schema) {
    // Text comes back as UTF-8 whatever the database's default; names resolve in the schema only.
    return "SET client_encoding = 'UTF8'; SET search_path = \"" + schema + "\"; SET application_name = 'renkei-juki';";
}

// Keys in one `= ANY($1)` statement: one round trip and one index scan for as many.
constexpr size_t kKeysPerStatement = 1000;

// A text[] literal of `keys` (each quoted, so any text is safe).
std::string array_literal(const std::vector<std::string>& keys, size_t from, size_t to) {
    std::string a = "{";
    for (size_t i = from; i < to; ++i) {
        if (i > from) a += ',';
        a += '"';
        for (char c : keys[i]) {
            if (c == '"' || c == '\\') a += '\\';
            a += c;
        }
        a += '"';
    }
    return a + "}";
}

class PgReader final : public ReaderPool::Reader {
public:
    PgReader(const std::string& dsn, const std::string& schema) : c_(dsn, setup_sql(schema)) {}
    void lookup(const std::vector<std::string>& numbers, std::vector<std::vector<Resident>>& out, size_t from,
                size_t to) override {
        // One snapshot for the slice; keys go kKeysPerStatement to a statement.
        c_.exec("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
        c_.set_depth(1); // no silent reconnect inside the snapshot
        try {
            std::unordered_map<std::string_view, std::vector<size_t>> where;
            for (size_t start = from; start < to; start += kKeysPerStatement) {
                size_t end = std::min(to, start + kKeysPerStatement);
                where.clear();
                for (size_t i = start; i < end; ++i) where[numbers[i]].push_back(i);
                auto r = c_.run(kByNumbers, Params().text(array_literal(numbers, start, end)));
                for (int row = 0; row < r.rows(); ++row) {
                    auto it = where.find(r.col(row, 2));
                    if (it == where.end()) continue;
                    auto x = resident_from(r, row);
                    for (size_t k = 1; k < it->second.size(); ++k) out[it->second[k]].push_back(x);
                    out[it->second[0]].push_back(std::move(x));
                }
            }
            c_.exec("COMMIT");
            c_.set_depth(0);
        } catch (...) {
            PQclear(PQexec(c_.raw(), "ROLLBACK"));
            c_.set_depth(0);
            throw;
        }
        // As SQLite's index gives them: the residents of one number in code order.
        for (size_t i = from; i < to; ++i)
            if (out[i].size() > 1)
                std::sort(out[i].begin(), out[i].end(), [](const Resident& a, const Resident& b) { return a.code < b.code; });
    }

private:
    pg::Conn c_;
};

void put_u16(std::string& b, uint16_t v) {
    b += static_cast<char>(v >> 8);
    b += static_cast<char>(v & 0xff);
}
void put_u32(std::string& b, uint32_t v) {
    for (int s = 24; s >= 0; s -= 8) b += static_cast<char>((v >> s) & 0xff);
}
void put_i64(std::string& b, int64_t v) {
    put_u32(b, 8);
    auto u = static_cast<uint64_t>(v);
    for (int s = 56; s >= 0; s -= 8) b += static_cast<char>((u >> s) & 0xff);
}
void put_i16(std::string& b, int v) {
    put_u32(b, 2);
    put_u16(b, static_cast<uint16_t>(static_cast<int16_t>(v)));
}
void put_bytes(std::string& b, const void* data, size_t size) {
    put_u32(b, static_cast<uint32_t>(size));
    b.append(static_cast<const char*>(data), size);
}
void put_text(std::string& b, std::string_view s) { put_bytes(b, s.data(), s.size()); }

} // namespace

bool valid_schema_name(const std::string& name) {
    if (name.empty() || name.size() > 63) return false;
    if (!(name[0] == '_' || (name[0] >= 'a' && name[0] <= 'z'))) return false;
    return std::all_of(name.begin(), name.end(),
                       [](char c) { return c == '_' || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); });
}

PgIdentityStore::PgIdentityStore(const std::string& dsn, const std::string& schema, Retention retention,
                                 StoreOptions options)
    : dsn_(dsn), schema_(schema), retention_(retention), options_(options) {
    if (!valid_schema_name(schema))
        throw std::invalid_argument("store_schema: '" + schema +
                                    "' must be lower-case letters, digits and _ (not first a digit), at most 63");
    c_ = std::make_unique<pg::Conn>(dsn, setup_sql(schema));
    Transaction tx(*this);
    migrate(*c_, schema, kSteps, kSchemaVersion);
    if (options.search_indexes) c_->exec(kSearchIndexes);
    tx.commit();
}

PgIdentityStore::~PgIdentityStore() = default;

std::string PgIdentityStore::describe() const { return "PostgreSQL " + pg::redact(dsn_) + " schema " + schema_; }

std::unique_ptr<ReaderPool> PgIdentityStore::readers(size_t connections) {
    std::vector<std::unique_ptr<ReaderPool::Reader>> r;
    for (size_t i = 0; i < std::max<size_t>(1, connections); ++i) r.push_back(std::make_unique<PgReader>(dsn_, schema_));
    return std::make_unique<ReaderPool>(std::move(r));
}

int64_t PgIdentityStore::scalar(const std::string& sql) {
    auto r = c_->once(sql, {}, true); // text: count(*), sum() (numeric), version all read alike
    return r.rows() && !r.null(0, 0) ? r.num(0, 0) : 0;
}

int PgIdentityStore::schema_version() {
    return static_cast<int>(scalar("SELECT version FROM schema_version"));
}

bool PgIdentityStore::tx_begin(TxKind kind) { return begin(*c_, depth_, kind == TxKind::Read); }
void PgIdentityStore::tx_commit(bool nested) {
    if (!nested) prefetched_.clear();
    commit(*c_, depth_, nested);
}
void PgIdentityStore::tx_rollback(bool nested) noexcept {
    // A savepoint rolled back undoes only writes, and a written code has left prefetched_ already.
    if (!nested) prefetched_.clear();
    rollback(*c_, depth_, nested);
}

void PgIdentityStore::prefetch(const std::vector<std::string>& codes) {
    if (depth_ == 0) return; // outside a transaction the rows could change before get() asks
    for (size_t start = 0; start < codes.size(); start += kKeysPerStatement) {
        size_t end = std::min(codes.size(), start + kKeysPerStatement);
        auto r = c_->run(kResidentsSelect, Params().text(array_literal(codes, start, end)));
        for (size_t i = start; i < end; ++i) prefetched_.try_emplace(codes[i]);
        for (int row = 0; row < r.rows(); ++row) prefetched_[r.col(row, 0)] = resident_from(r, row);
    }
}

std::optional<Resident> PgIdentityStore::get(const std::string& code) {
    if (auto it = prefetched_.find(code); it != prefetched_.end()) return it->second;
    auto r = c_->run(kResidentSelect, Params().text(code));
    if (r.rows() == 0) return std::nullopt;
    return resident_from(r, 0);
}

void PgIdentityStore::put(IdentityRecord::Reader record, const std::vector<uint8_t>& canonical, bool removed,
                          int64_t now_ms, bool replaces) {
    auto p = record.getPerson();
    prefetched_.erase(p.getResidentCode().cStr());
    std::string birth = date_text(p.getDateOfBirth());
    std::vector<uint8_t> packed;
    pack_record(canonical.data(), canonical.size(), packed);
    Params a;
    a.text(p.getResidentCode().cStr())
        .text(p.getAddress().getLocalGovCode().cStr())
        .text(p.getMyNumber().cStr())
        .integer(removed ? 1 : 0)
        .integer(now_ms)
        .text(p.getName().getKanji().cStr())
        .text(p.getName().getKana().cStr())
        .text(birth)
        .integer(static_cast<int>(p.getSex()))
        .text(p.getAddress().getText().cStr())
        .bytes(packed.data(), packed.size());
#define UPSERT                                                                                                      \
    "INSERT INTO residents (code, municipality, my_number, removed, updated_ms, name, kana, birth, sex, address,"   \
    " record) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (code) DO UPDATE SET"             \
    " municipality = EXCLUDED.municipality, my_number = EXCLUDED.my_number, removed = EXCLUDED.removed,"           \
    " updated_ms = EXCLUDED.updated_ms, name = EXCLUDED.name, kana = EXCLUDED.kana, birth = EXCLUDED.birth,"      \
    " sex = EXCLUDED.sex, address = EXCLUDED.address, record = EXCLUDED.record"
    if (replaces) {
        // One statement: the sub-statement reads the version being replaced (every part of the
        // statement sees the same snapshot) and moves it to history; the upsert replaces it.
        // Queued (pg::Conn::queue): a batch's writes share round trips.
        c_->queue("WITH superseded AS (INSERT INTO history (code, recorded_ms, superseded_ms, record)"
                  " SELECT code, updated_ms, $5, record FROM residents WHERE code = $1) " UPSERT,
                  a);
    } else {
        c_->queue(UPSERT, a);
    }
#undef UPSERT
}

void PgIdentityStore::load_packed(capnp::List<IdentityRecord>::Reader records, const PackedRecords& packed,
                                  int64_t now_ms) {
    prefetched_.clear();
    Transaction tx(*this);
    c_->exec("COPY residents (code, municipality, my_number, removed, updated_ms, name, kana, birth, sex, address,"
             " record) FROM STDIN (FORMAT binary)");
    std::string buf("PGCOPY\n\377\r\n\0", 11);
    put_u32(buf, 0); // flags
    put_u32(buf, 0); // header extension
    bool ok = true;
    auto flush = [&](bool last) {
        if (ok && (last || buf.size() >= (1u << 20))) {
            ok = PQputCopyData(c_->raw(), buf.data(), static_cast<int>(buf.size())) == 1;
            buf.clear();
        }
    };
    for (unsigned i = 0; i < records.size(); ++i) {
        auto p = records[i].getPerson();
        put_u16(buf, 11);
        put_text(buf, p.getResidentCode().cStr());
        put_text(buf, p.getAddress().getLocalGovCode().cStr());
        put_text(buf, p.getMyNumber().cStr());
        put_i16(buf, 0);
        put_i64(buf, now_ms);
        put_text(buf, p.getName().getKanji().cStr());
        put_text(buf, p.getName().getKana().cStr());
        put_text(buf, date_text(p.getDateOfBirth()));
        put_i16(buf, static_cast<int>(p.getSex()));
        put_text(buf, p.getAddress().getText().cStr());
        put_bytes(buf, packed[i].begin(), packed[i].size());
        flush(false);
    }
    put_u16(buf, 0xffff); // trailer
    flush(true);
    std::string why = ok ? "" : c_->message();
    if (PQputCopyEnd(c_->raw(), ok ? nullptr : "client failed to send the rows") != 1 && why.empty())
        why = c_->message();
    // Every result of the COPY is read, so the connection is ready for the rollback or the next statement.
    while (PGresult* r = PQgetResult(c_->raw())) {
        if (PQresultStatus(r) != PGRES_COMMAND_OK && why.empty()) {
            why = PQresultErrorMessage(r);
            while (!why.empty() && (why.back() == '\n' || why.back() == ' ')) why.pop_back();
        }
        PQclear(r);
    }
    if (!why.empty()) throw std::runtime_error("juki store (PostgreSQL): load failed, nothing recorded: " + why);
    tx.commit();
}

void PgIdentityStore::retire_code(const std::string& old_code, const std::string& new_code, int64_t now_ms) {
    prefetched_.erase(old_code);
    prefetched_.erase(new_code);
    c_->run("WITH superseded AS (INSERT INTO history (code, recorded_ms, superseded_ms, record)"
            " SELECT code, updated_ms, $3, record FROM residents WHERE code = $1),"
            " gone AS (DELETE FROM residents WHERE code = $1)"
            " INSERT INTO code_links (old_code, new_code, changed_ms) VALUES ($1, $2, $3)"
            " ON CONFLICT (old_code) DO UPDATE SET new_code = EXCLUDED.new_code, changed_ms = EXCLUDED.changed_ms",
            Params().text(old_code).text(new_code).integer(now_ms));
}

std::vector<Resident> PgIdentityStore::by_number(const std::string& my_number) {
    return residents_from(c_->run(kByNumber, Params().text(my_number)));
}

std::vector<Resident> PgIdentityStore::by_attributes(const std::string& name, const std::string& birth, int sex,
                                                     const std::string& address) {
    return residents_from(
        c_->run("SELECT code, municipality, my_number, removed, updated_ms, record FROM residents"
                " WHERE (name = $1::text OR kana = $1::text) AND ($2::text = '' OR birth = $2::text)"
                " AND ($3::int = 0 OR sex = $3::int) AND ($4::text = '' OR address = $4::text) LIMIT 50",
                Params().text(name).text(birth).integer(sex).text(address)));
}

std::vector<Resident> PgIdentityStore::residents_of(const std::string& municipality, const std::string& after_code,
                                                    size_t limit) {
    return residents_from(c_->run("SELECT code, municipality, my_number, removed, updated_ms, record FROM residents"
                                  " WHERE municipality = $1 AND code > $2 AND removed = 0 ORDER BY code LIMIT $3",
                                  Params().text(municipality).text(after_code).integer(static_cast<int64_t>(limit))));
}

uint64_t PgIdentityStore::count() {
    return static_cast<uint64_t>(c_->run("SELECT count(*) FROM residents").num(0, 0));
}

uint64_t PgIdentityStore::count_up_to(uint64_t limit) {
    return static_cast<uint64_t>(c_->run("SELECT count(*) FROM (SELECT 1 FROM residents LIMIT $1) AS r",
                                         Params().integer(static_cast<int64_t>(std::min<uint64_t>(limit, INT64_MAX))))
                                     .num(0, 0));
}

std::optional<std::vector<uint8_t>> PgIdentityStore::answer(const std::string& sender, const std::string& batch) {
    auto r = c_->run("SELECT answer FROM answers WHERE sender = $1 AND batch = $2", Params().text(sender).text(batch));
    if (r.rows() == 0) return std::nullopt;
    return r.bytes(0, 0);
}

void PgIdentityStore::save_answer(const std::string& sender, const std::string& batch,
                                  const std::vector<uint8_t>& answer, int64_t now_ms) {
    c_->run("INSERT INTO answers (sender, batch, answer, at_ms) VALUES ($1, $2, $3, $4)",
            Params().text(sender).text(batch).bytes(answer.data(), answer.size()).integer(now_ms));
}

void PgIdentityStore::expect(const Expectation& e) {
    c_->run("INSERT INTO sent (batch, stage, to_node, municipality, count, hashes, context, sent_ms, deadline_ms)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (batch, stage) DO NOTHING",
            Params()
                .text(e.batch)
                .text(e.stage)
                .text(e.to)
                .text(e.municipality)
                .integer(e.count)
                .bytes(e.hashes.data(), e.hashes.size())
                .bytes(e.context.data(), e.context.size())
                .integer(e.sent_ms)
                .integer(e.deadline_ms));
}

namespace {
Expectation expectation_from(const Result& r, int row) {
    Expectation e;
    e.batch = r.col(row, 0);
    e.stage = r.col(row, 1);
    e.to = r.col(row, 2);
    e.municipality = r.col(row, 3);
    e.count = static_cast<uint32_t>(r.num(row, 4));
    e.hashes = r.bytes(row, 5);
    e.context = r.bytes(row, 6);
    e.sent_ms = r.num(row, 7);
    e.deadline_ms = r.num(row, 8);
    e.confirmed_ms = r.num(row, 9);
    return e;
}
} // namespace

std::optional<Expectation> PgIdentityStore::expected(const std::string& batch, const std::string& stage) {
    auto r = c_->run("SELECT batch, stage, to_node, municipality, count, hashes, context, sent_ms, deadline_ms,"
                     " confirmed_ms FROM sent WHERE batch = $1 AND stage = $2",
                     Params().text(batch).text(stage));
    if (r.rows() == 0) return std::nullopt;
    return expectation_from(r, 0);
}

void PgIdentityStore::confirm(const std::string& batch, const std::string& stage, int64_t now_ms) {
    c_->run("UPDATE sent SET confirmed_ms = $3 WHERE batch = $1 AND stage = $2",
            Params().text(batch).text(stage).integer(now_ms));
}

std::vector<Expectation> PgIdentityStore::pending() {
    auto r = c_->run("SELECT batch, stage, to_node, municipality, count, ''::bytea, ''::bytea, sent_ms, deadline_ms,"
                     " confirmed_ms FROM sent WHERE confirmed_ms = 0 ORDER BY sent_ms");
    std::vector<Expectation> out;
    for (int i = 0; i < r.rows(); ++i) out.push_back(expectation_from(r, i));
    return out;
}

void PgIdentityStore::alarm(const std::string& batch, const std::string& detail, int64_t now_ms) {
    c_->run("INSERT INTO alarms (at_ms, batch, detail) VALUES ($1, $2, $3)",
            Params().integer(now_ms).text(batch).text(detail));
}

std::vector<Alarm> PgIdentityStore::alarms() {
    auto r = c_->run("SELECT at_ms, batch, detail FROM alarms ORDER BY id");
    std::vector<Alarm> out;
    for (int i = 0; i < r.rows(); ++i) out.push_back({r.num(i, 0), r.col(i, 1), r.col(i, 2)});
    return out;
}

void PgIdentityStore::record_provision(const ProvisionRow& x) {
    c_->run("INSERT INTO provisions (at_ms, recipient, affair, subject, outcome, operator, detail)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7)",
            Params()
                .integer(x.at_ms)
                .text(x.recipient)
                .text(x.affair)
                .text(x.subject)
                .text(x.outcome)
                .text(x.operator_id)
                .text(x.detail));
}

std::vector<ProvisionRow> PgIdentityStore::provisions_of(const std::string& subject) {
    auto r = c_->run("SELECT at_ms, recipient, affair, subject, outcome, operator, detail FROM provisions"
                     " WHERE subject = $1 ORDER BY id",
                     Params().text(subject));
    std::vector<ProvisionRow> out;
    for (int i = 0; i < r.rows(); ++i)
        out.push_back({r.num(i, 0), r.col(i, 1), r.col(i, 2), r.col(i, 3), r.col(i, 4), r.col(i, 5), r.col(i, 6)});
    return out;
}

void PgIdentityStore::record_notice(const std::string& type, const std::string& from, const std::string& subject,
                                    const std::vector<uint8_t>& body, int64_t now_ms) {
    c_->run("INSERT INTO notices (at_ms, type, from_node, subject, body) VALUES ($1, $2, $3, $4, $5)",
            Params().integer(now_ms).text(type).text(from).text(subject).bytes(body.data(), body.size()));
}

uint64_t PgIdentityStore::notices(const std::string& type) {
    return static_cast<uint64_t>(c_->run("SELECT count(*) FROM notices WHERE type = $1", Params().text(type)).num(0, 0));
}

bool PgIdentityStore::chunk_seen(const std::string& check, uint32_t chunk) {
    auto r = c_->run("INSERT INTO check_chunks (check_id, chunk) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                     Params().text(check).integer(chunk));
    return r.affected() == 0;
}

void PgIdentityStore::mark_seen(const std::string& check, const std::string& code) {
    c_->run("INSERT INTO check_seen (check_id, code) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            Params().text(check).text(code));
}

uint32_t PgIdentityStore::chunks(const std::string& check) {
    return static_cast<uint32_t>(
        c_->run("SELECT count(*) FROM check_chunks WHERE check_id = $1", Params().text(check)).num(0, 0));
}

std::vector<std::string> PgIdentityStore::unseen(const std::string& check, const std::string& municipality,
                                                 const std::string& after_code, size_t limit) {
    auto r = c_->run("SELECT r.code FROM residents r WHERE r.municipality = $2 AND r.removed = 0 AND r.code > $3"
                     " AND NOT EXISTS (SELECT 1 FROM check_seen s WHERE s.check_id = $1 AND s.code = r.code)"
                     " ORDER BY r.code LIMIT $4",
                     Params().text(check).text(municipality).text(after_code).integer(static_cast<int64_t>(limit)));
    std::vector<std::string> out;
    for (int i = 0; i < r.rows(); ++i) out.push_back(r.col(i, 0));
    return out;
}

void PgIdentityStore::forget_check(const std::string& check) {
    c_->run("WITH a AS (DELETE FROM check_seen WHERE check_id = $1), b AS (DELETE FROM check_chunks WHERE check_id = $1),"
            " c AS (DELETE FROM check_totals WHERE check_id = $1) DELETE FROM check_diffs WHERE check_id = $1",
            Params().text(check));
}

void PgIdentityStore::set_total(const std::string& check, uint32_t chunks) {
    c_->run("INSERT INTO check_totals (check_id, chunks) VALUES ($1, $2)"
            " ON CONFLICT (check_id) DO UPDATE SET chunks = EXCLUDED.chunks",
            Params().text(check).integer(chunks));
}

std::optional<uint32_t> PgIdentityStore::total(const std::string& check) {
    auto r = c_->run("SELECT chunks FROM check_totals WHERE check_id = $1", Params().text(check));
    if (r.rows() == 0) return std::nullopt;
    return static_cast<uint32_t>(r.num(0, 0));
}

uint64_t PgIdentityStore::seen(const std::string& check) {
    return static_cast<uint64_t>(
        c_->run("SELECT count(*) FROM check_seen WHERE check_id = $1", Params().text(check)).num(0, 0));
}

void PgIdentityStore::add_difference(const std::string& check, const std::string& code, int kind,
                                     const std::string& fields, const std::string& registered_at) {
    c_->run("INSERT INTO check_diffs (check_id, code, kind, fields, registered_at) VALUES ($1, $2, $3, $4, $5)",
            Params().text(check).text(code).integer(kind).text(fields).text(registered_at));
}

std::vector<Store::StoredDifference> PgIdentityStore::differences(const std::string& check, size_t limit) {
    auto r = c_->run("SELECT code, kind, fields, registered_at FROM check_diffs WHERE check_id = $1 ORDER BY id LIMIT $2",
                     Params().text(check).integer(static_cast<int64_t>(limit)));
    std::vector<StoredDifference> out;
    for (int i = 0; i < r.rows(); ++i)
        out.push_back({r.col(i, 0), static_cast<int>(r.num(i, 1)), r.col(i, 2), r.col(i, 3)});
    return out;
}

uint64_t PgIdentityStore::difference_count(const std::string& check, int kind) {
    return static_cast<uint64_t>(c_->run("SELECT count(*) FROM check_diffs WHERE check_id = $1 AND kind = $2",
                                         Params().text(check).integer(kind))
                                     .num(0, 0));
}

ErasureCounts PgIdentityStore::erase_expired(int64_t now_ms) {
    prefetched_.clear();
    // The rows go in one transaction. PostgreSQL does not overwrite them: see pg_store.hpp.
    ErasureCounts n;
    Transaction tx(*this);
    n.history = c_->run("DELETE FROM history WHERE superseded_ms < $1",
                        Params().integer(now_ms - retention_.history_ms))
                    .affected();
    // Deleted residents (死亡, 転出 out of this store's area, 職権消除) past their period: all of it.
    n.residents = static_cast<uint64_t>(
        c_->run("WITH gone AS (DELETE FROM residents WHERE removed = 1 AND updated_ms < $1 RETURNING code),"
                " versions AS (DELETE FROM history WHERE code IN (SELECT code FROM gone))"
                " SELECT count(*) FROM gone",
                Params().integer(now_ms - retention_.removed_ms))
            .num(0, 0));
    n.provisions = c_->run("DELETE FROM provisions WHERE at_ms < $1", Params().integer(now_ms - retention_.provisions_ms))
                       .affected();
    c_->run("INSERT INTO erasures (at_ms, history, residents, provisions) VALUES ($1, $2, $3, $4)",
            Params()
                .integer(now_ms)
                .integer(static_cast<int64_t>(n.history))
                .integer(static_cast<int64_t>(n.residents))
                .integer(static_cast<int64_t>(n.provisions)));
    tx.commit();
    return n;
}

// ------------------------------------------------------------------ the 個人番号 registry

namespace {
#define T " text COLLATE \"C\" NOT NULL"
//  1: the tables of the SQLite registry, and an index for a person's numbers.
const char* const kNumberSteps[] = {
    // The current number of each person.
    "CREATE TABLE numbers (resident_code text COLLATE \"C\" PRIMARY KEY, my_number text COLLATE \"C\" NOT NULL UNIQUE,"
    " generation bigint NOT NULL, assigned_ms bigint NOT NULL);"
    // Every number ever issued: never issued twice, kept after a change (link history).
    "CREATE TABLE issued (my_number text COLLATE \"C\" PRIMARY KEY, resident_code" T ", generation bigint NOT NULL,"
    " issued_ms bigint NOT NULL, replaced_ms bigint, reason text);"
    "CREATE INDEX issued_code ON issued (resident_code);"
    // Answers by request id, so a redelivered or retried request gets the same answer.
    "CREATE TABLE requests (id text COLLATE \"C\" PRIMARY KEY, resident_code" T ", my_number" T ", previous" T ","
    " generation bigint NOT NULL);"
    // 住民票コード changes (住基法30条の4): the old code stays linked to the new one.
    "CREATE TABLE code_changes (old_code text COLLATE \"C\" PRIMARY KEY, new_code" T ", changed_ms bigint NOT NULL);",
};
#undef T
static_assert(sizeof kNumberSteps / sizeof kNumberSteps[0] == PgNumberRegistry::kSchemaVersion);
} // namespace

PgNumberRegistry::PgNumberRegistry(const std::string& dsn, const std::string& schema, std::vector<uint8_t> secret)
    : Numbers(std::move(secret)), dsn_(dsn), schema_(schema) {
    if (!valid_schema_name(schema))
        throw std::invalid_argument("number_schema: '" + schema +
                                    "' must be lower-case letters, digits and _ (not first a digit), at most 63");
    c_ = std::make_unique<pg::Conn>(dsn, setup_sql(schema));
    Transaction tx(*this);
    migrate(*c_, schema, kNumberSteps, kSchemaVersion);
    tx.commit();
}

PgNumberRegistry::~PgNumberRegistry() = default;

std::string PgNumberRegistry::describe() const { return "PostgreSQL " + pg::redact(dsn_) + " schema " + schema_; }

int PgNumberRegistry::schema_version() {
    return static_cast<int>(c_->once("SELECT version FROM schema_version", {}, true).num(0, 0));
}

bool PgNumberRegistry::tx_begin(TxKind kind) { return begin(*c_, depth_, kind == TxKind::Read); }
void PgNumberRegistry::tx_commit(bool nested) {
    if (!nested) prefetched_.clear();
    commit(*c_, depth_, nested);
}
void PgNumberRegistry::tx_rollback(bool nested) noexcept {
    // A savepoint rolled back undoes only writes, and a written code has left prefetched_ already.
    if (!nested) prefetched_.clear();
    rollback(*c_, depth_, nested);
}

Assignment PgNumberRegistry::assign(const std::string& request_id, const std::string& code, bool change,
                                    const std::string& reason, int64_t now_ms) {
    prefetched_.erase(code);
    Transaction tx(*this);
    {
        auto q = c_->run("SELECT my_number, previous, generation, resident_code FROM requests WHERE id = $1",
                         Params().text(request_id));
        if (q.rows()) {
            if (q.col(0, 3) != code)
                throw std::invalid_argument("request id " + request_id + " was used for another 住民票コード");
            return Assignment{q.col(0, 0), q.col(0, 1), static_cast<uint32_t>(q.num(0, 2))};
        }
    }
    Assignment a;
    std::string current;
    uint32_t generation = 0;
    {
        // FOR UPDATE: two nodes assigning to one person at once take turns.
        auto q = c_->run("SELECT my_number, generation FROM numbers WHERE resident_code = $1 FOR UPDATE",
                         Params().text(code));
        if (q.rows()) {
            current = q.col(0, 0);
            generation = static_cast<uint32_t>(q.num(0, 1));
        }
    }
    if (!current.empty() && !change) {
        a = Assignment{current, "", generation};
    } else {
        a.generation = generation + 1;
        a.previous = current;
        for (uint32_t counter = 0;; ++counter) { // a collision with any number ever issued: next one
            auto n = candidate(code, a.generation, counter);
            if (c_->run("SELECT 1 FROM issued WHERE my_number = $1", Params().text(n)).rows() == 0) {
                a.my_number = n;
                break;
            }
        }
        if (!current.empty())
            c_->run("UPDATE issued SET replaced_ms = $2, reason = $3 WHERE my_number = $1",
                    Params().text(current).integer(now_ms).text(reason));
        c_->run("INSERT INTO issued (my_number, resident_code, generation, issued_ms) VALUES ($1, $2, $3, $4)",
                Params().text(a.my_number).text(code).integer(a.generation).integer(now_ms));
        c_->run("INSERT INTO numbers (resident_code, my_number, generation, assigned_ms) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (resident_code) DO UPDATE SET my_number = EXCLUDED.my_number,"
                " generation = EXCLUDED.generation, assigned_ms = EXCLUDED.assigned_ms",
                Params().text(code).text(a.my_number).integer(a.generation).integer(now_ms));
    }
    c_->run("INSERT INTO requests (id, resident_code, my_number, previous, generation) VALUES ($1, $2, $3, $4, $5)",
            Params().text(request_id).text(code).text(a.my_number).text(a.previous).integer(a.generation));
    tx.commit();
    return a;
}

std::vector<std::string> PgNumberRegistry::history(const std::string& code) {
    auto r = c_->run("SELECT my_number FROM issued WHERE resident_code = $1 ORDER BY generation", Params().text(code));
    std::vector<std::string> out;
    for (int i = 0; i < r.rows(); ++i) out.push_back(r.col(i, 0));
    return out;
}

void PgNumberRegistry::prefetch(const std::vector<std::string>& codes) {
    if (depth_ == 0) return; // outside a transaction the rows could change before current() asks
    for (size_t start = 0; start < codes.size(); start += kKeysPerStatement) {
        size_t end = std::min(codes.size(), start + kKeysPerStatement);
        auto r = c_->run("SELECT resident_code, my_number FROM numbers WHERE resident_code = ANY($1::text[])",
                         Params().text(array_literal(codes, start, end)));
        for (size_t i = start; i < end; ++i) prefetched_.try_emplace(codes[i]);
        for (int row = 0; row < r.rows(); ++row) prefetched_[r.col(row, 0)] = r.col(row, 1);
    }
}

std::optional<std::string> PgNumberRegistry::current(const std::string& code) {
    if (auto it = prefetched_.find(code); it != prefetched_.end()) return it->second;
    auto r = c_->run("SELECT my_number FROM numbers WHERE resident_code = $1", Params().text(code));
    if (r.rows() == 0) return std::nullopt;
    return r.col(0, 0);
}

std::optional<std::string> PgNumberRegistry::holder(const std::string& my_number) {
    auto r = c_->run("SELECT resident_code FROM issued WHERE my_number = $1", Params().text(my_number));
    if (r.rows() == 0) return std::nullopt;
    return r.col(0, 0);
}

void PgNumberRegistry::change_code(const std::string& old_code, const std::string& new_code, int64_t now_ms) {
    prefetched_.erase(old_code);
    prefetched_.erase(new_code);
    Transaction tx(*this);
    if (c_->run("SELECT 1 FROM numbers WHERE resident_code = $1", Params().text(new_code)).rows())
        throw std::invalid_argument("residentCode " + new_code + " already has a 個人番号");
    if (c_->run("UPDATE numbers SET resident_code = $2 WHERE resident_code = $1",
                Params().text(old_code).text(new_code))
            .affected() == 0)
        throw std::invalid_argument("previousResidentCode " + old_code + " has no 個人番号");
    c_->run("UPDATE issued SET resident_code = $2 WHERE resident_code = $1", Params().text(old_code).text(new_code));
    c_->run("INSERT INTO code_changes (old_code, new_code, changed_ms) VALUES ($1, $2, $3)",
            Params().text(old_code).text(new_code).integer(now_ms));
    tx.commit();
}

} // namespace renkei::juki
