// legacy-file: a municipality's 既存住基システム connected by file transfer (seed-000 §4.3: 本人確認情報
// from the 住民記録システム "via telecom line or magnetic disk"). It watches an inbox for record files,
// reads each as its vendor profile says (profiles/*.toml), notifies its CS (juki, role cs) of every
// record in juki.IdentityUpdate batches, and writes a result file per input: each record accepted
// or rejected with the field and the rule, and later what J-LIS recorded. Files move to processed/
// or failed/ atomically; progress is durable (state.hpp), so a restart resumes where it stopped.
// Settings and file formats: README.md beside this folder's CMakeLists.txt.
#include "files.hpp"
#include "state.hpp"

#include <juki.capnp.h>
#include <renkei/legacy_file/parser.hpp>
#include <renkei/legacy_file/to_juki.hpp>
#include <renkei/sdk.hpp>
#include <renkei/validate.hpp>

#include <openssl/rand.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

namespace {

namespace fs = std::filesystem;
namespace lf = renkei::legacy_file;
namespace juki = renkei::juki;
using renkei::sdk::Error;

constexpr uint32_t kMaxBatch = 10000; // juki's limit per IdentityUpdate

class LegacyFile : public renkei::sdk::Plugin {
public:
    using Plugin::Plugin;

    void start() override {
        node_ = host().node_id();
        municipality_ = host().config_or("municipality", node_.rfind("muni:", 0) == 0 ? node_.substr(5) : "");
        if (auto r = renkei::validate::local_gov_code("settings.municipality", municipality_); !r)
            throw Error(RENKEI_ERR_INVALID, r.message, r.field, r.rule);
        auto profile = host().config("profile");
        if (!profile) throw Error(RENKEI_ERR_INVALID, "settings.profile: required (a vendor profile, .toml)", "settings.profile");
        try {
            profile_ = lf::load_profile(*profile);
            auto table = host().config_or("gaiji_table", profile_.gaiji_table.string());
            if (!table.empty()) {
                gaiji_ = lf::load_gaiji_table(table);
                if (gaiji_->municipality != municipality_)
                    throw Error(RENKEI_ERR_INVALID, "settings.gaiji_table: " + table + " is the 外字 table of " +
                                                        gaiji_->municipality + ", not of " + municipality_,
                                "settings.gaiji_table");
            }
        } catch (const lf::ProfileError& e) {
            throw Error(RENKEI_ERR_INVALID, e.what(), "settings.profile", "legacy_file.profile");
        }
        auto dir = host().config_or("dir", "");
        auto path = [&](const char* key, const char* sub) {
            auto v = host().config(key);
            if (v) return fs::path(*v);
            if (dir.empty())
                throw Error(RENKEI_ERR_INVALID, std::string("settings.") + key + ": required when settings.dir is not set",
                            std::string("settings.") + key);
            return fs::path(dir) / sub;
        };
        inbox_ = path("inbox", "inbox");
        processed_ = path("processed", "processed");
        failed_ = path("failed", "failed");
        results_ = path("results", "results");
        work_ = path("work", "work");
        auto state = path("state", "state.db");
        metrics_file_ = path("metrics_file", "legacy-file.prom");
        max_file_bytes_ = number("max_file_bytes", 64ull << 20, 1, 1ull << 40);
        batch_ = static_cast<uint32_t>(number("batch", 500, 1, kMaxBatch));
        window_ = number("window", 4, 1, 1000);
        scan_ms_ = static_cast<int64_t>(number("scan_interval_ms", 1000, 10, 3600000));
        settle_ms_ = static_cast<int64_t>(number("settle_ms", 500, 0, 3600000));
        resend_ms_ = static_cast<int64_t>(number("resend_after_ms", 30000, 100, 86400000));
        jlis_resend_ms_ = static_cast<int64_t>(number("jlis_resend_after_ms", 1800000, 100, 86400000));
        progress_ms_ = static_cast<int64_t>(number("progress_interval_ms", 5000, 100, 3600000));
        operator_id_ = host().config_or("operator_id", "legacy-file");
        for (auto& d : {inbox_, processed_, failed_, results_, work_}) fs::create_directories(d);
        state_ = std::make_unique<lf::State>(state);
        host().info("legacy-file " + municipality_ + ": profile " + profile_.name + " (" + profile_.source + "), inbox " +
                    inbox_.string() + (gaiji_ ? ", 外字 table " + gaiji_->source + " (" + std::to_string(gaiji_->map.size()) + " characters)" : ""));
        worker_ = std::thread([this] { run(); });
    }

