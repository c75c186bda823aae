// juki: the 住基ネット business plugin. One plugin, a role per node (`[plugin.settings] role`):
//   cs        a municipality's 市町村CS: records what its 住民記録システム notifies, sends it up the
//             chain, reconciles the 更新件数リスト, exchanges CS-to-CS notices, answers 広域交付
//   pref      a 都道府県サーバ: records, answers with its count list, forwards to J-LIS promptly,
//             passes J-LIS's count list back, answers queries for its residents
//   national  J-LIS: 機構保存本人確認情報ファイル with the PIA checks, 個人番号 generation, queries
//             and provision (with the provision record), 利用者情報照会, consistency checks
// ../README.md lists every message type with its sender, receiver and legal basis.
#include "identity_store.hpp"
#include "numbers.hpp"
#include "records.hpp"
#include "settings.hpp"

#include <juki.capnp.h>

#include <renkei/sdk.hpp>
#include <renkei/validate.hpp>

#include <algorithm>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <set>
#include <thread>

namespace {

using namespace renkei::juki;
using renkei::sdk::Error;
namespace schema = renkei::schema;

std::string hex(kj::ArrayPtr<const kj::byte> b) {
    static const char d[] = "0123456789abcdef";
    std::string s;
    for (auto c : b) {
        s.push_back(d[c >> 4]);
        s.push_back(d[c & 15]);
    }
    return s;
}

std::string kind_of(const std::string& node) { return node.substr(0, node.find(':')); }

std::string join(const std::vector<std::string>& v, const char* sep = ",") {
    std::string out;
    for (auto& s : v) out += (out.empty() ? "" : sep) + s;
    return out;
}

std::vector<std::string> split(const std::string& s) {
    std::vector<std::string> out;
    size_t start = 0;
    while (start <= s.size()) {
        auto end = s.find(',', start);
        if (end == std::string::npos) end = s.size();
        auto item = s.substr(start, end - start);
        item.erase(0, item.find_first_not_of(' '));
        item.erase(item.find_last_not_of(' ') + 1);
        if (!item.empty()) out.push_back(item);
        start = end + 1;
    }
    return out;
}

bool matches(const std::string& pattern, const std::string& value) {
    if (pattern == "*") return true;
    if (!pattern.empty() && pattern.back() == '*') return value.rfind(pattern.substr(0, pattern.size() - 1), 0) == 0;
    return pattern == value;
}

// The query conditions a key uses, by field name (the names the access policy's rules use).
std::set<std::string> conditions_of(QueryKey::Reader k) {
    std::set<std::string> c;
    if (k.getMyNumber().size() > 0) c.insert("myNumber");
    if (k.getResidentCode().size() > 0) c.insert("residentCode");
    if (k.getName().size() > 0) c.insert("name");
    if (k.getDateOfBirth().getYear() != 0) c.insert("dateOfBirth");
    if (k.getSex() != schema::Sex::UNKNOWN) c.insert("sex");
    if (k.getAddress().size() > 0) c.insert("address");
    return c;
}

// 第4 4(5): query conditions are limited. A key must identify a person by a number, or by the
// name together with the date of birth and sex, or the name together with the address.
bool permitted_shape(const std::set<std::string>& c) {
    auto has = [&](const char* f) { return c.count(f) > 0; };
    return has("myNumber") || has("residentCode") || (has("name") && has("dateOfBirth") && has("sex")) ||
           (has("name") && has("address"));
}

std::vector<uint8_t> flat_of(capnp::MallocMessageBuilder& mb) {
    auto words = capnp::messageToFlatArray(mb);
    auto bytes = words.asBytes();
    return {bytes.begin(), bytes.end()};
}

// Reads a flat message stored by flat_of.
template <typename T> struct Stored : renkei::sdk::Flat<T> {
    explicit Stored(const std::vector<uint8_t>& bytes) : renkei::sdk::Flat<T>(renkei::sdk::bytes_of(bytes.data(), bytes.size()), 64) {}
};

class Juki : public renkei::sdk::Plugin {
public:
    using Plugin::Plugin;

    void start() override {
        node_ = host().node_id();
        role_ = host().config_or("role", "");
        if (role_ != "cs" && role_ != "pref" && role_ != "national")
            throw Error(RENKEI_ERR_INVALID, "settings.role: '" + role_ + "' must be cs, pref or national",
                        "settings.role", "juki.role");
        StoreLocation where;
        StoreOptions o;
        try {
            where = store_location(settings());
            o = store_options(settings(), role_);
            if (role_ == "national") numbers_ = open_numbers(settings(), where);
        } catch (const SettingError& e) {
            throw Error(RENKEI_ERR_INVALID, e.what(), e.field, e.rule);
        }
        Retention r;
        r.history_ms = years("retention_history_years", 150);
        r.removed_ms = years("retention_removed_years", 150);
        r.provisions_ms = years("retention_provision_years", 7);
        store_ = open_store(where, r, o);
        if (role_ != "cs") {
            // Batch queries by 個人番号 read through one connection per core (setting query_threads).
            auto cores = std::clamp(std::thread::hardware_concurrency(), 1u, 8u);
            readers_ = store_->readers(static_cast<size_t>(number("query_threads", cores, 1, 64)));
        }
        number_affairs_ = split(host().config_or("my_number_affairs", ""));
        report_limit_ = static_cast<size_t>(number("report_limit", 1000, 1, 1000000));
        if (role_ == "cs") {
            municipality_ = host().config_or("municipality", "");
            if (auto v = renkei::validate::local_gov_code("settings.municipality", municipality_); !v)
                throw Error(RENKEI_ERR_INVALID, v.message, v.field, v.rule);
            upstream_ = host().config_or("prefecture", "");
            if (kind_of(upstream_) != "pref")
                throw Error(RENKEI_ERR_INVALID, "settings.prefecture: the CS's prefecture node (pref:NN) is required",
                            "settings.prefecture");
        } else if (role_ == "pref") {
            upstream_ = host().config_or("national", "jlis:juki");
        }
        erase_interval_ms_ = static_cast<int64_t>(number("erase_interval_hours", 24, 1, 24 * 365)) * 3600 * 1000;
        eraser_ = std::thread([this] { erase_loop(); });
        host().info("juki role " + role_ + " on " + node_ + ", store " + store_->describe() + // no password
                    (numbers_ ? ", 個人番号 registry " + numbers_->describe() : std::string()));
    }

