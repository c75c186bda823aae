// mock-legacy-juki: a municipality's 既存住基システム (住民記録システム) for testing and demos. It
// generates synthetic residents and 異動 events with a deterministic seed, at a configurable rate,
// and notifies its own CS (juki, role cs) as the real system would:
//   1. `residents` births: asks J-LIS for each 個人番号 (juki.NumberRequest), then notifies the
//      births in batches of `batch` (juki.IdentityUpdate to this node's CS);
//   2. `events` further 異動 at `rate` per second: 転居 (address), 記載事項変更 (a name with 外字,
//      carried as a private-use character and counted), 死亡, 転出 (to `move_to`, when set).
// It keeps what every tier answered (juki.UpdateResult) and logs it. Settings: municipality,
// seed (1), residents (100), events (0), rate (100), batch (100), move_to ("").
#include <juki.capnp.h>
#include <renkei/juki/resident.hpp>

#include <renkei/sdk.hpp>
#include <renkei/validate.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <random>
#include <thread>

namespace {

using renkei::sdk::Error;
namespace juki = renkei::juki;
namespace schema = renkei::schema;

const char* const kFamily[][2] = {{"佐藤", "サトウ"}, {"鈴木", "スズキ"}, {"高橋", "タカハシ"}, {"田中", "タナカ"},
                                  {"伊藤", "イトウ"}, {"渡辺", "ワタナベ"}, {"山本", "ヤマモト"}, {"中村", "ナカムラ"}};
const char* const kGiven[][2] = {{"太郎", "タロウ"}, {"花子", "ハナコ"}, {"健", "ケン"}, {"陽菜", "ヒナ"},
                                 {"翔", "ショウ"}, {"結衣", "ユイ"}, {"蓮", "レン"}, {"葵", "アオイ"}};

struct Resident : juki::ResidentFields {
    bool alive = true;
};

class Legacy : public renkei::sdk::Plugin {
public:
    using Plugin::Plugin;

    void start() override {
        node_ = host().node_id();
        municipality_ = host().config_or("municipality", node_.size() > 5 ? node_.substr(5) : "");
        if (auto r = renkei::validate::local_gov_code("settings.municipality", municipality_); !r)
            throw Error(RENKEI_ERR_INVALID, r.message, r.field, r.rule);
        rng_.seed(std::stoull(host().config_or("seed", "1")));
        residents_goal_ = std::stoul(host().config_or("residents", "100"));
        events_goal_ = std::stoul(host().config_or("events", "0"));
        rate_ = std::max(1.0, std::stod(host().config_or("rate", "100")));
        batch_ = std::max<size_t>(1, std::stoul(host().config_or("batch", "100")));
        move_to_ = host().config_or("move_to", "");
        if (residents_goal_ > 999999) throw Error(RENKEI_ERR_INVALID, "settings.residents: at most 999999", "settings.residents");
        for (size_t i = 0; i < residents_goal_; ++i) residents_.push_back(make_resident(i));
        worker_ = std::thread([this] { run(); });
    }

    void stop() override {
        {
            std::lock_guard lock(m_);
            stopping_ = true;
        }
        cv_.notify_all();
        if (worker_.joinable()) worker_.join();
        host().info("mock-legacy-juki " + municipality_ + ": " + summary());
    }

    void handle(const renkei::sdk::Message& m) override {
        std::lock_guard lock(m_);
        if (m.type() == "juki.NumberAssigned") {
            auto p = m.parse<juki::NumberAssigned>();
            auto a = p.get();
            auto it = by_code_.find(a.getResidentCode());
            if (it != by_code_.end() && residents_[it->second].my_number.empty()) {
                residents_[it->second].my_number = a.getMyNumber();
                ++numbered_;
            }
        } else if (m.type() == "juki.UpdateResult") {
            auto p = m.parse<juki::UpdateCountList>();
            auto l = p.get();
            auto& t = tiers_[l.getRecordedBy()];
            t.first += l.getRecorded();
            t.second += l.getRejected().size();
        } else if (m.type() == "juki.IdentityUpdate.Fault" || m.type() == "juki.NumberRequest.Fault") {
            ++faults_;
            host().warn("mock-legacy-juki: " + m.type() + ": " + std::string(m.envelope().getFault().getMessage()));
        } else {
            throw Error(RENKEI_ERR_UNSUPPORTED, "mock-legacy-juki does not handle " + m.type(), "type");
        }
        cv_.notify_all();
    }

private:
    std::string pick(const char* const (*table)[2], size_t n, int which, size_t& index) {
        index = rng_() % n;
        return table[index][which];
    }

    Resident make_resident(size_t i) {
        Resident r;
        r.year = 2026;
        r.municipality = municipality_;
        char code[16];
        std::snprintf(code, sizeof code, "%s%06zu", municipality_.substr(0, 5).c_str(), i);
        r.code = code;
        size_t f = rng_() % 8, g = rng_() % 8;
        r.kanji = std::string(kFamily[f][0]) + "　" + kGiven[g][0];
        r.kana = std::string(kFamily[f][1]) + "　" + kGiven[g][1];
        r.month = 1 + static_cast<int>(rng_() % 12);
        r.day = 1 + static_cast<int>(rng_() % 28);
        r.sex = rng_() % 2 ? schema::Sex::MALE : schema::Sex::FEMALE;
        r.address = "市内" + std::to_string(1 + rng_() % 9) + "丁目" + std::to_string(1 + rng_() % 30) + "番";
        by_code_[r.code] = i;
        return r;
    }