    void stop() override {
        {
            std::lock_guard lock(m_);
            stopping_ = true;
        }
        cv_.notify_all();
        if (worker_.joinable()) worker_.join();
    }

    void handle(const renkei::sdk::Message& m) override {
        const std::string type = m.type();
        if (type == "juki.UpdateResult") {
            auto p = m.parse<juki::UpdateCountList>();
            auto l = p.get();
            auto batch = state_->batch_by_id(l.getBatchId());
            if (!batch) {
                host().warn("legacy-file: 更新件数リスト for batch " + std::string(l.getBatchId()) + ", which this adapter never sent");
                return;
            }
            std::vector<lf::Refused> refused;
            for (auto r : l.getRejected())
                refused.push_back({r.getIndex(), r.getField(), r.getRule(), r.getMessage()});
            std::string by = l.getRecordedBy();
            if (by == node_) state_->cs_answer(batch->first, batch->second, by, refused);
            else state_->later_answer(batch->first, batch->second, by, l.getRelayedFor().size() > 0 || by.rfind("jlis:", 0) == 0, refused);
        } else if (type == "juki.IdentityUpdate.Fault") {
            auto e = m.envelope();
            auto c = e.getCorrelationId();
            auto batch = state_->batch_by_envelope(std::vector<uint8_t>(c.begin(), c.end()));
            auto f = e.getFault();
            std::string text = f.getMessage();
            host().error("legacy-file: the CS refused a batch: " + text);
            if (!batch) return;
            if (f.getCode() == RENKEI_ERR_RETRY) return; // sent again after resend_after_ms
            auto count = 0u;
            for (auto& b : state_->batches(batch->first))
                if (b.chunk == batch->second) count = b.count;
            std::vector<lf::Refused> all;
            for (uint32_t i = 0; i < count; ++i)
                all.push_back({i, f.getField().size() ? std::string(f.getField()) : "batch",
                               f.getRule().size() ? std::string(f.getRule()) : "fault", text});
            state_->cs_answer(batch->first, batch->second, e.getFrom(), all);
        } else {
            throw Error(RENKEI_ERR_UNSUPPORTED, "legacy-file does not handle " + type, "type");
        }
        cv_.notify_all();
    }

private:
    uint64_t number(const char* key, uint64_t fallback, uint64_t lo, uint64_t hi) {
        auto v = host().config(key);
        if (!v) return fallback;
        uint64_t out = 0;
        bool ok = !v->empty() && v->size() <= 15;
        for (char c : *v) ok = ok && c >= '0' && c <= '9';
        if (ok) out = std::stoull(*v);
        if (!ok || out < lo || out > hi)
            throw Error(RENKEI_ERR_INVALID,
                        std::string("settings.") + key + ": must be an integer in " + std::to_string(lo) + ".." + std::to_string(hi),
                        std::string("settings.") + key);
        return out;
    }

    // Sleeps up to `ms` unless stopping; false when stopping.
    bool wait(int64_t ms) {
        std::unique_lock lock(m_);
        cv_.wait_for(lock, std::chrono::milliseconds(ms), [&] { return stopping_; });
        return !stopping_;
    }
    bool stopping() {
        std::lock_guard lock(m_);
        return stopping_;
    }