    void stop() override {
        {
            std::lock_guard lock(mutex_);
            stopping_ = true;
        }
        wake_.notify_all();
        if (eraser_.joinable()) eraser_.join();
    }

    void handle(const renkei::sdk::Message& m) override {
        std::lock_guard lock(mutex_);
        const std::string t = m.type();
        const std::string from = m.from();
        const bool local = from == node_;
        if (t == "juki.IdentityUpdate") {
            if (role_ == "cs" && !local)
                throw Error(RENKEI_ERR_DENIED, "a CS takes 本人確認情報 only from its own 住民記録システム, not from " + from);
            if (role_ == "pref" && kind_of(from) != "muni")
                throw Error(RENKEI_ERR_DENIED, "a prefecture takes 本人確認情報 only from municipalities, not from " + from);
            if (role_ == "national" && kind_of(from) != "pref")
                throw Error(RENKEI_ERR_DENIED, "J-LIS takes 本人確認情報 only from prefectures (住基法30条の7), not from " + from);
            return update(m);
        }
        if (t == "juki.UpdateCountList" && role_ != "national") return count_list(m);
        if (t == "juki.StatusRequest" && local) return status(m);
        if (t == "juki.EraseExpired" && local) return erase(m);
        if (t == "juki.DisclosureRequest" && local && role_ != "cs") return disclosure(m);
        if (role_ == "national") {
            if (t == "juki.NumberRequest") return number(m);
            if (t == "juki.IdentityQuery") return query(m);
            if (t == "juki.UserInfoQuery") return user_info(m);
            if (t == "juki.ConsistencyChunk") return consistency_chunk(m);
        }
        if (role_ == "pref" && t == "juki.IdentityQuery") return query(m);
        if (role_ == "cs") {
            if (t == "juki.MoveInNotice" || t == "juki.RecordNotice" || t == "juki.MoveOutCertificate")
                return notice(m);
            if (t == "juki.CopyRequest") return copy_request(m);
            if (t == "juki.ConsistencyStart" && local) return consistency_start(m);
        }
        throw Error(RENKEI_ERR_UNSUPPORTED, "juki (" + role_ + ") does not handle " + t + " from " + from, "type");
    }

private:
    // This instance's [plugin.settings], as settings.hpp reads them.
    Settings settings() {
        return [this](const char* key) { return host().config(key); };
    }

    int64_t years(const char* key, int def) { return static_cast<int64_t>(number(key, def, 0, 1000) * kYearMs); }

    // A numeric setting in [min, max]; anything else stops the start with the setting's name.
    double number(const char* key, double def, double min, double max) {
        try {
            return setting_number(settings(), key, def, min, max);
        } catch (const SettingError& e) {
            throw Error(RENKEI_ERR_INVALID, e.what(), e.field, e.rule);
        }
    }

    void send(const std::string& type, const std::string& to, capnp::MallocMessageBuilder& mb,
              const std::string& purpose, kj::ArrayPtr<const kj::byte> correlation = {}) {
        auto words = capnp::messageToFlatArray(mb);
        host().send(type, to, words.asBytes(), purpose, correlation);
    }
    void reply(const renkei::sdk::Message& m, const std::string& type, capnp::MallocMessageBuilder& mb) {
        auto words = capnp::messageToFlatArray(mb);
        host().reply(m, type, words.asBytes());
    }

    // ------------------------------------------------------------------ the update chain

