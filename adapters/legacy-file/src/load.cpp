#include <renkei/legacy_file/load.hpp>

#include <renkei/legacy_file/parser.hpp>
#include <renkei/legacy_file/to_juki.hpp>

#include "files.hpp"

#include <renkei/audit_log.hpp>
#include <renkei/config.hpp>
#include <renkei/plugin_context.hpp>
#include <renkei/validate.hpp>

#include "records.hpp"
#include "settings.hpp"

#include <capnp/message.h>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>
#include <cstdio>
#include <cstring>
#include <optional>
#include <ostream>
#include <sstream>

namespace renkei::legacy_file {

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

int64_t wall_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

// Why nothing of the file was loaded.
struct Failed {
    std::string field, rule, message;
};

struct Row {
    size_t line = 0;
    std::string code, by, field, rule, message; // by: "load" (the profile's rules) or the node (juki's)
};

// Records handed from the parser's thread to the checker's.
class Feed {
public:
    void publish(const Record* records, size_t n, bool done) {
        {
            std::lock_guard lock(m_);
            records_ = records;
            n_ = n;
            done_ = done;
        }
        cv_.notify_one();
    }
    struct Got {
        const Record* records;
        size_t n;
        bool done;
    };
    // Waits until `want` records are there or the parser is done.
    Got wait(size_t want) {
        std::unique_lock lock(m_);
        cv_.wait(lock, [&] { return done_ || n_ >= want; });
        return {records_, n_, done_};
    }

private:
    std::mutex m_;
    std::condition_variable cv_;
    const Record* records_ = nullptr;
    size_t n_ = 0;
    bool done_ = false;
};

// The first segments of the chunks' messages, handed back by the writer once it wrote a chunk, so
// the checker fills the same few megabytes over and over instead of having fresh zero pages mapped
// for each chunk (and unmapped after, with a TLB flush on every core).
class Spaces {
public:
    explicit Spaces(size_t words) : words_(std::max<size_t>(words, 1)) {}
    size_t words() const { return words_; }
    // Zeroed, as MallocMessageBuilder wants a first segment.
    std::unique_ptr<capnp::word[]> take() {
        {
            std::lock_guard lock(m_);
            if (!free_.empty()) {
                auto s = std::move(free_.back());
                free_.pop_back();
                return s;
            }
        }
        return std::unique_ptr<capnp::word[]>(new capnp::word[words_]());
    }
    // `s` must be zeroed again: the builder that used it has been destroyed.
    void give(std::unique_ptr<capnp::word[]> s) {
        std::lock_guard lock(m_);
        free_.push_back(std::move(s));
    }

private:
    const size_t words_;
    std::mutex m_;
    std::vector<std::unique_ptr<capnp::word[]>> free_;
};

// A chunk of checked records, those that passed, on its way from the checker's thread through
// the packer's to the writer's.
struct Chunk {
    std::unique_ptr<capnp::word[]> space; // from Spaces; outlives `message`, which zeroes it when destroyed
    std::unique_ptr<capnp::MallocMessageBuilder> message; // root: juki.IdentityUpdate, records only: those that passed
    juki::PackedRecords packed;                           // those records as the store keeps them
    size_t checked = 0;
};

// Chunks from one thread to the next, a few at most.
class ChunkQueue {
public:
    // Waits for room; false when the next thread gave up.
    bool push(Chunk c) {
        std::unique_lock lock(m_);
        cv_.wait(lock, [&] { return q_.size() < kDepth || closed_; });
        if (closed_) return false;
        q_.push_back(std::move(c));
        cv_.notify_all();
        return true;
    }
    // The next chunk; nullopt when the thread before finished (see error()) or this one gave up.
    std::optional<Chunk> pop() {
        std::unique_lock lock(m_);
        cv_.wait(lock, [&] { return !q_.empty() || finished_ || closed_; });
        if (q_.empty() || closed_) return std::nullopt;
        auto c = std::move(q_.front());
        q_.pop_front();
        cv_.notify_all();
        return c;
    }
    void finish(std::exception_ptr error = nullptr) {
        std::lock_guard lock(m_);
        finished_ = true;
        error_ = error;
        cv_.notify_all();
    }
    void close() {
        std::lock_guard lock(m_);
        closed_ = true;
        cv_.notify_all();
    }
    std::exception_ptr error() {
        std::lock_guard lock(m_);
        return error_;
    }

private:
    static constexpr size_t kDepth = 4;
    std::mutex m_;
    std::condition_variable cv_;
    std::deque<Chunk> q_;
    bool finished_ = false, closed_ = false;
    std::exception_ptr error_;
};

// Checks `n` records as the juki plugin checks a notified batch, plus the load's own rules (first
// versions only), against `store` (a connection of its own: the store as it was before the load;
// the parser has refused a second record of the same resident in the file). Those that fail join
// `rejected`. `store_empty`: the snapshot holds no resident (a first migration), so no record is
// looked up in it.
Chunk check_chunk(juki::Store& store, bool store_empty, juki::Numbers* numbers, Spaces& spaces, const Record* records,
                  size_t n, const LoadOptions& o, const std::string& node, std::vector<Row>& rejected) {
    std::vector<std::string> codes;
    codes.reserve(n);
    for (size_t i = 0; i < n; ++i) codes.push_back(records[i].resident_code);
    if (!store_empty) store.prefetch(codes);
    if (numbers) numbers->prefetch(codes);
    // Every record is filled once, into the chunk's list, and checked there; a chunk with refused
    // records (rare) is copied into a list of those that passed.
    Chunk c;
    c.checked = n;
    c.space = spaces.take();
    c.message = std::make_unique<capnp::MallocMessageBuilder>(kj::arrayPtr(c.space.get(), spaces.words()));
    auto all = c.message->initRoot<juki::IdentityUpdate>().initRecords(static_cast<unsigned>(n));
    std::vector<unsigned> take;
    take.reserve(n);
    for (unsigned i = 0; i < n; ++i) {
        auto& rec = records[i];
        fill(all[i], rec, o.operator_id);
        auto reader = all[i].asReader();
        auto why = juki::validate_record(reader, o.municipality);
        if (!why && reader.getReason() == juki::ChangeReason::RESIDENT_CODE_CHANGE)
            why = juki::Refusal{"reason", "juki.load.code_change",
                                "reason: 住民票コード変更 in a load; a load records first versions, a code change goes "
                                "online (juki.IdentityUpdate)"};
        std::optional<juki::Resident> current;
        if (!why) {
            if (!store_empty) current = store.get(rec.resident_code);
            why = juki::check_against(reader, current, std::nullopt);
        }
        if (!why && current)
            why = juki::Refusal{"person.residentCode", "juki.load.exists",
                                "person.residentCode: " + rec.resident_code +
                                    " is in the store already; a load records first versions, a change goes online "
                                    "(juki.IdentityUpdate)"};
        if (!why && numbers) why = juki::number_check(*numbers, reader);
        if (why) {
            rejected.push_back({rec.line, rec.resident_code, node, why->field, why->rule, why->message});
            continue;
        }
        take.push_back(i);
    }
    if (take.size() < n) {
        auto passed = std::make_unique<capnp::MallocMessageBuilder>(static_cast<unsigned>(std::max<size_t>(take.size(), 1) * 64));
        auto list = passed->initRoot<juki::IdentityUpdate>().initRecords(static_cast<unsigned>(take.size()));
        for (unsigned k = 0; k < take.size(); ++k) list.setWithCaveats(k, all[take[k]].asReader());
        c.message = std::move(passed);
    }
    return c;
}

} // namespace