    void run() {
        try {
            recover();
        } catch (const std::exception& e) {
            host().error(std::string("legacy-file: recovery failed: ") + e.what());
        }
        while (!stopping()) {
            int64_t pause = scan_ms_;
            try {
                finish_jlis();
                auto sending = state_->files("sending");
                if (!sending.empty()) {
                    pump(sending.front());
                    pause = std::min<int64_t>(pause, 200);
                } else {
                    scan();
                }
                progress(false);
            } catch (const std::exception& e) {
                host().error(std::string("legacy-file: ") + e.what());
                pause = std::max<int64_t>(pause, 1000);
            }
            std::unique_lock lock(m_);
            cv_.wait_for(lock, std::chrono::milliseconds(pause), [&] { return stopping_; });
        }
        progress(true);
    }

    // After a restart: a file taken from the inbox but not yet in the state (killed between the
    // rename and the commit) is read again from work/; files already done finish their move.
    void recover() {
        for (auto phase : {"recorded", "complete"})
            for (auto& f : state_->files(phase))
                if (fs::exists(f.work_path)) finish_move(f);
        std::vector<fs::path> orphans;
        for (auto& e : fs::directory_iterator(work_))
            if (e.is_regular_file() && e.path().filename().string()[0] != '.') orphans.push_back(e.path());
        std::sort(orphans.begin(), orphans.end());
        for (auto& p : orphans) {
            std::string fn = p.filename().string();
            auto dash = fn.find('-');
            std::string prefix = fn.substr(0, dash);
            bool known = false;
            for (auto phase : {"sending", "recorded", "complete"})
                for (auto& f : state_->files(phase)) known = known || f.work_path == p.string();
            if (!known) take(p, dash == std::string::npos ? fn : fn.substr(dash + 1), true);
        }
    }

    static bool ignored(const std::string& name) {
        auto ends = [&](const char* s) {
            std::string x(s);
            return name.size() >= x.size() && name.compare(name.size() - x.size(), x.size(), x) == 0;
        };
        return name.empty() || name[0] == '.' || ends(".tmp") || ends(".part");
    }

    void scan() {
        std::vector<std::pair<fs::file_time_type, fs::path>> found;
        for (auto& e : fs::directory_iterator(inbox_)) {
            std::error_code ec;
            if (!e.is_regular_file(ec) || ignored(e.path().filename().string())) continue;
            auto t = e.last_write_time(ec);
            if (!ec) found.emplace_back(t, e.path());
        }
        if (found.empty()) return;
        std::sort(found.begin(), found.end());
        take(found.front().second, found.front().second.filename().string(), false);
    }