    // Applies one IdentityUpdate to the store in one transaction and returns the 更新件数リスト
    // (flat bytes, saved as the answer to (sender, batch) so a redelivery gets the same one);
    // `hashes` receives the SHA-256 of every record, in order.
    std::vector<uint8_t> apply(const std::string& sender, IdentityUpdate::Reader u, std::vector<uint8_t>& hashes) {
        auto now = host().now_unix_ms();
        std::string municipality = u.getMunicipality();
        auto records = u.getRecords();
        capnp::MallocMessageBuilder mb;
        auto list = mb.initRoot<UpdateCountList>();
        list.setBatchId(u.getBatchId());
        list.setMunicipality(municipality);
        list.setRecordedBy(node_);
        list.setReceived(records.size());
        struct Refused {
            uint32_t index;
            std::string code;
            Refusal why;
        };
        std::vector<Refused> refused;
        std::vector<uint32_t> skip;
        hashes.clear();
        Store::Transaction tx(*store_);
        // J-LIS reads the registry for every record: one transaction for the batch, not one per read.
        std::optional<Transactional::Transaction> numbers_tx;
        if (numbers_) numbers_tx.emplace(*numbers_);
        {
            std::vector<std::string> codes; // the residents the checks below read
            codes.reserve(records.size());
            for (auto r : records) {
                codes.emplace_back(r.getPerson().getResidentCode().cStr());
                if (r.getReason() == ChangeReason::RESIDENT_CODE_CHANGE)
                    codes.emplace_back(r.getPreviousResidentCode().cStr());
            }
            store_->prefetch(codes);
            if (numbers_) numbers_->prefetch(codes); // number_check reads the same codes
        }
        for (uint32_t i = 0; i < records.size(); ++i) {
            auto r = records[i];
            auto canonical = canonical_bytes(r);
            auto h = sha256(canonical.data(), canonical.size());
            hashes.insert(hashes.end(), h.begin(), h.end());
            std::string code = r.getPerson().getResidentCode();
            auto why = validate_record(r, municipality);
            std::optional<Resident> current, previous;
            if (!why) {
                current = store_->get(code);
                if (r.getReason() == ChangeReason::RESIDENT_CODE_CHANGE)
                    previous = store_->get(r.getPreviousResidentCode());
                why = check_against(r, current, previous);
            }
            if (!why && numbers_) why = number_check(*numbers_, r);
            if (why) {
                refused.push_back({i, code, *why});
                skip.push_back(i);
                continue;
            }
            if (r.getReason() == ChangeReason::RESIDENT_CODE_CHANGE) {
                if (numbers_) numbers_->change_code(r.getPreviousResidentCode(), code, now);
                store_->retire_code(r.getPreviousResidentCode(), code, now);
            }
            store_->put(r, canonical, removes(r.getReason()), now, current.has_value());
        }
        list.setRecorded(records.size() - static_cast<uint32_t>(refused.size()));
        auto rej = list.initRejected(static_cast<unsigned>(refused.size()));
        for (size_t i = 0; i < refused.size(); ++i) {
            rej[i].setIndex(refused[i].index);
            rej[i].setResidentCode(refused[i].code);
            rej[i].setField(refused[i].why.field);
            rej[i].setRule(refused[i].why.rule);
            rej[i].setMessage(refused[i].why.message);
        }
        auto digest = digest_of(hashes, skip);
        list.setDigest(kj::arrayPtr(digest.data(), digest.size()));
        auto answer = flat_of(mb);
        store_->save_answer(sender, u.getBatchId(), answer, now);
        if (numbers_tx) numbers_tx->commit();
        tx.commit();
        return answer;
    }

    void update(const renkei::sdk::Message& m) {
        auto payload = m.parse<IdentityUpdate>(kReads);
        auto u = payload.get();
        std::string batch = u.getBatchId();
        if (batch.empty() || batch.size() > 200)
            throw Error(RENKEI_ERR_INVALID, "batchId: required, at most 200 characters", "batchId", "juki.batch_id");
        std::string municipality = u.getMunicipality();
        if (role_ == "cs" && municipality != municipality_)
            throw Error(RENKEI_ERR_INVALID, "municipality: " + municipality + " is not this CS's municipality " + municipality_,
                        "municipality", "juki.municipality");
        if (role_ == "pref" && m.from() != "muni:" + municipality)
            throw Error(RENKEI_ERR_INVALID, "municipality: " + municipality + " was notified by " + m.from(),
                        "municipality", "juki.municipality");
        if (u.getRecords().size() > kMaxRecords)
            throw Error(RENKEI_ERR_INVALID, "records: " + std::to_string(u.getRecords().size()) + " records, at most " +
                                                std::to_string(kMaxRecords) + " per notification",
                        "records", "juki.batch_size");
        std::vector<uint8_t> hashes;
        auto saved = store_->answer(m.from(), batch);
        std::vector<uint8_t> answer = saved ? *saved : apply(m.from(), u, hashes);
        Stored<UpdateCountList> list(answer);
        auto l = list.get();
        // The count list goes back to the sender (a CS answers its 住民記録システム as UpdateResult).
        {
            capnp::MallocMessageBuilder mb;
            mb.setRoot(l);
            reply(m, role_ == "cs" ? "juki.UpdateResult" : "juki.UpdateCountList", mb);
        }
        if (role_ == "national") return;
        // Record first, then forward what was recorded (第6 7(3)); a redelivery forwards again (the
        // next hop answers a batch it has seen with the same list).
        auto records = u.getRecords();
        // Another payload under a batch id already answered: answered as before, nothing forwarded.
        if (l.getReceived() != records.size()) return;
        std::vector<bool> rejected(records.size());
        for (auto r : l.getRejected()) rejected[r.getIndex()] = true;
        uint32_t kept_count = records.size() - static_cast<uint32_t>(l.getRejected().size());
        if (kept_count == 0) return;
        if (saved)
            for (auto r : records) {
                auto c = canonical_bytes(r);
                auto h = sha256(c.data(), c.size());
                hashes.insert(hashes.end(), h.begin(), h.end());
            }
        std::vector<uint8_t> kept; // the hashes of what goes on up the chain
        for (uint32_t i = 0; i < records.size(); ++i)
            if (!rejected[i]) kept.insert(kept.end(), hashes.begin() + i * 32, hashes.begin() + (i + 1) * 32);
        capnp::MallocMessageBuilder mb;
        auto out = mb.initRoot<IdentityUpdate>();
        std::string out_batch = role_ == "cs" ? batch : municipality + "/" + batch;
        out.setBatchId(out_batch);
        out.setMunicipality(municipality);
        out.setRecordedAtMs(role_ == "cs" ? host().now_unix_ms() : u.getRecordedAtMs());
        auto list_out = out.initRecords(kept_count);
        for (uint32_t i = 0, j = 0; i < records.size(); ++i)
            if (!rejected[i]) list_out.setWithCaveats(j++, records[i]);
        auto now = host().now_unix_ms();
        int64_t entered = u.getRecordedAtMs() > 0 ? u.getRecordedAtMs() : now;
        auto deadline = host().next_business_start(entered).value_or(entered + 24 * 3600 * 1000LL);
        Expectation e;
        e.batch = out_batch;
        e.to = upstream_;
        e.municipality = municipality;
        e.count = kept_count;
        e.hashes = std::move(kept);
        e.sent_ms = now;
        e.deadline_ms = deadline;
        if (role_ == "cs") {
            for (auto stage : {"pref", "jlis"}) {
                e.stage = stage;
                store_->expect(e);
            }
            send("juki.IdentityUpdate", upstream_, mb, "juki-30-6");
            if (!saved) move_in_notices(u, rejected);
        } else {
            e.stage = "jlis";
            std::string ctx = m.from() + "\n" + batch;
            e.context.assign(ctx.begin(), ctx.end());
            store_->expect(e);
            send("juki.IdentityUpdate", upstream_, mb, "juki-30-7");
        }
    }