    // Sends outside the lock: the host may deliver the CS's answer on this very thread.
    void notify(std::vector<std::pair<size_t, juki::ChangeReason>>& pending, std::unique_lock<std::mutex>& lock) {
        if (pending.empty()) return;
        capnp::MallocMessageBuilder mb;
        auto u = mb.initRoot<juki::IdentityUpdate>();
        u.setBatchId(municipality_ + "-" + std::to_string(++batches_));
        u.setMunicipality(municipality_);
        u.setRecordedAtMs(host().now_unix_ms());
        auto list = u.initRecords(static_cast<unsigned>(pending.size()));
        for (size_t i = 0; i < pending.size(); ++i) {
            juki::fill_record(list[i], residents_[pending[i].first], pending[i].second);
            list[i].setOperatorId("mock-legacy-juki");
        }
        sent_ += pending.size();
        pending.clear();
        auto flat = capnp::messageToFlatArray(mb);
        lock.unlock();
        host().send("juki.IdentityUpdate", node_, flat.asBytes(), "juki-30-6");
        lock.lock();
    }

    void run() {
        std::unique_lock lock(m_);
        // 1. numbers for the births
        std::vector<std::string> codes;
        for (auto& r : residents_) codes.push_back(r.code);
        lock.unlock();
        for (auto& code : codes) {
            capnp::MallocMessageBuilder mb;
            mb.initRoot<juki::NumberRequest>().setResidentCode(code);
            auto flat = capnp::messageToFlatArray(mb);
            host().send("juki.NumberRequest", "jlis:juki", flat.asBytes(), "bango-8");
        }
        lock.lock();
        cv_.wait_for(lock, std::chrono::seconds(60), [&] { return stopping_ || numbered_ == residents_.size(); });
        std::vector<std::pair<size_t, juki::ChangeReason>> pending;
        for (size_t i = 0; i < residents_.size() && !stopping_; ++i) {
            if (residents_[i].my_number.empty()) continue;
            pending.emplace_back(i, juki::ChangeReason::BIRTH);
            if (pending.size() == batch_) notify(pending, lock);
        }
        notify(pending, lock);
        // 2. 異動 at the rate
        auto interval = std::chrono::duration<double>(1.0 / rate_);
        auto next = std::chrono::steady_clock::now();
        for (size_t e = 0; e < events_goal_ && !stopping_; ++e) {
            next += std::chrono::duration_cast<std::chrono::steady_clock::duration>(interval);
            cv_.wait_until(lock, next, [&] { return stopping_; });
            if (stopping_) break;
            size_t i = rng_() % residents_.size();
            auto& r = residents_[i];
            if (!r.alive || r.my_number.empty()) continue;
            auto kind = rng_() % 10;
            juki::ChangeReason reason;
            if (kind < 5) {
                r.address = "市内" + std::to_string(1 + rng_() % 9) + "丁目" + std::to_string(1 + rng_() % 30) + "番";
                reason = juki::ChangeReason::MOVE_WITHIN;
            } else if (kind < 8) {
                // A name with 外字: the municipality's 外字 table maps it to a private-use character.
                size_t g = rng_() % 8;
                r.kanji = r.kanji.substr(0, r.kanji.find("　")) + "　\xEE\x80\x80" + kGiven[g][0]; // U+E000
                r.kana = r.kana.substr(0, r.kana.find("　")) + "　" + kGiven[g][1];
                r.gaiji = 1;
                reason = juki::ChangeReason::ITEM_CHANGE;
            } else {
                r.alive = false;
                reason = move_to_.empty() || kind == 8 ? juki::ChangeReason::DEATH : juki::ChangeReason::MOVE_OUT;
            }
            pending.emplace_back(i, reason);
            ++events_;
            if (pending.size() >= batch_) notify(pending, lock);
        }
        notify(pending, lock);
    }

    std::string summary() {
        std::lock_guard lock(m_);
        std::string s = std::to_string(residents_.size()) + " residents, " + std::to_string(events_) + " 異動, " +
                        std::to_string(sent_) + " records notified in " + std::to_string(batches_) + " batches;";
        for (auto& [who, t] : tiers_)
            s += " " + who + " recorded " + std::to_string(t.first) + " refused " + std::to_string(t.second) + ";";
        if (faults_) s += " " + std::to_string(faults_) + " faults";
        return s;
    }

    std::string node_, municipality_, move_to_;
    std::mt19937_64 rng_;
    size_t residents_goal_ = 0, events_goal_ = 0, batch_ = 100;
    double rate_ = 100;
    std::vector<Resident> residents_;
    std::map<std::string, size_t> by_code_;
    std::map<std::string, std::pair<uint64_t, uint64_t>> tiers_;
    size_t numbered_ = 0, sent_ = 0, batches_ = 0, events_ = 0, faults_ = 0;
    std::mutex m_;
    std::condition_variable cv_;
    bool stopping_ = false;
    std::thread worker_;
};

} // namespace

RENKEI_PLUGIN(Legacy, "mock-legacy-juki", "0.1.0", RENKEI_KIND_ADAPTER, "juki.NumberAssigned", "juki.UpdateResult",
              "juki.IdentityUpdate.Fault", "juki.NumberRequest.Fault")
