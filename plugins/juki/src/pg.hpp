// Small libpq helpers for juki's PostgreSQL store: a connection that prepares each statement once
// (by the address of its text), pipelines the writes of a transaction (queue()), parameters in
// text or binary form, results in binary form, and errors that name the statement and never the
// password.
#pragma once

#include <libpq-fe.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace renkei::juki::pg {

// The connection string with the password (and anything else secret) left out, for logs and errors.
inline std::string redact(const std::string& dsn) {
    char* err = nullptr;
    PQconninfoOption* opts = PQconninfoParse(dsn.c_str(), &err);
    if (opts == nullptr) {
        // Not even parseable: say so without echoing it (it may hold a password).
        std::string why = err ? err : "out of memory";
        PQfreemem(err);
        while (!why.empty() && (why.back() == '\n' || why.back() == ' ')) why.pop_back();
        return "(unparseable connection string: " + why + ")";
    }
    std::string out;
    for (auto* o = opts; o->keyword != nullptr; ++o) {
        if (o->val == nullptr || *o->val == '\0') continue;
        std::string_view k = o->keyword;
        if (k == "password" || k == "sslpassword") continue;
        if (!out.empty()) out += ' ';
        out += std::string(k) + "=" + o->val;
    }
    PQconninfoFree(opts);
    return out.empty() ? std::string("(libpq defaults)") : out;
}

// Parameters of one statement. Text values are sent as text, byte strings in binary form (bytea).
class Params {
public:
    Params& text(std::string_view v) { return add(v.data(), v.size(), 0); }
    Params& integer(int64_t v) {
        owned_.push_back(std::to_string(v));
        values_.push_back({nullptr, 0, 0, owned_.size() - 1});
        return *this;
    }
    Params& bytes(const void* data, size_t size) {
        return add(size ? static_cast<const char*>(data) : "", size, 1);
    }
    int size() const { return static_cast<int>(values_.size()); }
    // Pointers for libpq, valid until this object changes.
    void lay_out(std::vector<const char*>& v, std::vector<int>& l, std::vector<int>& f) const {
        for (auto& p : values_) {
            if (p.data == nullptr) {
                v.push_back(owned_[p.owned].c_str());
                l.push_back(static_cast<int>(owned_[p.owned].size()));
            } else {
                v.push_back(p.data);
                l.push_back(static_cast<int>(p.size));
            }
            f.push_back(p.format);
        }
    }

private:
    Params& add(const char* data, size_t size, int format) {
        values_.push_back({data, size, format, 0});
        return *this;
    }
    struct Value {
        const char* data; // borrowed; nullptr: owned_[owned]
        size_t size;
        int format;
        size_t owned;
    };
    std::vector<Value> values_;
    std::vector<std::string> owned_;
};

// A result in binary form: text columns are their UTF-8 bytes, integers big-endian, bytea raw.
class Result {
public:
    explicit Result(PGresult* r = nullptr) : r_(r) {}
    ~Result() { PQclear(r_); }
    Result(Result&& o) noexcept : r_(o.r_) { o.r_ = nullptr; }
    Result& operator=(Result&& o) noexcept {
        std::swap(r_, o.r_);
        return *this;
    }
    Result(const Result&) = delete;
    Result& operator=(const Result&) = delete;

    PGresult* get() const { return r_; }
    int rows() const { return PQntuples(r_); }
    bool null(int row, int c) const { return PQgetisnull(r_, row, c) != 0; }
    std::string col(int row, int c) const {
        return std::string(PQgetvalue(r_, row, c), static_cast<size_t>(PQgetlength(r_, row, c)));
    }
    int64_t num(int row, int c) const {
        if (null(row, c)) return 0;
        auto* p = reinterpret_cast<const unsigned char*>(PQgetvalue(r_, row, c));
        int n = PQgetlength(r_, row, c);
        if (PQfformat(r_, c) == 0) return std::stoll(std::string(reinterpret_cast<const char*>(p), n));
        uint64_t v = 0;
        for (int i = 0; i < n; ++i) v = (v << 8) | p[i];
        switch (n) { // sign-extend smallint and integer
        case 1: return static_cast<int8_t>(v);
        case 2: return static_cast<int16_t>(v);
        case 4: return static_cast<int32_t>(v);
        case 8: return static_cast<int64_t>(v);
        default: throw std::runtime_error("juki store (PostgreSQL): column " + std::to_string(c) + " is not an integer");
        }
    }
    std::vector<uint8_t> bytes(int row, int c) const {
        auto* p = reinterpret_cast<const uint8_t*>(PQgetvalue(r_, row, c));
        return std::vector<uint8_t>(p, p + PQgetlength(r_, row, c));
    }
    // Rows an INSERT, UPDATE or DELETE touched.
    uint64_t affected() const {
        const char* n = PQcmdTuples(r_);
        return n && *n ? std::stoull(n) : 0;
    }

private:
    PGresult* r_;
};