    // 転入通知 (住基法9条1項) to each former municipality of a 転入 just recorded: CS to CS.
    void move_in_notices(IdentityUpdate::Reader u, const std::vector<bool>& rejected) {
        auto records = u.getRecords();
        for (uint32_t i = 0; i < records.size(); ++i) {
            auto r = records[i];
            if (r.getReason() != ChangeReason::MOVE_IN || r.getPreviousMunicipality().size() == 0) continue;
            if (rejected[i]) continue;
            capnp::MallocMessageBuilder mb;
            auto n = mb.initRoot<MoveInNotice>();
            n.setPerson(r.getPerson());
            n.setMoveInDate(r.getChangeDate());
            n.setNewMunicipality(municipality_);
            n.setOldMunicipality(r.getPreviousMunicipality());
            send("juki.MoveInNotice", "muni:" + std::string(r.getPreviousMunicipality()), mb, "juki-9-1");
        }
    }

    // Whether `l` reconciles with what was sent; "" if it does, else why not.
    static std::string reconcile(const Expectation& e, UpdateCountList::Reader l) {
        std::vector<uint32_t> rejected;
        std::vector<bool> seen(e.count);
        for (auto r : l.getRejected()) {
            if (r.getIndex() >= e.count || seen[r.getIndex()])
                return "rejection index " + std::to_string(r.getIndex()) + " is not a record of the batch";
            seen[r.getIndex()] = true;
            rejected.push_back(r.getIndex());
        }
        std::string counts = "sent " + std::to_string(e.count) + ", it reports received " +
                             std::to_string(l.getReceived()) + ", recorded " + std::to_string(l.getRecorded()) +
                             ", rejected " + std::to_string(rejected.size());
        if (l.getReceived() != e.count || l.getRecorded() + rejected.size() != e.count) return counts;
        auto expected = digest_of(e.hashes, rejected);
        auto d = l.getDigest();
        if (d.size() != expected.size() || !std::equal(expected.begin(), expected.end(), d.begin()))
            return counts + ", but the digest of what it recorded differs from what was sent";
        return {};
    }

    void count_list(const renkei::sdk::Message& m) {
        auto payload = m.parse<UpdateCountList>();
        auto l = payload.get();
        auto now = host().now_unix_ms();
        std::string batch = l.getBatchId();
        std::string stage = role_ == "pref" ? "jlis" : (l.getRelayedFor().size() > 0 ? "jlis" : "pref");
        if (role_ == "pref" && m.from() != upstream_)
            throw Error(RENKEI_ERR_DENIED, "a prefecture takes 更新件数リスト only from " + upstream_, "from");
        if (role_ == "cs" && m.from() != upstream_)
            throw Error(RENKEI_ERR_DENIED, "a CS takes 更新件数リスト only from its prefecture " + upstream_, "from");
        auto e = store_->expected(batch, stage);
        if (!e) {
            store_->alarm(batch, "更新件数リスト from " + m.from() + " for a batch never sent there", now);
            return;
        }
        // A repeated list (the batch was sent again, e.g. by a 住民記録システム that never got the
        // answer across a stop) is reconciled once but passed on again, so the answer reaches it.
        if (e->confirmed_ms == 0) {
            Store::Transaction tx(*store_);
            auto why = reconcile(*e, l);
            if (!why.empty()) {
                store_->alarm(batch, "更新件数リスト from " + std::string(l.getRecordedBy()) + " for batch " + batch +
                                         " does not reconcile: " + why,
                              now);
                host().error("juki: 更新件数リスト mismatch for batch " + batch + ": " + why);
            }
            store_->confirm(batch, stage, now);
            tx.commit();
            for (auto r : l.getRejected())
                host().warn("juki: " + std::string(l.getRecordedBy()) + " refused " + std::string(r.getResidentCode()) +
                            " of batch " + batch + ": " + std::string(r.getMessage()));
        }
        if (role_ == "cs") {
            capnp::MallocMessageBuilder mb;
            mb.setRoot(l);
            send("juki.UpdateResult", node_, mb, "juki-30-6");
            return;
        }
        // A prefecture passes J-LIS's list on to the CS, in the CS's numbering, with its own refusals.
        std::string ctx(e->context.begin(), e->context.end());
        auto nl = ctx.find('\n');
        std::string origin = ctx.substr(0, nl), origin_batch = ctx.substr(nl + 1);
        auto own = store_->answer(origin, origin_batch);
        if (!own) return;
        Stored<UpdateCountList> mine(*own);
        auto my = mine.get();
        std::vector<uint32_t> forwarded; // forwarded position -> position in the CS's batch
        std::vector<bool> mine_rejected(my.getReceived());
        for (auto r : my.getRejected()) mine_rejected[r.getIndex()] = true;
        for (uint32_t i = 0; i < my.getReceived(); ++i)
            if (!mine_rejected[i]) forwarded.push_back(i);
        capnp::MallocMessageBuilder mb;
        auto out = mb.initRoot<UpdateCountList>();
        out.setBatchId(origin_batch);
        out.setMunicipality(l.getMunicipality());
        out.setRecordedBy(l.getRecordedBy());
        out.setRelayedFor(m.from());
        out.setReceived(my.getReceived());
        out.setRecorded(l.getRecorded());
        out.setDigest(l.getDigest());
        auto rej = out.initRejected(my.getRejected().size() + l.getRejected().size());
        unsigned k = 0;
        for (auto r : my.getRejected()) rej.setWithCaveats(k++, r);
        for (auto r : l.getRejected()) {
            rej.setWithCaveats(k, r);
            rej[k++].setIndex(r.getIndex() < forwarded.size() ? forwarded[r.getIndex()] : UINT32_MAX);
        }
        send("juki.UpdateCountList", origin, mb, "juki-30-7");
    }

