#include "renkei/deadletter_cli.hpp"

#include "renkei/audit_log.hpp"
#include "renkei/config.hpp"
#include "renkei/dead_letters.hpp"
#include "renkei/envelope.hpp"
#include "renkei/outbox.hpp"

#include <chrono>
#include <cstdio>
#include <ctime>
#include <exception>
#include <memory>
#include <optional>
#include <string_view>

namespace renkei {
namespace fs = std::filesystem;

namespace {

constexpr int kOk = 0;
constexpr int kFailed = 1;
constexpr int kCannotOpen = 2;

// Calls emit(code point, bytes) for each UTF-8 character of `s`; an invalid byte is passed as
// U+FFFD with its single byte, so nothing is skipped silently.
template <class Emit>
void for_each_char(std::string_view s, Emit emit) {
    size_t i = 0;
    while (i < s.size()) {
        auto b0 = static_cast<unsigned char>(s[i]);
        size_t len = b0 < 0x80 ? 1 : (b0 >> 5) == 0x6 ? 2 : (b0 >> 4) == 0xE ? 3 : (b0 >> 3) == 0x1E ? 4 : 0;
        uint32_t cp = len == 1 ? b0 : len == 2 ? (b0 & 0x1F) : len == 3 ? (b0 & 0x0F) : (b0 & 0x07);
        bool ok = len != 0 && i + len <= s.size();
        for (size_t k = 1; ok && k < len; ++k) {
            auto b = static_cast<unsigned char>(s[i + k]);
            if ((b & 0xC0) != 0x80) ok = false;
            else cp = (cp << 6) | (b & 0x3F);
        }
        // Overlong forms, surrogates and values past U+10FFFF are not valid UTF-8 either.
        static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
        if (ok && (cp < kMin[len] || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)) ok = false;
        if (!ok) {
            emit(0xFFFD, s.substr(i, 1));
            ++i;
        } else {
            emit(cp, s.substr(i, len));
            i += len;
        }
    }
}

bool is_control(uint32_t cp) { return cp < 0x20 || (cp >= 0x7F && cp <= 0x9F); }

// For a terminal: control characters (a peer's refusal reason can carry anything) are shown as
// \xNN, invalid UTF-8 bytes likewise, so one dead letter is always exactly one line.
std::string printable(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for_each_char(s, [&](uint32_t cp, std::string_view bytes) {
        if (cp == '\\') {
            out += "\\\\";
        } else if (is_control(cp) || (cp == 0xFFFD && bytes.size() == 1)) {
            for (unsigned char b : bytes) {
                char buf[8];
                std::snprintf(buf, sizeof buf, "\\x%02x", b);
                out += buf;
            }
        } else {
            out.append(bytes);
        }
    });
    return out;
}

// A JSON string literal; always valid UTF-8.
std::string json_string(std::string_view s) {
    std::string out = "\"";
    for_each_char(s, [&](uint32_t cp, std::string_view bytes) {
        if (cp == '"') out += "\\\"";
        else if (cp == '\\') out += "\\\\";
        else if (cp == '\n') out += "\\n";
        else if (cp == '\t') out += "\\t";
        else if (cp == '\r') out += "\\r";
        else if (is_control(cp)) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(cp));
            out += buf;
        } else if (cp == 0xFFFD && bytes.size() == 1) {
            out += "\\ufffd";
        } else {
            out.append(bytes);
        }
    });
    out += '"';
    return out;
}

int64_t now_unix_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

std::optional<MessageId> parse_id(std::string_view text) {
    MessageId id{};
    if (text.size() != id.size() * 2) return std::nullopt;
    auto digit = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    };
    for (size_t i = 0; i < id.size(); ++i) {
        int hi = digit(text[2 * i]), lo = digit(text[2 * i + 1]);
        if (hi < 0 || lo < 0) return std::nullopt;
        id[i] = static_cast<uint8_t>(hi << 4 | lo);
    }
    return id;
}

// "peer=... type=... attempts=N reason=...": what identifies a dead letter to an operator,
// without its content.
std::string describe(const DeadLetter& d) {
    return "peer=" + printable(d.peer) + " type=" + printable(d.type) +
           " attempts=" + std::to_string(d.attempts) + " reason=" + printable(d.reason);
}

struct Store {
    fs::path data_dir;
    fs::path db;
};

// One record in the node's audit trail for an operator's action on a dead letter.
void audit(AuditLog* log, const DeadLetterCliOptions& o, const std::string& action, const std::string& id,
           const std::string& peer, const std::string& outcome, const std::string& detail) {
    if (!log) return;
    AuditRecord r;
    r.time_ms = now_unix_ms();
    r.event = "admin";
    r.type = "deadletter." + action;
    r.message_id = id;
    r.to = peer;
    r.operator_id = o.operator_id;
    r.outcome = outcome;
    r.detail = detail;
    log->append(std::move(r));
}