    // Reads, checks and claims one input file (from the inbox, or an orphan in work/).
    void take(const fs::path& path, const std::string& name, bool from_work) {
        // While a file settles, the metrics name it (an operator sees what is being read).
        auto sr = lf::read_stable(path, max_file_bytes_, from_work ? 0 : settle_ms_, [this, &name](int64_t ms) {
            reading_ = name;
            progress(true);
            return wait(ms);
        });
        reading_.clear();
        auto now = host().now_unix_ms();
        if (sr.outcome == lf::StableRead::vanished) return;
        if (sr.outcome == lf::StableRead::too_big)
            return refuse(path, name, {"file", "file.too_big",
                                       "file: " + sr.detail + ", more than max_file_bytes (" + std::to_string(max_file_bytes_) +
                                           "); nothing of it was applied: split it and resubmit"});
        if (sr.outcome == lf::StableRead::replaced)
            return refuse(path, name, {"file", "file.replaced",
                                       "file: replaced while it was being read (" + sr.detail +
                                           "); nothing of it was applied: write files under a temporary name and rename "
                                           "them into the inbox, then resubmit"});
        if (auto earlier = state_->file(sr.digest))
            return refuse(path, name, {"file", "file.duplicate",
                                       "file: the same content (SHA-256 " + sr.digest.substr(0, 16) + "...) as " + earlier->name +
                                           ", taken before; nothing of it was applied again"},
                          sr.digest);
        lf::ParseOptions o;
        o.municipalities = {municipality_};
        o.gaiji = gaiji_ ? &*gaiji_ : nullptr;
        auto parsed = lf::parse(sr.bytes, profile_, o);
        if (parsed.failure) return refuse(path, name, *parsed.failure, sr.digest);

        // Claim it: out of the inbox first (a file of the same name may arrive), then the state.
        fs::path work = from_work ? path : work_ / (sr.digest.substr(0, 16) + "-" + name);
        if (!from_work) {
            if (::renameat2(AT_FDCWD, path.c_str(), AT_FDCWD, work.c_str(), RENAME_NOREPLACE) != 0)
                throw std::runtime_error("cannot move " + path.string() + " to " + work.string() + ": " + std::strerror(errno));
        }
        lf::FileRow f;
        f.digest = sr.digest;
        f.name = name;
        f.work_path = work.string();
        f.phase = "sending";
        f.size = sr.size;
        f.records = static_cast<uint32_t>(parsed.records.size() + parsed.rejected.size());
        f.claimed_ms = now;
        std::vector<lf::RecordRow> rows;
        for (auto& r : parsed.rejected) {
            lf::RecordRow row;
            row.line = r.line;
            row.code = r.resident_code;
            row.outcome = "rejected";
            row.by = "adapter";
            row.field = r.field;
            row.rule = r.rule;
            row.message = r.message;
            rows.push_back(std::move(row));
        }
        std::vector<std::pair<lf::BatchRow, std::vector<uint8_t>>> batches;
        for (size_t start = 0, chunk = 0; start < parsed.records.size(); start += batch_, ++chunk) {
            size_t n = std::min<size_t>(batch_, parsed.records.size() - start);
            capnp::MallocMessageBuilder mb;
            auto u = mb.initRoot<juki::IdentityUpdate>();
            lf::BatchRow b;
            b.chunk = static_cast<uint32_t>(chunk);
            b.batch_id = "lf-" + sr.digest.substr(0, 32) + "-" + std::to_string(chunk);
            b.count = static_cast<uint32_t>(n);
            u.setBatchId(b.batch_id);
            u.setMunicipality(municipality_);
            u.setRecordedAtMs(now);
            auto list = u.initRecords(static_cast<unsigned>(n));
            for (size_t i = 0; i < n; ++i) {
                auto& r = parsed.records[start + i];
                lf::fill(list[static_cast<unsigned>(i)], r, operator_id_);
                lf::RecordRow row;
                row.line = r.line;
                row.code = r.resident_code;
                row.chunk = static_cast<int64_t>(chunk);
                row.index = static_cast<uint32_t>(i);
                row.outcome = "pending";
                rows.push_back(std::move(row));
            }
            auto flat = capnp::messageToFlatArray(mb);
            auto bytes = flat.asBytes();
            batches.emplace_back(b, std::vector<uint8_t>(bytes.begin(), bytes.end()));
        }
        f.batches = static_cast<uint32_t>(batches.size());
        state_->claim(f, rows, batches);
        sent_at_.clear();
        started_ms_ = 0;
        host().info("legacy-file: took " + name + ": " + std::to_string(f.records) + " records, " +
                    std::to_string(parsed.rejected.size()) + " refused here, " + std::to_string(batches.size()) +
                    " batches of at most " + std::to_string(batch_));
    }