    void status(const renkei::sdk::Message& m) {
        auto now = host().now_unix_ms();
        auto pending = store_->pending();
        auto alarms = store_->alarms();
        capnp::MallocMessageBuilder mb;
        auto s = mb.initRoot<ChainStatus>();
        s.setPending(static_cast<uint32_t>(pending.size()));
        std::vector<std::string> late;
        for (auto& e : pending)
            if (e.deadline_ms < now) late.push_back(e.batch + " (" + e.stage + ")");
        s.setLate(static_cast<uint32_t>(late.size()));
        auto lb = s.initLateBatches(static_cast<unsigned>(late.size()));
        for (size_t i = 0; i < late.size(); ++i) lb.set(i, late[i]);
        auto al = s.initAlarms(static_cast<unsigned>(alarms.size()));
        for (size_t i = 0; i < alarms.size(); ++i) al.set(i, alarms[i].detail);
        reply(m, "juki.ChainStatus", mb);
    }

    // ------------------------------------------------------------------ 個人番号 generation

    void number(const renkei::sdk::Message& m) {
        auto payload = m.parse<NumberRequest>();
        auto req = payload.get();
        std::string code = req.getResidentCode();
        if (auto r = renkei::validate::resident_code("residentCode", code); !r)
            throw Error(RENKEI_ERR_INVALID, r.message, r.field, r.rule);
        if (req.getChange() && req.getReason().size() == 0)
            throw Error(RENKEI_ERR_INVALID, "reason: a change of 個人番号 (番号法7条2項) must give its reason", "reason",
                        "juki.change_reason");
        auto a = numbers_->assign(hex(m.envelope().getId()), code, req.getChange(), req.getReason(), host().now_unix_ms());
        capnp::MallocMessageBuilder mb;
        auto out = mb.initRoot<NumberAssigned>();
        out.setResidentCode(code);
        out.setMyNumber(a.my_number);
        out.setPrevious(a.previous);
        out.setGeneration(a.generation);
        reply(m, "juki.NumberAssigned", mb);
    }

    // ------------------------------------------------------------------ queries and provision

    bool may_carry_number(const std::string& affair) const {
        for (auto& p : number_affairs_)
            if (matches(p, affair)) return true;
        return false;
    }

    void provision(const renkei::sdk::Message& m, const std::string& subject, const std::string& outcome,
                   const std::string& detail) {
        store_->record_provision({host().now_unix_ms(), m.from(), m.purpose(), subject, outcome,
                                  std::string(m.envelope().getOperatorId()), detail});
    }

    // The 住民票コード a key names (directly or by 個人番号), for the provision record.
    std::string subject_of(QueryKey::Reader k) {
        if (k.getResidentCode().size()) return k.getResidentCode();
        if (k.getMyNumber().size()) {
            auto found = store_->by_number(k.getMyNumber());
            return found.size() == 1 ? found[0].code : std::string();
        }
        return {};
    }

    // Refuses the whole query, recording the refusal for each person it named (開示 shows refusals too).
    [[noreturn]] void refuse_query(const renkei::sdk::Message& m, IdentityQuery::Reader q, const std::string& field,
                                   const std::string& rule, const std::string& why) {
        {
            Store::Transaction tx(*store_);
            for (auto k : q.getKeys()) provision(m, subject_of(k), "refused", why);
            tx.commit();
        }
        throw Error(RENKEI_ERR_INVALID, why, field, rule);
    }