// Finds the outbox database from --data-dir or --config; nullopt after reporting why not.
std::optional<Store> locate(const DeadLetterCliOptions& o, std::ostream& err) {
    if (o.data_dir.empty() == o.config_file.empty()) {
        err << "renkei: give either --data-dir DIR or --config FILE"
            << (o.data_dir.empty() ? "" : ", not both") << "\n";
        return std::nullopt;
    }
    Store s;
    if (!o.config_file.empty()) {
        try {
            s.data_dir = load_config(o.config_file, o.plugin_dirs).data_dir;
        } catch (const ConfigError& e) {
            err << "renkei: " << o.config_file.string() << ": cannot take data_dir from it:\n";
            for (auto& issue : e.issues()) err << "  " << issue.to_string() << "\n";
            return std::nullopt;
        }
    } else {
        s.data_dir = o.data_dir;
    }
    s.db = s.data_dir / "outbox.db";
    std::error_code ec;
    if (!fs::is_regular_file(s.db, ec)) {
        // Never create one: a mistyped directory must not look like an empty store.
        err << "renkei: " << s.db.string() << ": no such outbox database"
            << " (wrong data directory, or the host has never run there)\n";
        return std::nullopt;
    }
    return s;
}

int list(const DeadLetterCliOptions& o, const Store& store, DeadLetters& letters,
         std::ostream& out) {
    size_t total = letters.count();
    auto page = letters.list(o.limit, o.offset);
    if (o.json) {
        out << "{\"database\":" << json_string(store.db.string()) << ",\"total\":" << total
            << ",\"offset\":" << o.offset << ",\"limit\":" << o.limit << ",\"dead_letters\":[";
        for (size_t i = 0; i < page.size(); ++i) {
            const DeadLetter& d = page[i];
            out << (i ? "," : "") << "{\"id\":\"" << hex(d.id) << "\",\"peer\":" << json_string(d.peer)
                << ",\"type\":" << json_string(d.type) << ",\"size\":" << d.bytes.size()
                << ",\"attempts\":" << d.attempts << ",\"queued\":\"" << iso8601_utc(d.queued_ms)
                << "\",\"dead\":\"" << iso8601_utc(d.dead_ms)
                << "\",\"reason\":" << json_string(d.reason) << "}";
        }
        out << "]}\n";
        return kOk;
    }
    if (total == 0) {
        out << "no dead letters in " << store.db.string() << "\n";
        return kOk;
    }
    for (const DeadLetter& d : page) {
        out << hex(d.id) << " peer=" << printable(d.peer) << " type=" << printable(d.type)
            << " size=" << d.bytes.size() << " attempts=" << d.attempts
            << " queued=" << iso8601_utc(d.queued_ms) << " dead=" << iso8601_utc(d.dead_ms)
            << " reason=" << printable(d.reason) << "\n";
    }
    if (page.size() == total) {
        out << total << " dead letter(s)\n";
    } else if (page.empty()) {
        out << "no dead letters at offset " << o.offset << "; " << total << " dead letter(s) in all\n";
    } else {
        out << page.size() << " of " << total << " dead letter(s) shown (" << o.offset + 1 << "-"
            << o.offset + page.size() << "); page with --offset and --limit\n";
    }
    return kOk;
}

int replay(const DeadLetterCliOptions& o, const Store& store, DeadLetters& letters, AuditLog* log,
           std::ostream& out, std::ostream& err) {
    // The ones to replay, fixed now: a message that dies again while this runs (the peer
    // refuses it at once) is not replayed twice.
    std::vector<DeadLetter> todo;
    if (o.all) {
        constexpr size_t kPage = 256;
        for (size_t offset = 0;; offset += kPage) {
            auto page = letters.list(kPage, offset);
            for (auto& d : page) {
                d.bytes = {};
                d.bytes.shrink_to_fit();
                todo.push_back(std::move(d));
            }
            if (page.size() < kPage) break;
        }
        if (todo.empty()) {
            out << "no dead letters to replay in " << store.db.string() << "\n";
            return kOk;
        }
    } else {
        auto id = parse_id(o.id);
        if (!id) {
            audit(log, o, "replay", "", "", "refused", "not a message id: " + printable(o.id));
            err << "renkei: '" << printable(o.id) << "' is not a message id (32 hex digits)\n";
            return kFailed;
        }
        auto letter = letters.get(*id);
        if (!letter) {
            audit(log, o, "replay", hex(*id), "", "refused", "no such dead letter in " + store.db.string());
            err << "renkei: no dead letter with id " << hex(*id) << " in " << store.db.string() << "\n";
            return kFailed;
        }
        todo.push_back(std::move(*letter));
    }

    Outbox outbox(store.db);
    size_t replayed = 0, gone = 0;
    for (const DeadLetter& d : todo) {
        auto entry = outbox.replay_dead_letter(d.id, now_unix_ms());
        if (!entry) {
            // Acknowledged late or dropped since it was read.
            audit(log, o, "replay", hex(d.id), d.peer, "refused",
                  describe(d) + ": no longer a dead letter (acknowledged or dropped meanwhile)");
            ++gone;
            err << "renkei: " << hex(d.id) << " is no longer a dead letter (acknowledged or dropped meanwhile)\n";
            continue;
        }
        ++replayed;
        audit(log, o, "replay", hex(d.id), d.peer, "ok",
              describe(d) + " -> outbox seq " + std::to_string(entry->seq) + (o.all ? " (--all)" : ""));
        out << "replayed " << hex(d.id) << " " << describe(d) << " -> outbox seq " << entry->seq
            << ", attempts " << entry->attempts << ", due now\n";
    }
    if (o.all) {
        out << replayed << " dead letter(s) replayed";
        if (gone) out << ", " << gone << " gone meanwhile";
        out << "\n";
        return kOk;
    }
    return replayed == 1 ? kOk : kFailed;
}