    // A whole file is unusable: its result says why, it moves to failed/, nothing of it was sent.
    void refuse(const fs::path& path, const std::string& name, const lf::FileFailure& why, const std::string& digest = {}) {
        std::string suffix = digest.empty() ? std::to_string(host().now_unix_ms()) : digest.substr(0, 12);
        auto target = predict(failed_, name, suffix);
        std::ostringstream out;
        out << "# legacy-file result (renkei)\n# file: " << name << "\n# sha256: " << (digest.empty() ? "-" : digest)
            << "\n# profile: " << profile_.name << "\n# status: failed\n# error: " << lf::tsv_cell(why.field) << "\t"
            << lf::tsv_cell(why.rule) << "\t" << lf::tsv_cell(why.message) << "\n";
        if (why.line) out << "# at: line " << why.line << ", byte " << why.byte << "\n";
        out << "# records: 0; accepted: 0; rejected: 0\n";
        lf::write_atomic(results_ / (target.filename().string() + ".result"), out.str());
        std::error_code ec;
        if (fs::exists(path, ec)) lf::move_into(path, failed_, target.filename().string(), suffix);
        ++failed_files_;
        host().warn("legacy-file: " + name + " failed: " + why.message + " (" + why.rule + "); moved to " + target.string());
    }

    static fs::path predict(const fs::path& dir, const std::string& name, const std::string& suffix) {
        for (int attempt = 0;; ++attempt) {
            std::string c = attempt == 0 ? name : attempt == 1 ? name + "." + suffix : name + "." + suffix + "." + std::to_string(attempt);
            if (!fs::exists(dir / c)) return dir / c;
        }
    }

    void send(const lf::FileRow& f, const lf::BatchRow& b) {
        auto payload = state_->payload(f.digest, b.chunk);
        std::vector<uint8_t> id(16);
        if (RAND_bytes(id.data(), static_cast<int>(id.size())) != 1) throw std::runtime_error("RAND_bytes failed");
        state_->sent(f.digest, b.chunk, host().now_unix_ms(), id);
        capnp::MallocMessageBuilder mb;
        auto e = mb.initRoot<renkei::schema::Envelope>();
        e.setId(kj::arrayPtr(id.data(), id.size()));
        e.setType("juki.IdentityUpdate");
        e.setTo(node_);
        e.setPurpose("juki-30-6");
        e.setOperatorId(operator_id_);
        e.setPayload(kj::arrayPtr(payload.data(), payload.size()));
        host().send(mb);
    }

    // Sends what is due of the file being imported; finishes it once the CS answered every batch.
    void pump(const lf::FileRow& f) {
        if (active_ != f.digest) {
            active_ = f.digest;
            sent_at_.clear();
            started_ms_ = 0;
        }
        auto now = host().now_unix_ms();
        if (!started_ms_) {
            started_ms_ = now;
            done_at_start_ = f.records - state_->pending(f.digest);
        }
        auto batches = state_->batches(f.digest);
        size_t outstanding = 0;
        bool all = true;
        for (auto& b : batches) {
            if (b.cs) continue;
            all = false;
            auto it = sent_at_.find(b.chunk);
            if (it != sent_at_.end() && now - it->second < resend_ms_) {
                ++outstanding;
                continue;
            }
            if (outstanding >= window_) break;
            if (it != sent_at_.end()) host().warn("legacy-file: no answer to batch " + b.batch_id + " yet; sending it again");
            send(f, b);
            sent_at_[b.chunk] = now;
            ++outstanding;
        }
        if (all) finish_cs(f);
    }

    std::string result_text(const lf::FileRow& f, const std::string& status, const std::string& shown_name) {
        auto c = state_->counts(f.digest);
        std::ostringstream out;
        out << "# legacy-file result (renkei)\n# file: " << shown_name << "\n# sha256: " << f.digest
            << "\n# profile: " << profile_.name << "\n# status: " << status << "\n# records: " << c.total
            << "; accepted: " << c.accepted << "; rejected: " << c.rejected << "; J-LIS recorded: " << c.jlis_recorded
            << "; J-LIS rejected: " << c.jlis_rejected << "\n" << lf::kResultColumns;
        for (auto& r : state_->records(f.digest)) {
            std::string jlis = r.jlis;
            if (jlis.empty()) jlis = r.by == "adapter" || r.by == node_ || r.outcome == "pending" ? "-" : "pending";
            if (jlis == "-" && r.outcome == "accepted") jlis = "pending";
            out << lf::result_line(r.line, r.code, r.outcome, r.by, r.field, r.rule, r.message, jlis);
        }
        return out.str();
    }