    void query(const renkei::sdk::Message& m) {
        auto payload = m.parse<IdentityQuery>(kReads);
        auto q = payload.get();
        auto keys = q.getKeys();
        if (keys.size() == 0) throw Error(RENKEI_ERR_INVALID, "keys: at least one key is required", "keys", "juki.query_keys");
        if (keys.size() > kMaxKeys)
            throw Error(RENKEI_ERR_INVALID, "keys: " + std::to_string(keys.size()) + " keys, at most " +
                                                std::to_string(kMaxKeys) + " per query",
                        "keys", "juki.query_keys");
        std::set<std::string> declared;
        for (auto c : m.envelope().getConditions()) declared.insert(c);
        for (uint32_t i = 0; i < keys.size(); ++i) {
            auto used = conditions_of(keys[i]);
            std::string field = "keys[" + std::to_string(i) + "]";
            if (used != declared)
                refuse_query(m, q, field, "juki.query_conditions",
                             field + ": uses the conditions {" + join({used.begin(), used.end()}) +
                                 "} but the request declared {" + join({declared.begin(), declared.end()}) +
                                 "} to the access policy");
            if (!permitted_shape(used))
                refuse_query(m, q, field, "juki.query_conditions",
                             field + ": {" + join({used.begin(), used.end()}) +
                                 "} does not identify a person (第4 4(5)): give 個人番号, 住民票コード, or the name with "
                                 "date of birth and sex, or the name with the address");
            auto k = keys[i];
            if (k.getMyNumber().size())
                if (auto r = renkei::validate::my_number(field + ".myNumber", k.getMyNumber().cStr()); !r)
                    refuse_query(m, q, r.field, r.rule, r.message);
            if (k.getResidentCode().size())
                if (auto r = renkei::validate::resident_code(field + ".residentCode", k.getResidentCode().cStr()); !r)
                    refuse_query(m, q, r.field, r.rule, r.message);
            auto d = k.getDateOfBirth();
            if (d.getYear() != 0)
                if (auto r = renkei::validate::date(field + ".dateOfBirth", d.getYear(), d.getMonth(), d.getDay()); !r)
                    refuse_query(m, q, r.field, r.rule, r.message);
        }
        bool with_number = may_carry_number(m.purpose());
        capnp::MallocMessageBuilder mb;
        auto results = mb.initRoot<IdentityAnswer>().initResults(keys.size());
        // Keys by 個人番号 (an agency's batch) are read in parallel first; the rest one by one.
        std::vector<std::string> numbers;
        std::vector<uint32_t> slot(keys.size()); // key index -> position in numbers
        for (uint32_t i = 0; i < keys.size(); ++i)
            if (keys[i].getMyNumber().size()) {
                slot[i] = static_cast<uint32_t>(numbers.size());
                numbers.emplace_back(keys[i].getMyNumber().cStr());
            }
        auto by_number = readers_->by_numbers(numbers);
        Store::Transaction tx(*store_);
        for (uint32_t i = 0; i < keys.size(); ++i) {
            auto k = keys[i];
            std::vector<Resident> found;
            if (k.getMyNumber().size()) {
                found = std::move(by_number[slot[i]]);
            } else if (k.getResidentCode().size()) {
                if (auto r = store_->get(k.getResidentCode())) found.push_back(*r);
            } else {
                found = store_->by_attributes(k.getName(), date_text(k.getDateOfBirth()), static_cast<int>(k.getSex()),
                                              k.getAddress());
            }
            auto res = results[i];
            res.setIndex(i);
            if (found.empty()) {
                res.setStatus(QueryResult::Status::NOT_FOUND);
                provision(m, subject_of(k), "notFound", "");
                continue;
            }
            if (found.size() > 1) {
                res.setStatus(QueryResult::Status::AMBIGUOUS);
                for (auto& f : found) provision(m, f.code, "ambiguous", "not provided: several persons match");
                continue;
            }
            RecordReader rec(found[0].record);
            res.setStatus(found[0].removed ? QueryResult::Status::REMOVED : QueryResult::Status::FOUND);
            res.setPerson(rec.get().getPerson());
            if (!with_number) res.getPerson().setMyNumber("");
            provision(m, found[0].code, "provided", with_number ? "with 個人番号" : "");
        }
        tx.commit();
        reply(m, "juki.IdentityAnswer", mb);
    }

    // 利用者情報照会 (card management): by 住民票コード only.
    void user_info(const renkei::sdk::Message& m) {
        auto payload = m.parse<UserInfoQuery>();
        std::string code = payload.get().getResidentCode();
        if (auto r = renkei::validate::resident_code("residentCode", code); !r)
            throw Error(RENKEI_ERR_INVALID, r.message, r.field, r.rule);
        capnp::MallocMessageBuilder mb;
        auto a = mb.initRoot<UserInfoAnswer>();
        auto found = store_->get(code);
        if (found) {
            RecordReader rec(found->record);
            a.setFound(true);
            a.setRecord(rec.get());
        }
        provision(m, code, found ? "provided" : "notFound", "利用者情報照会");
        reply(m, "juki.UserInfoAnswer", mb);
    }

    void disclosure(const renkei::sdk::Message& m) {
        auto payload = m.parse<DisclosureRequest>();
        std::string code = payload.get().getResidentCode();
        if (auto r = renkei::validate::resident_code("residentCode", code); !r)
            throw Error(RENKEI_ERR_INVALID, r.message, r.field, r.rule);
        auto rows = store_->provisions_of(code);
        capnp::MallocMessageBuilder mb;
        auto a = mb.initRoot<DisclosureAnswer>();
        a.setResidentCode(code);
        auto entries = a.initEntries(static_cast<unsigned>(rows.size()));
        for (size_t i = 0; i < rows.size(); ++i) {
            entries[i].setAtMs(rows[i].at_ms);
            entries[i].setRecipient(rows[i].recipient);
            entries[i].setAffair(rows[i].affair);
            entries[i].setOutcome(rows[i].outcome);
            entries[i].setOperatorId(rows[i].operator_id);
            entries[i].setDetail(rows[i].detail);
        }
        reply(m, "juki.DisclosureAnswer", mb);
    }

    // ------------------------------------------------------------------ CS-to-CS notices

    void notice(const renkei::sdk::Message& m) {
        if (kind_of(m.from()) != "muni")
            throw Error(RENKEI_ERR_DENIED, m.type() + " travels only between municipalities, not from " + m.from());
        std::string subject;
        auto now = host().now_unix_ms();
        if (m.type() == "juki.MoveInNotice") {
            auto payload = m.parse<MoveInNotice>();
            auto n = payload.get();
            subject = n.getPerson().getResidentCode();
            if (n.getOldMunicipality() != municipality_)
                throw Error(RENKEI_ERR_INVALID, "oldMunicipality: " + std::string(n.getOldMunicipality()) +
                                                    " is not this municipality " + municipality_,
                            "oldMunicipality", "juki.municipality");
            auto current = store_->get(subject);
            if (current && !current->removed)
                store_->alarm("", "転入通知 from " + m.from() + " for " + subject +
                                      ", who is still registered here: the 転出 was never recorded",
                              now);
        } else if (m.type() == "juki.RecordNotice") {
            auto payload = m.parse<RecordNotice>();
            subject = payload.get().getPerson().getResidentCode();
        } else {
            auto payload = m.parse<MoveOutCertificate>();
            subject = payload.get().getPerson().getResidentCode();
        }
        auto bytes = m.payload();
        store_->record_notice(m.type(), m.from(), subject, std::vector<uint8_t>(bytes.begin(), bytes.end()), now);
        if (hands_over()) hand_over(m);
    }