int drop(const DeadLetterCliOptions& o, const Store& store, DeadLetters& letters, AuditLog* log,
         std::ostream& out, std::ostream& err) {
    auto id = parse_id(o.id);
    if (!id) {
        audit(log, o, "drop", "", "", "refused", "not a message id: " + printable(o.id));
        err << "renkei: '" << printable(o.id) << "' is not a message id (32 hex digits)\n";
        return kFailed;
    }
    auto letter = letters.get(*id);
    if (!letter || !letters.remove(*id)) {
        audit(log, o, "drop", hex(*id), letter ? letter->peer : "", "refused", "no such dead letter in " + store.db.string());
        err << "renkei: no dead letter with id " << hex(*id) << " in " << store.db.string() << "\n";
        return kFailed;
    }
    audit(log, o, "drop", hex(letter->id), letter->peer, "ok", describe(*letter) + " (discarded for good)");
    out << "dropped " << hex(letter->id) << " " << describe(*letter) << "\n";
    return kOk;
}

} // namespace

std::string iso8601_utc(int64_t unix_ms) {
    int64_t secs = unix_ms / 1000, ms = unix_ms % 1000;
    if (ms < 0) {
        ms += 1000;
        --secs;
    }
    std::time_t t = static_cast<std::time_t>(secs);
    std::tm tm{};
    if (!gmtime_r(&t, &tm)) return std::to_string(unix_ms) + "ms";
    char buf[80];
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
    return buf;
}

int run_deadletter_command(const DeadLetterCliOptions& options, std::ostream& out,
                           std::ostream& err) {
    const DeadLetterCliOptions& o = options;
    if (o.action == DeadLetterAction::list && o.limit == 0) {
        err << "renkei: --limit must be at least 1\n";
        return kCannotOpen;
    }
    if (o.action == DeadLetterAction::replay && o.all == !o.id.empty()) {
        err << "renkei: deadletter replay needs either --id HEX or --all"
            << (o.all ? ", not both" : "") << "\n";
        return kCannotOpen;
    }
    if (o.action == DeadLetterAction::drop && (o.id.empty() || o.all)) {
        err << "renkei: deadletter drop needs --id HEX (one at a time)\n";
        return kCannotOpen;
    }
    bool acts = o.action != DeadLetterAction::list;
    if (acts && o.operator_id.empty()) {
        err << "renkei: deadletter " << (o.action == DeadLetterAction::replay ? "replay" : "drop")
            << " needs --operator NAME (who does it goes into the audit trail)\n";
        return kCannotOpen;
    }
    for (unsigned char c : o.operator_id)
        if (c < 0x20 || c == 0x7F) {
            err << "renkei: --operator contains a control character\n";
            return kCannotOpen;
        }
    auto store = locate(o, err);
    if (!store) return kCannotOpen;

    // The node's audit trail; the host may be appending to it at the same time.
    std::unique_ptr<AuditLog> log;
    if (acts) {
        try {
            log = std::make_unique<AuditLog>(store->data_dir / "audit");
        } catch (const std::exception& e) {
            err << "renkei: " << (store->data_dir / "audit").string() << ": cannot open the audit trail: " << e.what() << "\n";
            return kCannotOpen;
        }
    }

    std::optional<DeadLetters> letters;
    try {
        letters.emplace(store->db);
    } catch (const std::exception& e) {
        err << "renkei: " << e.what() << "\n";
        return kCannotOpen;
    }
    try {
        switch (o.action) {
        case DeadLetterAction::list: return list(o, *store, *letters, out);
        case DeadLetterAction::replay: return replay(o, *store, *letters, log.get(), out, err);
        case DeadLetterAction::drop: return drop(o, *store, *letters, log.get(), out, err);
        }
    } catch (const std::exception& e) {
        // sqlite::Error names the file and the operation, never stored values.
        audit(log.get(), o, o.action == DeadLetterAction::replay ? "replay" : "drop", o.id, "", "failed", e.what());
        err << "renkei: " << e.what() << "\n";
    }
    return kFailed;
}

} // namespace renkei