// One connection. Not thread-safe: each thread (a reader of a pool) has its own.
class Conn {
public:
    // `setup` runs after connecting and after every reconnect (it sets the search_path).
    Conn(const std::string& dsn, std::string setup) : dsn_(dsn), setup_(std::move(setup)) {
        if (dsn.empty()) throw std::invalid_argument("juki store (PostgreSQL): the connection string is empty");
        c_ = PQconnectdb(dsn.c_str());
        if (PQstatus(c_) != CONNECTION_OK) {
            std::string why = message();
            PQfinish(c_);
            throw std::runtime_error("juki store (PostgreSQL " + redact(dsn) + "): cannot connect: " + why);
        }
        PQsetNoticeProcessor(c_, [](void*, const char*) {}, nullptr); // NOTICEs of IF NOT EXISTS
        exec(setup_);
    }
    ~Conn() { PQfinish(c_); }
    Conn(const Conn&) = delete;
    Conn& operator=(const Conn&) = delete;

    // The connection for libpq calls of the caller's own, with nothing queued (see queue()).
    PGconn* raw() {
        settle();
        return c_;
    }
    bool in_transaction() const { return PQtransactionStatus(c_) != PQTRANS_IDLE; }

    // Runs one or more statements without parameters (DDL, BEGIN, COMMIT).
    void exec(const std::string& text) {
        sync();
        retrying([&] {
            Result r(PQexec(c_, text.c_str()));
            check(r, text.c_str());
            return 0;
        });
    }

    // Runs the statement `text` (a string literal: prepared once per connection, keyed by its
    // address) with `p`; every result column comes back in binary form.
    Result run(const char* text, const Params& p = {}) {
        sync();
        return retrying([&] {
            auto& name = prepared(text);
            std::vector<const char*> v;
            std::vector<int> l, f;
            p.lay_out(v, l, f);
            Result r(PQexecPrepared(c_, name.c_str(), p.size(), v.data(), l.data(), f.data(), 1));
            check(r, text);
            return r;
        });
    }

    // Runs a statement once, unprepared (diagnostics, rare statements built at run time); results
    // in binary form, or in text form with `text_results` (any type then reads as a number).
    Result once(const std::string& text, const Params& p = {}, bool text_results = false) {
        sync();
        return retrying([&] {
            std::vector<const char*> v;
            std::vector<int> l, f;
            p.lay_out(v, l, f);
            Result r(PQexecParams(c_, text.c_str(), p.size(), nullptr, v.data(), l.data(), f.data(),
                                  text_results ? 0 : 1));
            check(r, text.c_str());
            return r;
        });
    }

    // Sends the write `text` (prepared as by run()) inside the open transaction without waiting
    // for its result: queued writes go in one pipeline and cost one round trip together, not one
    // each. The server runs them in order before any later statement, so a later run() sees them.
    // Their results are read by the next exec(), run() or once() (or sync()), which throws the
    // first queued write's error, naming the statement; the transaction is then aborted, as if
    // that write had thrown. Outside a transaction it is run().
    void queue(const char* text, const Params& p) {
        if (depth_hint_ == 0) {
            run(text, p);
            return;
        }
        if (auto it = prepared_.find(text); it == prepared_.end() || it->second.empty())
            sync(); // a statement is prepared outside the pipeline
        auto& name = prepared(text);
        if (queued_.empty() && PQenterPipelineMode(c_) != 1) fail(nullptr, text);
        std::vector<const char*> v;
        std::vector<int> l, f;
        p.lay_out(v, l, f);
        if (PQsendQueryPrepared(c_, name.c_str(), p.size(), v.data(), l.data(), f.data(), 1) != 1) {
            std::string why = message();
            settle();
            throw std::runtime_error("juki store (PostgreSQL): cannot send: " + why + " in: " +
                                     std::string(text, std::min<size_t>(std::strlen(text), 120)));
        }
        queued_.push_back(text);
        // Bounded, so the results waiting on the server's side fit in the socket buffers: past
        // them the server would block writing results while this side blocks writing statements.
        if (queued_.size() >= kMaxQueued) sync();
    }