int run_load(const LoadOptions& o, std::ostream& out, std::ostream& err) {
    auto cannot = [&](const std::string& why) {
        err << "renkei load: " << why << "\n";
        return kLoadCannotStart;
    };
    if (o.operator_id.empty()) return cannot("--operator is required: who loads the file (it goes into the audit trail)");
    if (o.purpose.empty()) return cannot("--purpose is required: the legal basis of the load (it goes into the audit trail)");
    if (auto v = renkei::validate::local_gov_code("--municipality", o.municipality); !v) return cannot(v.message);
    if (o.chunk == 0) return cannot("LoadOptions::chunk (records checked and written together) must be at least 1");
    fs::path result = o.result.empty() ? fs::path(o.file.string() + ".result") : o.result;
    if (fs::exists(fs::symlink_status(result)))
        return cannot("the result " + result.string() + " exists; a load never overwrites a result (name another with --result)");
    auto result_dir = result.parent_path().empty() ? fs::path(".") : result.parent_path();
    if (::access(result_dir.c_str(), W_OK) != 0)
        return cannot("cannot write the result into " + result_dir.string() + ": " + std::strerror(errno));

    HostConfig config;
    try {
        config = load_config(o.config_file, o.plugin_dirs);
    } catch (const ConfigError& e) {
        std::string all;
        for (auto& issue : e.issues()) all += "\n  " + issue.to_string();
        return cannot(o.config_file.string() + ":" + all);
    }
    const PluginConfig* plugin = nullptr;
    for (auto& p : config.plugins)
        if (p.name == o.plugin) plugin = &p;
    if (!plugin) return cannot(o.config_file.string() + " has no plugin named '" + o.plugin + "' (--plugin)");
    const juki::Settings settings = [plugin](const char* key) { return setting_text(plugin->settings, key); };
    std::string role = settings("role").value_or("");
    if (role != "cs" && role != "pref" && role != "national")
        return cannot("plugin '" + o.plugin + "': settings.role '" + role + "' is not a juki role (cs, pref, national)");
    if (role == "cs" && settings("municipality").value_or("") != o.municipality)
        return cannot("--municipality " + o.municipality + ": this CS keeps the residents of " +
                      settings("municipality").value_or("?") + " only");
    if (role == "pref" && config.node_id != "pref:" + o.municipality.substr(0, 2))
        return cannot("--municipality " + o.municipality + ": not a municipality of " + config.node_id);

    Profile profile;
    std::optional<GaijiTable> gaiji;
    try {
        profile = load_profile(o.profile);
        auto table = o.gaiji_table.empty() ? profile.gaiji_table : o.gaiji_table;
        if (!table.empty()) gaiji = load_gaiji_table(table);
    } catch (const ProfileError& e) {
        return cannot(e.what());
    }

    std::unique_ptr<juki::Store> store, reader;
    std::unique_ptr<juki::Numbers> numbers;
    std::unique_ptr<AuditLog> audit;
    try {
        auto where = juki::store_location(settings);
        auto so = juki::store_options(settings, role); // as the plugin opens it
        store = juki::open_store(where, {}, so);
        so.search_indexes = false; // the checker's connection: it reads by 住民票コード only
        reader = juki::open_store(where, {}, so);
        if (role == "national") numbers = juki::open_numbers(settings, where);
        audit = std::make_unique<AuditLog>(config.data_dir / "audit");
    } catch (const juki::SettingError& e) {
        return cannot("plugin '" + o.plugin + "': " + e.what());
    } catch (const std::exception& e) {
        return cannot(e.what());
    }

    const std::string name = o.file.filename().string();
    const auto t0 = Clock::now();
    // Records done, the rate and the time left: a line on `err` while it runs, and the metrics
    // file (if asked for) then and at the end.
    auto progress = [&](size_t done, size_t total, const char* status) {
        double s = std::chrono::duration<double>(Clock::now() - t0).count();
        double rate = s > 0 ? done / s : 0, left = rate > 0 ? (std::max(total, done) - done) / rate : 0;
        if (std::string(status) == "running") {
            char line[200];
            std::snprintf(line, sizeof line, "%s: %zu of about %zu records (%.0f%%), %.0f records/s, about %.0f s left\n",
                          name.c_str(), done, total, 100.0 * done / std::max<size_t>(total, 1), rate, left);
            err << line << std::flush;
        }
        if (o.metrics_file.empty()) return;
        std::string label = "file=\"" + prom_label(name) + "\"";
        std::ostringstream m;
        m << "# HELP renkei_load_records Records of the file renkei load is loading.\n# TYPE renkei_load_records gauge\n"
          << "renkei_load_records{" << label << ",state=\"total\"} " << total << "\n"
          << "renkei_load_records{" << label << ",state=\"done\"} " << done << "\n"
          << "# TYPE renkei_load_records_per_second gauge\nrenkei_load_records_per_second{" << label << "} " << rate << "\n"
          << "# TYPE renkei_load_seconds_left gauge\nrenkei_load_seconds_left{" << label << "} " << left << "\n"
          << "# TYPE renkei_load_status gauge\nrenkei_load_status{" << label << ",status=\"" << status << "\"} 1\n";
        try {
            write_atomic(o.metrics_file, m.str());
        } catch (const std::exception& e) {
            err << "renkei load: metrics: " << e.what() << "\n";
        }
    };
    std::optional<Failed> failed;
    std::string warning; // the load stands, but something after it did not happen
    std::vector<Row> rejected;
    size_t records = 0, loaded = 0;
    std::string bytes, digest;
    try {
        auto sr = read_stable(o.file, o.max_bytes, 0, [](int64_t) { return true; });
        if (sr.outcome == StableRead::vanished)
            failed = Failed{"file", "file.unreadable", "file: " + o.file.string() + " does not exist"};
        else if (sr.outcome == StableRead::too_big)
            failed = Failed{"file", "file.too_big",
                            "file: " + sr.detail + ", more than --max-bytes (" + std::to_string(o.max_bytes) +
                                "); nothing of it was loaded: split it"};
        else if (sr.outcome == StableRead::replaced)
            failed = Failed{"file", "file.replaced",
                            "file: replaced while it was being read (" + sr.detail +
                                "); nothing of it was loaded: load it once it is complete"};
        bytes = std::move(sr.bytes);
        digest = std::move(sr.digest);
    } catch (const std::exception& e) {
        failed = Failed{"file", "file.unreadable", std::string("file: ") + e.what()};
    }

    if (!failed) {
        // Four threads: the parser, the checker (reads the store through a connection of its own
        // and J-LIS's 個人番号 registry), the packer and this one, which writes what passed, in one
        // transaction.
        Feed feed;
        ChunkQueue checked, packed;
        Spaces spaces(o.chunk * 64); // about 55 words a record; a chunk that needs more gets another segment
        ParseResult parsed;
        ParseOptions po;
        po.municipalities = {o.municipality};
        po.gaiji = gaiji ? &*gaiji : nullptr;
        po.every = std::max<size_t>(1, o.chunk / 4);
        po.on_records = [&feed](const Record* records, size_t n) { feed.publish(records, n, false); };
        // Records to expect (for the progress and the index decision): lines, or fixed records back to back.
        const size_t expected = profile.format == Format::fixed && profile.line_end == LineEnd::none
                                    ? bytes.size() / std::max<size_t>(profile.record_bytes, 1)
                                    : static_cast<size_t>(std::count(bytes.begin(), bytes.end(), '\n'));
        std::vector<Row> refused; // by the checker; joins `rejected` after it finished
        std::thread parser([&] {
            parsed = parse(bytes, profile, po);
            feed.publish(parsed.records.data(), parsed.records.size(), true);
        });
        std::thread checker([&] {
            try {
                // One snapshot of the store and the registry for the whole file.
                juki::Transactional::Transaction read_tx(*reader, juki::Transactional::TxKind::Read);
                const bool store_empty = reader->count_up_to(1) == 0;
                std::optional<juki::Transactional::Transaction> numbers_tx;
                if (numbers) numbers_tx.emplace(*numbers, juki::Transactional::TxKind::Read);
                for (size_t start = 0;;) {
                    auto got = feed.wait(start + o.chunk);
                    if (start == got.n && got.done) break;
                    size_t n = std::min(o.chunk, got.n - start);
                    if (!checked.push(check_chunk(*reader, store_empty, numbers.get(), spaces, got.records + start, n, o, config.node_id, refused))) break;
                    start += n;
                }
                if (numbers_tx) numbers_tx->commit();
                read_tx.commit();
                checked.finish();
            } catch (...) {
                checked.finish(std::current_exception());
            }
        });
        // Packs each chunk's records as the store keeps them: canonicalising them is about as
        // much work as checking them, and neither the checker nor the writer has it to spare.
        std::thread packer([&] {
            try {
                while (auto c = checked.pop()) {
                    if (!o.dry_run) {
                        auto records = c->message->getRoot<juki::IdentityUpdate>().getRecords().asReader();
                        c->packed.reserve(records.size(), records.size() * 320); // about 256 bytes a record packed, and room
                        for (auto r : records) c->packed.add(r);
                    }
                    if (!packed.push(std::move(*c))) break;
                }
                packed.finish(checked.error());
            } catch (...) {
                packed.finish(std::current_exception());
            }
        });
        auto join = [&] {
            packed.close();
            checked.close();
            if (packer.joinable()) packer.join();
            if (checker.joinable()) checker.join();
            if (parser.joinable()) parser.join();
        };
        try {
            const int64_t now = wall_ms();
            // A dry run takes no write lock and writes nothing: it counts what would be recorded.
            std::optional<juki::Store::Transaction> tx;
            if (!o.dry_run) tx.emplace(*store);
            // A file that brings at least as many residents as the store holds: the search indexes
            // are built after the rows, not row by row.
            bool rebuild = !o.dry_run && expected >= o.rebuild_from && store->count_up_to(expected + 1) <= expected;
            if (rebuild) store->drop_search_indexes();
            auto last_report = Clock::now();
            size_t done = 0;
            while (auto c = packed.pop()) {
                auto passed = c->message->getRoot<juki::IdentityUpdate>().getRecords().asReader();
                if (tx) store->load(passed, c->packed, now);
                loaded += passed.size();
                done += c->checked;
                c->message.reset();
                spaces.give(std::move(c->space));
                if (std::chrono::duration<double>(Clock::now() - last_report).count() >= o.progress_interval_s) {
                    last_report = Clock::now();
                    progress(done, expected, "running");
                }
            }
            join();
            if (auto e = packed.error()) std::rethrow_exception(e);
            if (parsed.failure) {
                auto& f = *parsed.failure;
                std::string at = f.line ? " (line " + std::to_string(f.line) + (f.byte ? ", byte " + std::to_string(f.byte) : "") + ")" : "";
                failed = Failed{f.field, f.rule, f.message + at};
            } else {
                records = parsed.records.size() + parsed.rejected.size();
                for (auto& r : parsed.rejected) rejected.push_back({r.line, r.resident_code, "load", r.field, r.rule, r.message});
                rejected.insert(rejected.end(), refused.begin(), refused.end());
                // What the parser took is not needed any more: it is freed on another thread while
                // this one builds the indexes and commits, which leaves the other core idle
                // (200,000 records took 0.035 s to free).
                std::jthread release([taken = std::move(parsed.records)]() mutable { taken = {}; });
                if (tx) tx->commit();
                // The rows are in. The search indexes are derived from them: if building them
                // fails the load stands, and the store builds them when it next opens.
                if (rebuild) {
                    try {
                        store->build_search_indexes();
                    } catch (const std::exception& e) {
                        warning = std::string("search indexes not built (") + e.what() +
                                  "): the store builds them when it next opens";
                    }
                }
            }
        } catch (const std::exception& e) {
            join();
            failed = Failed{"store", "store.write", std::string("store: ") + e.what() + "; nothing of the file was loaded"};
        }
    }
    if (failed) {
        rejected.clear();
        loaded = 0;
    }
    std::sort(rejected.begin(), rejected.end(), [](const Row& a, const Row& b) { return a.line < b.line; });
    const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();

    const char* status = failed ? "failed" : o.dry_run ? "checked" : "loaded";
    std::string counts = "records: " + std::to_string(records) + (o.dry_run ? "; would load: " : "; loaded: ") +
                         std::to_string(loaded) +
                         "; rejected: " + std::to_string(failed ? 0 : rejected.size());
    // The legacy-file adapter's result layout (README.md); only the rejected records have a line.
    std::string text = "# legacy-file load (renkei load)\n# file: " + tsv_cell(name) + "\n# sha256: " +
                       (digest.empty() ? "-" : digest) + "\n# profile: " + profile.name + "\n# municipality: " +
                       o.municipality + "\n# into: " + config.node_id + " (" + store->describe() + ")\n# status: " +
                       status + (o.dry_run ? " (dry run: nothing recorded)" : "") + "\n# " + counts + "\n";
    if (failed) text += "# error: " + tsv_cell(failed->field) + "\t" + tsv_cell(failed->rule) + "\t" + tsv_cell(failed->message) + "\n";
    if (!warning.empty()) text += "# warning: " + tsv_cell(warning) + "\n";
    text += kResultColumns;
    for (auto& r : rejected) text += result_line(r.line, r.code, "rejected", r.by, r.field, r.rule, r.message, "-");
    progress(failed ? 0 : records, records, status);
    std::string result_error;
    try {
        write_atomic(result, text, false);
    } catch (const std::exception& e) {
        result_error = e.what();
    }

    AuditRecord a;
    a.time_ms = wall_ms();
    a.event = "admin";
    a.type = o.dry_run ? "juki.load.dry_run" : "juki.load";
    a.from = "muni:" + o.municipality;
    a.to = config.node_id;
    a.purpose = o.purpose;
    a.operator_id = o.operator_id;
    a.outcome = failed ? "failed" : "ok";
    a.detail = "file " + name + " (SHA-256 " + (digest.empty() ? "-" : digest) + ", profile " + profile.name + "): " + counts +
               (failed ? "; " + failed->field + " (" + failed->rule + ")" : "") +
               (warning.empty() ? "" : "; " + warning) + (result_error.empty() ? "" : "; result not written: " + result_error);
    audit->append(std::move(a));
    audit->flush();

    char rate[64];
    std::snprintf(rate, sizeof rate, "%.2f s, %.0f records/s", seconds, seconds > 0 ? loaded / seconds : 0.0);
    if (failed) {
        err << "renkei load: " << name << ": nothing loaded: " << failed->field << " (" << failed->rule << ") "
            << failed->message << "\n";
    } else {
        out << name << (o.dry_run ? ": checked against " : ": loaded into ") << config.node_id << " (" << store->describe() << ") in " << rate << (o.dry_run ? " (dry run: nothing recorded)" : "") << "\n  " << counts
            << "\n";
        size_t shown = 0;
        for (auto& r : rejected) {
            if (++shown > 10) break;
            out << "  line " << r.line << " " << r.code << ": " << r.field << " (" << r.rule << ") " << r.message << "\n";
        }
    }
    if (!warning.empty()) err << "renkei load: " << name << ": " << warning << "\n";
    if (!result_error.empty()) {
        err << "renkei load: " << result_error << "\n";
        return failed ? kLoadFailed : kLoadNoResult;
    }
    out << "  result: " << result.string() << "\n";
    return failed ? kLoadFailed : kLoadDone;
}

} // namespace renkei::legacy_file