    // With `hand_over = true` the CS hands what it receives for the 住民記録システム (notices,
    // 広域交付 requests) to it as juki.Handover, whose payload is the envelope received.
    bool hands_over() { return host().config_or("hand_over", "false") == "true"; }
    void hand_over(const renkei::sdk::Message& m) {
        capnp::MallocMessageBuilder mb;
        mb.setRoot(m.envelope());
        send("juki.Handover", node_, mb, m.purpose(), m.envelope().getId());
    }

    // 広域交付: the residence municipality reviews the request against its record and answers.
    void copy_request(const renkei::sdk::Message& m) {
        if (kind_of(m.from()) != "muni")
            throw Error(RENKEI_ERR_DENIED, "juki.CopyRequest travels only between municipalities, not from " + m.from());
        auto payload = m.parse<CopyRequest>();
        auto q = payload.get();
        std::string code = q.getResidentCode();
        if (auto r = renkei::validate::resident_code("residentCode", code); !r)
            throw Error(RENKEI_ERR_INVALID, r.message, r.field, r.rule);
        if (q.getIdentityDocument().size() == 0)
            throw Error(RENKEI_ERR_INVALID,
                        "identityDocument: the issuing municipality must name how it checked identity (第6 4(1))",
                        "identityDocument", "juki.copy_identity");
        if (hands_over()) {
            // 第6 4(2): the residence municipality reviews the request and answers from its
            // 住民記録システム, which sends juki.CopyAnswer to the issuing municipality itself.
            auto bytes = m.payload();
            store_->record_notice("juki.CopyRequest", m.from(), code, std::vector<uint8_t>(bytes.begin(), bytes.end()),
                                  host().now_unix_ms());
            return hand_over(m);
        }
        capnp::MallocMessageBuilder mb;
        auto a = mb.initRoot<CopyAnswer>();
        auto found = store_->get(code);
        if (!found || found->removed) {
            a.setRefusal("no resident with 住民票コード " + code + " in " + municipality_);
        } else {
            RecordReader rec(found->record);
            auto p = rec.get().getPerson();
            if (p.getName().getKanji() != q.getName() || date_text(p.getDateOfBirth()) != date_text(q.getDateOfBirth())) {
                a.setRefusal("the name or date of birth in the request does not match the resident's record");
            } else {
                a.setIssued(true);
                a.setPerson(p);
                a.getPerson().setMyNumber("");
                const char* sex = p.getSex() == schema::Sex::MALE ? "男" : "女";
                std::vector<std::pair<std::string, std::string>> items{
                    {"氏名", p.getName().getKanji()},
                    {"出生の年月日", date_text(p.getDateOfBirth())},
                    {"男女の別", sex},
                    {"住所", p.getAddress().getText()},
                    {"住所を定めた年月日", date_text(rec.get().getChangeDate())}};
                auto list = a.initItems(static_cast<unsigned>(items.size()));
                for (size_t i = 0; i < items.size(); ++i) {
                    list[i].setName(items[i].first);
                    list[i].setValue(items[i].second);
                }
            }
        }
        auto bytes = m.payload();
        store_->record_notice("juki.CopyRequest", m.from(), code, std::vector<uint8_t>(bytes.begin(), bytes.end()),
                              host().now_unix_ms());
        reply(m, "juki.CopyAnswer", mb);
    }

    // ------------------------------------------------------------------ consistency check

    void consistency_start(const renkei::sdk::Message& m) {
        auto payload = m.parse<ConsistencyStart>();
        auto s = payload.get();
        std::string check = s.getCheckId();
        if (check.empty()) throw Error(RENKEI_ERR_INVALID, "checkId: required", "checkId", "juki.check_id");
        size_t size = s.getChunkSize() ? std::min<uint32_t>(s.getChunkSize(), kMaxRecords) : 1000;
        // Stream the residents page by page (memory stays one page whatever the municipality's size).
        auto page = store_->residents_of(municipality_, "", size);
        uint32_t chunk = 0;
        for (;;) {
            auto next = page.empty() ? page : store_->residents_of(municipality_, page.back().code, size);
            capnp::MallocMessageBuilder mb;
            auto c = mb.initRoot<ConsistencyChunk>();
            c.setCheckId(check);
            c.setMunicipality(municipality_);
            c.setChunk(chunk++);
            c.setLast(next.empty());
            auto records = c.initRecords(static_cast<unsigned>(page.size()));
            for (size_t i = 0; i < page.size(); ++i) {
                RecordReader rec(page[i].record);
                records.setWithCaveats(i, rec.get());
            }
            send("juki.ConsistencyChunk", "jlis:juki", mb, "juki-seigou");
            if (next.empty()) break;
            page = std::move(next);
        }
        host().info("juki: consistency check " + check + " sent in " + std::to_string(chunk) + " chunks");
    }