    void finish_cs(const lf::FileRow& f) {
        auto target = predict(processed_, f.name, f.digest.substr(0, 12));
        auto name = target.filename().string();
        lf::write_atomic(results_ / (name + ".result"), result_text(f, "recorded", name));
        state_->set_phase(f.digest, "recorded", host().now_unix_ms(), target.string());
        auto row = *state_->file(f.digest);
        finish_move(row);
        auto c = state_->counts(f.digest);
        auto secs = std::max<int64_t>(1, host().now_unix_ms() - f.claimed_ms) / 1000.0;
        ++processed_files_;
        accepted_total_ += c.accepted;
        rejected_total_ += c.rejected;
        host().info("legacy-file: " + f.name + " done: " + std::to_string(c.total) + " records, " + std::to_string(c.accepted) +
                    " recorded by the CS, " + std::to_string(c.rejected) + " rejected, in " + std::to_string(secs).substr(0, 6) +
                    " s; moved to " + row.final_path + "; J-LIS's answers follow in " +
                    (results_ / (name + ".result")).string());
        active_.clear();
        progress(true);
    }

    void finish_move(lf::FileRow& f) {
        if (!fs::exists(f.work_path)) return;
        fs::path want(f.final_path);
        auto moved = lf::move_into(f.work_path, want.parent_path(), want.filename().string(), f.digest.substr(0, 12));
        if (moved != want) { // the name was taken meanwhile: the result follows the file
            state_->set_phase(f.digest, f.phase, host().now_unix_ms(), moved.string());
            f.final_path = moved.string();
            lf::write_atomic(results_ / (moved.filename().string() + ".result"),
                             result_text(f, f.phase, moved.filename().string()));
        }
    }

    // Files the CS recorded whose every batch J-LIS has answered: the result gets J-LIS's figures.
    void finish_jlis() {
        auto now = host().now_unix_ms();
        for (auto& f : state_->files("recorded")) {
            auto batches = state_->batches(f.digest);
            if (!std::all_of(batches.begin(), batches.end(), [](auto& b) { return b.jlis; })) {
                // J-LIS's list for a batch can be lost on its way here (the CS's host stopped just
                // after the CS confirmed it): after jlis_resend_after_ms the batch goes to the CS again
                // under its id; every tier answers it as before and passes J-LIS's list on again.
                for (auto& b : batches)
                    if (b.cs && !b.jlis && now - b.sent_ms >= jlis_resend_ms_) {
                        host().warn("legacy-file: no answer from J-LIS to batch " + b.batch_id + " yet; asking again");
                        send(f, b);
                    }
                continue;
            }
            auto name = fs::path(f.final_path).filename().string();
            lf::write_atomic(results_ / (name + ".result"), result_text(f, "complete", name));
            state_->set_phase(f.digest, "complete", host().now_unix_ms());
            state_->drop_payloads(f.digest);
            auto c = state_->counts(f.digest);
            host().info("legacy-file: " + f.name + ": J-LIS recorded " + std::to_string(c.jlis_recorded) + ", rejected " +
                        std::to_string(c.jlis_rejected) + " (" + std::to_string(c.total) + " records in the file)");
        }
    }