    // Reads the results of the queued writes; throws the first one's error.
    void sync() {
        if (queued_.empty()) return;
        std::string why;
        drain(&why);
        if (!why.empty()) throw std::runtime_error(why);
    }

    // Set by the store while it holds a transaction open: no silent reconnect then (the
    // transaction is gone with the connection; the caller must see the error).
    void set_depth(int depth) { depth_hint_ = depth; }

    std::string message() const {
        std::string m = PQerrorMessage(c_);
        while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.pop_back();
        return m;
    }

    [[noreturn]] void fail(const PGresult* r, const char* text) const {
        std::string m = r ? PQresultErrorMessage(r) : "";
        if (m.empty()) m = message();
        while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.pop_back();
        const char* state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
        std::string what(text, std::min<size_t>(std::strlen(text), 120));
        throw std::runtime_error("juki store (PostgreSQL): " + m + (state ? std::string(" [SQLSTATE ") + state + "]" : "") +
                                 " in: " + what);
    }

private:
    static constexpr size_t kMaxQueued = 256;

    const std::string& prepared(const char* text) {
        auto& name = prepared_[text];
        if (name.empty()) {
            std::string n = "juki_" + std::to_string(prepared_.size());
            Result r(PQprepare(c_, n.c_str(), text, 0, nullptr));
            check(r, text);
            name = n;
        }
        return name;
    }

    // Ends the pipeline: reads every queued result. `why` (if given) gets the first error, named
    // as fail() names it; the statements after it were skipped by the server (the transaction is
    // aborted).
    void drain(std::string* why) {
        if (queued_.empty()) return;
        std::vector<const char*> texts;
        texts.swap(queued_);
        auto note = [&](std::string m) {
            if (why && why->empty()) *why = std::move(m);
        };
        bool synced = PQpipelineSync(c_) == 1;
        if (!synced) note("juki store (PostgreSQL): " + message() + " in: pipeline sync");
        for (auto* text : texts) {
            if (PQstatus(c_) == CONNECTION_BAD) break;
            // Each queued statement: its result, then a null.
            while (PGresult* r = PQgetResult(c_)) {
                auto s = PQresultStatus(r);
                if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK && s != PGRES_PIPELINE_ABORTED) {
                    try {
                        fail(r, text);
                    } catch (const std::exception& e) {
                        note(e.what());
                    }
                }
                PQclear(r);
            }
        }
        // The sync point's result, then out of pipeline mode.
        for (int nulls = 0; synced && nulls < 2 && PQstatus(c_) != CONNECTION_BAD;) {
            PGresult* r = PQgetResult(c_);
            if (r == nullptr) {
                ++nulls;
                continue;
            }
            nulls = 0;
            bool sync_point = PQresultStatus(r) == PGRES_PIPELINE_SYNC;
            PQclear(r);
            if (sync_point) break;
        }
        if (PQexitPipelineMode(c_) != 1) note("juki store (PostgreSQL): " + message() + " in: pipeline end");
    }
    // Leaves pipeline mode whatever the queued writes did (a rollback follows, or a COPY of the
    // caller's own after a sync()).
    void settle() noexcept {
        try {
            drain(nullptr);
        } catch (...) {
        }
    }

    void check(const Result& r, const char* text) const {
        auto s = PQresultStatus(r.get());
        if (r.get() == nullptr || (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK && s != PGRES_COPY_IN)) fail(r.get(), text);
    }
    // Runs `f`; if it failed because the connection dropped (a server restart, an idle timeout)
    // while no transaction was open, connects again and runs it once more.
    template <typename F> auto retrying(F&& f) -> decltype(f()) {
        try {
            return f();
        } catch (...) {
            if (PQstatus(c_) != CONNECTION_BAD || depth_hint_ > 0) throw;
        }
        PQreset(c_);
        if (PQstatus(c_) != CONNECTION_OK)
            throw std::runtime_error("juki store (PostgreSQL " + redact(dsn_) + "): reconnect failed: " + message());
        prepared_.clear(); // the server forgot them with the old session
        Result r(PQexec(c_, setup_.c_str()));
        check(r, setup_.c_str());
        return f();
    }

    PGconn* c_ = nullptr;
    std::string dsn_, setup_;
    std::map<const char*, std::string> prepared_;
    std::vector<const char*> queued_; // statements sent in the open pipeline, results not yet read
    int depth_hint_ = 0;
};

} // namespace renkei::juki::pg