    void consistency_chunk(const renkei::sdk::Message& m) {
        auto payload = m.parse<ConsistencyChunk>(kReads);
        auto c = payload.get();
        std::string municipality = c.getMunicipality();
        if (m.from() != "muni:" + municipality)
            throw Error(RENKEI_ERR_INVALID, "municipality: " + municipality + " was sent by " + m.from(), "municipality",
                        "juki.municipality");
        std::string check = m.from() + "/" + std::string(c.getCheckId());
        Store::Transaction tx(*store_);
        if (store_->chunk_seen(check, c.getChunk())) return; // a redelivered chunk
        if (c.getLast()) store_->set_total(check, c.getChunk() + 1);
        for (auto r : c.getRecords()) {
            std::string code = r.getPerson().getResidentCode();
            store_->mark_seen(check, code);
            auto mine = store_->get(code);
            using K = Difference::Kind;
            if (!mine || mine->removed) {
                store_->add_difference(check, code, static_cast<int>(K::MISSING_AT_NATIONAL), mine ? "removed" : "", "");
            } else if (mine->municipality != municipality) {
                store_->add_difference(check, code, static_cast<int>(K::REGISTERED_ELSEWHERE), "", mine->municipality);
            } else {
                RecordReader rec(mine->record);
                auto fields = differing_fields(rec.get(), r);
                if (!fields.empty()) store_->add_difference(check, code, static_cast<int>(K::DIFFERING), join(fields), "");
            }
        }
        auto total = store_->total(check);
        if (!total || store_->chunks(check) < *total) {
            tx.commit();
            return;
        }
        // Every chunk is in: what J-LIS has for the municipality that the CS did not send.
        using K = Difference::Kind;
        std::string after;
        for (;;) {
            auto codes = store_->unseen(check, municipality, after, 10000);
            for (auto& code : codes)
                store_->add_difference(check, code, static_cast<int>(K::MISSING_AT_MUNICIPALITY), "", "");
            if (codes.size() < 10000) break;
            after = codes.back();
        }
        capnp::MallocMessageBuilder mb;
        auto rep = mb.initRoot<ConsistencyReport>();
        rep.setCheckId(c.getCheckId());
        rep.setMunicipality(municipality);
        auto seen = store_->seen(check);
        uint64_t counts[4];
        for (int k = 0; k < 4; ++k) counts[k] = store_->difference_count(check, k);
        rep.setCompared(seen);
        rep.setMissingAtNational(counts[static_cast<int>(K::MISSING_AT_NATIONAL)]);
        rep.setMissingAtMunicipality(counts[static_cast<int>(K::MISSING_AT_MUNICIPALITY)]);
        rep.setDiffering(counts[static_cast<int>(K::DIFFERING)]);
        rep.setRegisteredElsewhere(counts[static_cast<int>(K::REGISTERED_ELSEWHERE)]);
        rep.setMatching(seen - counts[0] - counts[2] - counts[3]);
        auto diffs = store_->differences(check, report_limit_);
        uint64_t all = counts[0] + counts[1] + counts[2] + counts[3];
        rep.setTruncated(all > diffs.size());
        auto list = rep.initDifferences(static_cast<unsigned>(diffs.size()));
        for (size_t i = 0; i < diffs.size(); ++i) {
            list[i].setResidentCode(diffs[i].code);
            list[i].setKind(static_cast<K>(diffs[i].kind));
            auto f = split(diffs[i].fields);
            auto fl = list[i].initFields(static_cast<unsigned>(f.size()));
            for (size_t j = 0; j < f.size(); ++j) fl.set(j, f[j]);
            list[i].setRegisteredAt(diffs[i].registered_at);
        }
        store_->forget_check(check);
        tx.commit();
        send("juki.ConsistencyReport", m.from(), mb, m.purpose());
    }

    // ------------------------------------------------------------------ erasure (第6 8)

    ErasureCounts erase_now(int64_t now) {
        auto n = store_->erase_expired(now);
        if (n.history + n.residents + n.provisions > 0)
            host().info("juki: erased " + std::to_string(n.history) + " history versions, " +
                        std::to_string(n.residents) + " deleted residents, " + std::to_string(n.provisions) +
                        " provision records past their retention");
        return n;
    }

    void erase(const renkei::sdk::Message& m) {
        auto payload = m.parse<EraseExpired>();
        auto now = payload.get().getNowMs() ? payload.get().getNowMs() : host().now_unix_ms();
        auto n = erase_now(now);
        capnp::MallocMessageBuilder mb;
        auto e = mb.initRoot<Erased>();
        e.setHistory(n.history);
        e.setRemovedResidents(n.residents);
        e.setProvisions(n.provisions);
        reply(m, "juki.Erased", mb);
    }

    void erase_loop() {
        std::unique_lock lock(mutex_);
        while (!stopping_) {
            try {
                erase_now(host().now_unix_ms());
            } catch (const std::exception& e) {
                host().error(std::string("juki: erasure failed: ") + e.what());
            }
            wake_.wait_for(lock, std::chrono::milliseconds(erase_interval_ms_), [&] { return stopping_; });
        }
    }

    static constexpr uint32_t kMaxRecords = 10000;
    // Records are validated, hashed, compared and copied: each word is read a few dozen times.
    static constexpr unsigned kReads = 64;
    static constexpr uint32_t kMaxKeys = 10000;

    std::string node_, role_, municipality_, upstream_;
    std::vector<std::string> number_affairs_;
    size_t report_limit_ = 1000;
    std::unique_ptr<Store> store_;
    std::unique_ptr<ReaderPool> readers_; // pref, national
    std::unique_ptr<Numbers> numbers_;
    std::mutex mutex_;
    std::condition_variable wake_;
    bool stopping_ = false;
    int64_t erase_interval_ms_ = 0;
    std::thread eraser_;
};

} // namespace

RENKEI_PLUGIN(Juki, "juki", "0.2.0", RENKEI_KIND_BUSINESS, "juki.NumberRequest", "juki.IdentityUpdate",
              "juki.UpdateCountList", "juki.StatusRequest", "juki.IdentityQuery",
              "juki.UserInfoQuery", "juki.DisclosureRequest", "juki.MoveInNotice", "juki.RecordNotice",
              "juki.MoveOutCertificate", "juki.CopyRequest", "juki.ConsistencyStart", "juki.ConsistencyChunk",
              "juki.EraseExpired")