    // Records done, rate and time left of the file being imported: in the log every
    // progress_interval_ms and in the metrics file (Prometheus text, node_exporter textfile format).
    void progress(bool force) {
        auto now = host().now_unix_ms();
        if (!force && now - last_progress_ms_ < progress_ms_) return;
        last_progress_ms_ = now;
        std::ostringstream m;
        m << "# HELP renkei_legacy_file_records Records of the file being imported.\n"
             "# TYPE renkei_legacy_file_records gauge\n";
        std::string line;
        if (!active_.empty()) {
            if (auto f = state_->file(active_)) {
                uint64_t total = f->records, pending = state_->pending(active_), done = total - pending;
                double secs = std::max<int64_t>(1, now - started_ms_) / 1000.0;
                double rate = done > done_at_start_ ? (done - done_at_start_) / secs : 0.0;
                double left = rate > 0 ? pending / rate : -1;
                std::string label = "file=\"" + lf::prom_label(f->name) + "\"";
                m << "renkei_legacy_file_records{" << label << ",state=\"total\"} " << total << "\n"
                  << "renkei_legacy_file_records{" << label << ",state=\"done\"} " << done << "\n"
                  << "# TYPE renkei_legacy_file_records_per_second gauge\nrenkei_legacy_file_records_per_second{" << label
                  << "} " << rate << "\n# TYPE renkei_legacy_file_seconds_left gauge\nrenkei_legacy_file_seconds_left{"
                  << label << "} " << left << "\n";
                char text[256];
                std::snprintf(text, sizeof text, "%llu/%llu records (%.0f%%), %.1f records/s, %s left",
                              static_cast<unsigned long long>(done), static_cast<unsigned long long>(total),
                              total ? 100.0 * done / total : 100.0, rate,
                              left < 0 ? "unknown time" : ("about " + std::to_string(static_cast<long long>(left + 0.5)) + " s").c_str());
                line = "legacy-file: " + f->name + ": " + text;
            }
        }
        if (!reading_.empty())
            m << "# TYPE renkei_legacy_file_reading gauge\nrenkei_legacy_file_reading{file=\"" << lf::prom_label(reading_)
              << "\"} 1\n";
        m << "# TYPE renkei_legacy_file_files_total counter\n"
          << "renkei_legacy_file_files_total{outcome=\"processed\"} " << processed_files_ << "\n"
          << "renkei_legacy_file_files_total{outcome=\"failed\"} " << failed_files_ << "\n"
          << "# TYPE renkei_legacy_file_records_total counter\n"
          << "renkei_legacy_file_records_total{outcome=\"accepted\"} " << accepted_total_ << "\n"
          << "renkei_legacy_file_records_total{outcome=\"rejected\"} " << rejected_total_ << "\n";
        try {
            lf::write_atomic(metrics_file_, m.str());
        } catch (const std::exception& e) {
            host().warn(std::string("legacy-file: metrics file: ") + e.what());
        }
        if (!line.empty()) host().info(line);
    }

    std::string node_, municipality_, operator_id_;
    lf::Profile profile_;
    std::optional<lf::GaijiTable> gaiji_;
    fs::path inbox_, processed_, failed_, results_, work_, metrics_file_;
    uint64_t max_file_bytes_ = 0, window_ = 4;
    uint32_t batch_ = 500;
    int64_t scan_ms_ = 1000, settle_ms_ = 500, resend_ms_ = 30000, jlis_resend_ms_ = 1800000, progress_ms_ = 5000;
    std::unique_ptr<lf::State> state_;
    // The worker's own (not shared with handle):
    std::string active_, reading_;
    std::map<uint32_t, int64_t> sent_at_;
    int64_t started_ms_ = 0, last_progress_ms_ = 0;
    uint64_t done_at_start_ = 0, processed_files_ = 0, failed_files_ = 0, accepted_total_ = 0, rejected_total_ = 0;
    std::mutex m_;
    std::condition_variable cv_;
    bool stopping_ = false;
    std::thread worker_;
};

} // namespace

RENKEI_PLUGIN(LegacyFile, "legacy-file", "0.1.0", RENKEI_KIND_ADAPTER, "juki.UpdateResult", "juki.IdentityUpdate.Fault")
