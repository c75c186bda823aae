// The juki part of `renkei demo`: a miniature 住基ネット on loopback with real keys and CURVE
// links: J-LIS, two prefectures, three municipalities' CSs and an agency, each running the example
// policy of its tier. The demo plays the municipalities' 住民記録システム, their window terminals
// and the agency's system (their mock adapters are not built yet) and prints what happens.
#include "juki_demo.hpp"

#include <identity_store.hpp>
#include <juki.capnp.h>
#include <renkei/juki/resident.hpp>

#include <renkei/audit_log.hpp>
#include <renkei/envelope.hpp>
#include <renkei/host.hpp>
#include <renkei/keys.hpp>
#include <renkei/local_endpoint.hpp>
#include <renkei/sdk.hpp>

#include <capnp/serialize.h>

#include <chrono>
#include <condition_variable>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

namespace renkei {
namespace {

using namespace std::chrono_literals;

struct Answer {
    std::string type, fault, payload;
};

// A local component of one node (a 住民記録システム, a terminal, an agency system): sends
// requests and waits for the answer correlated with each, or for messages of a type.
class Party {
public:
    Party(Host& host, const std::string& name, std::vector<std::string> types) : host_(host) {
        ep_ = std::make_shared<LocalEndpoint>(name, std::move(types), [this](const EnvelopeView& v, std::string&) {
            auto e = v.get();
            Answer a;
            a.type = e.getType();
            if (e.hasFault()) a.fault = e.getFault().getMessage();
            auto p = e.getPayload();
            a.payload.assign(reinterpret_cast<const char*>(p.begin()), p.size());
            std::lock_guard lock(m_);
            got_.emplace_back(hex(e.getCorrelationId()), std::move(a));
            cv_.notify_all();
            return RENKEI_OK;
        });
        host.add_endpoint(ep_);
    }
    ~Party() {
        host_.router().remove_endpoint(ep_->instance_name());
        ep_->stop();
    }
    // Sends and returns the request's id.
    std::string send(const std::string& type, const std::string& to, capnp::MallocMessageBuilder& payload,
                     const std::string& purpose, std::vector<std::string> conditions = {}) {
        auto bytes = capnp::messageToFlatArray(payload);
        capnp::MallocMessageBuilder mb;
        auto e = mb.initRoot<schema::Envelope>();
        auto id = new_message_id();
        e.setId(kj::ArrayPtr<const kj::byte>(id.data(), id.size()));
        e.setType(type);
        e.setTo(to);
        e.setPurpose(purpose);
        e.setOperatorId("demo-operator");
        e.setPayload(bytes.asBytes());
        auto c = e.initConditions(static_cast<unsigned>(conditions.size()));
        for (size_t i = 0; i < conditions.size(); ++i) c.set(i, conditions[i]);
        host_.submit(ep_->instance_name(), capnp::messageToFlatArray(mb).asBytes());
        return hex(id);
    }
    Answer ask(const std::string& type, const std::string& to, capnp::MallocMessageBuilder& payload,
               const std::string& purpose, std::vector<std::string> conditions = {}) {
        auto id = send(type, to, payload, purpose, std::move(conditions));
        std::unique_lock lock(m_);
        Answer found;
        cv_.wait_for(lock, 20s, [&] {
            for (auto& [c, a] : got_)
                if (c == id) return found = a, true;
            return false;
        });
        if (found.type.empty()) found.fault = "no answer within 20 s";
        return found;
    }
    // Waits until `pred` holds for the answers so far.
    template <typename P> bool wait(P pred) {
        std::unique_lock lock(m_);
        return cv_.wait_for(lock, 20s, [&] { return pred(got_); });
    }
    using Got = std::vector<std::pair<std::string, Answer>>;

private:
    Host& host_;
    std::shared_ptr<LocalEndpoint> ep_;
    std::mutex m_;
    std::condition_variable cv_;
    Got got_;
};

template <typename T> struct Read : sdk::Flat<T> {
    explicit Read(const std::string& p) : sdk::Flat<T>(sdk::bytes_of(p.data(), p.size()), 64) {}
};

using Resident = juki::ResidentFields;

class JukiNetwork {
public:
    JukiNetwork(const std::filesystem::path& build_dir, const std::filesystem::path& source_dir,
                const std::filesystem::path& dir)
        : build_(build_dir), src_(source_dir), dir_(dir) {}

    bool run() {
        std::cout << "\n[juki] J-LIS, two prefectures, three municipalities' CSs and an agency on 127.0.0.1\n";
        std::ofstream(dir_ / "jlis-secret") << std::string(48, 'k') << "demo 個人番号 secret";
        for (auto id : {"jlis:juki", "pref:13", "pref:27", "muni:131016", "muni:131024", "muni:271004", "agency:nenkin"})
            cards_[id] = generate_node_keys(dir_ / ("keys-" + safe(id)), id);
        start("jlis:juki", "national", "juki-national.toml",
              {{"pref:13", {"muni:13*"}}, {"pref:27", {"muni:27*"}}, {"agency:nenkin", {}}});
        start("pref:13", "pref", "juki-prefecture.toml", {{"jlis:juki", {"jlis:*"}}, {"muni:131016", {}}, {"muni:131024", {}}});
        start("pref:27", "pref", "juki-prefecture.toml", {{"jlis:juki", {"jlis:*"}}, {"muni:271004", {}}});
        start("muni:131016", "cs", "juki-municipality.toml", {{"pref:13", {"pref:*", "jlis:*"}}, {"muni:271004", {}}});
        start("muni:271004", "cs", "juki-municipality.toml", {{"pref:27", {"pref:*", "jlis:*"}}, {"muni:131016", {}}});
        start("muni:131024", "cs", "juki-municipality.toml", {{"pref:13", {"*"}}});
        start("agency:nenkin", "", "juki-agency.toml", {{"jlis:juki", {"jlis:*"}}});
        for (auto& [id, h] : hosts_) std::cout << "  " << id << (h->link_endpoint().empty() ? " (dials out)" : " listening on " + h->link_endpoint()) << "\n";

        bool ok = births();
        if (ok) { // the later steps need the residents
            ok &= move();
            ok &= query();
            ok &= copy();
            ok &= consistency();
        }
        std::cout << "  where the data is (本人確認情報 records per store):";
        for (auto id : {"jlis:juki", "pref:13", "pref:27", "muni:131016", "muni:131024", "muni:271004"}) {
            juki::IdentityStore s(store_of(id));
            std::cout << " " << id << " " << s.count();
        }
        std::cout << "\n";
        parties_.clear();
        for (auto id : {"agency:nenkin", "muni:131024", "muni:271004", "muni:131016", "pref:27", "pref:13", "jlis:juki"}) {
            auto audit = hosts_[id]->audit()->dir();
            hosts_[id]->stop();
            auto v = verify_audit(audit);
            std::cout << "  renkei audit verify " << id << ": " << (v.ok ? "ok" : "BROKEN: " + v.error) << ", " << v.records
                      << " records\n";
            ok &= v.ok;
        }
        return ok;
    }

private:
    static std::string safe(std::string id) {
        for (auto& c : id)
            if (c == ':') c = '_';
        return id;
    }
    std::filesystem::path store_of(const std::string& id) { return dir_ / ("store-" + safe(id)) / "juki.db"; }

    void start(const std::string& id, const std::string& role, const std::string& policy,
               std::vector<std::pair<std::string, std::vector<std::string>>> peers) {
        HostConfig c;
        c.node_id = id;
        c.data_dir = dir_ / ("data-" + safe(id));
        c.keys_dir = dir_ / ("keys-" + safe(id));
        if (id.rfind("agency", 0) != 0) c.listen = "tcp://127.0.0.1:0";
        if (!policy.empty()) c.policy_file = src_ / "examples/policy" / policy;
        if (!role.empty()) {
            PluginConfig p;
            p.name = "juki";
            p.path = build_ / "plugins/juki/juki.so";
            p.settings.insert("role", role);
            p.settings.insert("store", store_of(id).string());
            if (role == "national") {
                p.settings.insert("number_secret_file", (dir_ / "jlis-secret").string());
                p.settings.insert("my_number_affairs", "bango-9:*");
            }
            if (role == "cs") {
                p.settings.insert("municipality", id.substr(5));
                p.settings.insert("prefecture", "pref:" + id.substr(5, 2));
            }
            c.plugins.push_back(p);
        }
        for (auto& [peer, reaches] : peers) {
            PeerConfig pc;
            pc.node = peer;
            pc.curve_public = cards_[peer].curve_public;
            pc.sign_public = cards_[peer].sign_public;
            pc.reaches = reaches;
            pc.batch_signing = id.rfind("pref", 0) == 0 && peer == "jlis:juki";
            if (endpoints_.count(peer)) pc.endpoints = {endpoints_[peer]};
            c.peers.push_back(pc);
        }
        auto h = std::make_unique<Host>(c);
        h->start();
        if (!h->link_endpoint().empty()) endpoints_[id] = h->link_endpoint();
        hosts_[id] = std::move(h);
    }

    Party& legacy(const std::string& muni) {
        auto& p = parties_[muni];
        if (!p)
            p = std::make_unique<Party>(*hosts_[muni], "jukiki-system",
                                        std::vector<std::string>{"juki.UpdateResult", "juki.IdentityUpdate.Fault",
                                                                 "juki.NumberAssigned", "juki.NumberRequest.Fault",
                                                                 "juki.CopyAnswer", "juki.CopyRequest.Fault",
                                                                 "juki.ConsistencyReport"});
        return *p;
    }

    // Notifies `records` through the muni's CS and waits for the three tiers' count lists.
    bool notify(const std::string& muni, const std::string& what,
                const std::vector<std::tuple<Resident, juki::ChangeReason, std::string>>& records) {
        capnp::MallocMessageBuilder mb;
        auto u = mb.initRoot<juki::IdentityUpdate>();
        std::string batch = muni + "-" + std::to_string(++batches_);
        u.setBatchId(batch);
        u.setMunicipality(muni.substr(5));
        auto list = u.initRecords(static_cast<unsigned>(records.size()));
        for (size_t i = 0; i < records.size(); ++i)
            juki::fill_record(list[i], std::get<0>(records[i]), std::get<1>(records[i]), std::get<2>(records[i]));
        auto& p = legacy(muni);
        p.send("juki.IdentityUpdate", muni, mb, "juki-30-6");
        std::map<std::string, std::pair<uint32_t, uint32_t>> tiers;
        p.wait([&](const Party::Got& got) {
            tiers.clear();
            for (auto& [c, a] : got) {
                if (a.type != "juki.UpdateResult") continue;
                Read<juki::UpdateCountList> l(a.payload);
                if (l.get().getBatchId() == batch)
                    tiers[l.get().getRecordedBy()] = {l.get().getRecorded(), l.get().getRejected().size()};
            }
            return tiers.size() == 3;
        });
        std::cout << "  " << what << ": ";
        for (auto t : {muni, "pref:" + muni.substr(5, 2), std::string("jlis:juki")})
            std::cout << t << " recorded " << tiers[t].first << (tiers[t].second ? " refused " + std::to_string(tiers[t].second) : "")
                      << (t == "jlis:juki" ? "" : ", ");
        bool ok = tiers.size() == 3 && tiers["jlis:juki"].first == records.size();
        std::cout << (ok ? " (更新件数リスト reconciled)" : " FAILED") << "\n";
        return ok;
    }

    bool births() {
        int n = 0;
        const char* names[][2] = {{"住基　一郎", "ジュウキ　イチロウ"}, {"住基　花子", "ジュウキ　ハナコ"},
                                  {"中央　次郎", "チュウオウ　ジロウ"}, {"中央　三子", "チュウオウ　ミツコ"},
                                  {"浪速　四郎", "ナニワ　シロウ"}, {"浪速　五月", "ナニワ　サツキ"}};
        const std::map<std::string, std::string> address{{"muni:131016", "東京都千代田区霞が関二丁目1番"},
                                                         {"muni:131024", "東京都中央区築地一丁目1番"},
                                                         {"muni:271004", "大阪府大阪市北区中之島一丁目3番"}};
        bool ok = true;
        for (auto muni : {"muni:131016", "muni:131024", "muni:271004"}) {
            std::vector<std::tuple<Resident, juki::ChangeReason, std::string>> recs;
            for (int i = 0; i < 2; ++i, ++n) {
                Resident r;
                r.kanji = names[n][0];
                r.kana = names[n][1];
                r.year = 2026;
                r.month = 11;
                r.day = 1 + n;
                r.sex = n % 2 ? schema::Sex::FEMALE : schema::Sex::MALE;
                r.address = address.at(muni);
                r.municipality = std::string(muni).substr(5);
                char code[16];
                std::snprintf(code, sizeof code, "%011d", 41000000 + n);
                r.code = code;
                capnp::MallocMessageBuilder mb;
                mb.initRoot<juki::NumberRequest>().setResidentCode(r.code);
                auto a = legacy(muni).ask("juki.NumberRequest", "jlis:juki", mb, "bango-8");
                if (a.type != "juki.NumberAssigned") {
                    std::cout << "  個人番号 for " << r.code << ": FAILED " << a.fault << "\n";
                    return false;
                }
                r.my_number = Read<juki::NumberAssigned>(a.payload).get().getMyNumber();
                std::cout << "  出生 " << r.kanji << " (" << muni << ", 住民票コード " << r.code << "): J-LIS generated 個人番号 "
                          << r.my_number.substr(0, 4) << "********\n";
                residents_.push_back(r);
                recs.emplace_back(r, juki::ChangeReason::BIRTH, "");
            }
            ok &= notify(muni, std::string(muni) + " notifies 2 births", recs);
        }
        return ok;
    }

    // 住基　花子 moves from Chiyoda (Tokyo) to Osaka: 転出 there, 転入 here, 転入通知 CS to CS.
    bool move() {
        auto r = residents_[1];
        bool ok = notify("muni:131016", "転出 of " + r.kanji + " at muni:131016", {{r, juki::ChangeReason::MOVE_OUT, ""}});
        r.municipality = "271004";
        r.address = "大阪府大阪市北区中之島一丁目3番";
        ok &= notify("muni:271004", "転入 of " + r.kanji + " at muni:271004",
                     {{r, juki::ChangeReason::MOVE_IN, "131016"}});
        juki::IdentityStore old_cs(store_of("muni:131016"));
        for (int i = 0; i < 100 && old_cs.notices("juki.MoveInNotice") == 0; ++i) std::this_thread::sleep_for(50ms);
        bool notice = old_cs.notices("juki.MoveInNotice") == 1;
        std::cout << "  転入通知 muni:271004 -> muni:131016 directly (not through pref:27, pref:13 or J-LIS): "
                  << (notice ? "received" : "MISSING") << "\n";
        juki::IdentityStore jlis(store_of("jlis:juki"));
        auto now = jlis.get(r.code);
        std::cout << "  J-LIS now has " << r.kanji << " in " << (now ? now->municipality : "nowhere") << "\n";
        residents_[1] = r;
        return ok && notice && now && now->municipality == "271004";
    }

    bool query() {
        Party agency(*hosts_["agency:nenkin"], "nenkin-system", {"juki.IdentityAnswer", "juki.IdentityQuery.Fault"});
        capnp::MallocMessageBuilder mb;
        mb.initRoot<juki::IdentityQuery>().initKeys(1)[0].setMyNumber(residents_[4].my_number);
        auto a = agency.ask("juki.IdentityQuery", "jlis:juki", mb, "juki-beppyo1:5", {"myNumber"});
        bool found = a.type == "juki.IdentityAnswer";
        std::string name = found ? std::string(Read<juki::IdentityAnswer>(a.payload).get().getResults()[0].getPerson().getName().getKanji()) : "";
        std::cout << "  agency:nenkin asks J-LIS by 個人番号 for 別表第一 5: "
                  << (found ? "provided " + name + " (本人確認情報 only, no 個人番号)" : "FAILED " + a.fault) << "\n";
        capnp::MallocMessageBuilder bad;
        bad.initRoot<juki::IdentityQuery>().initKeys(1)[0].setName(residents_[4].kanji);
        auto r = agency.ask("juki.IdentityQuery", "jlis:juki", bad, "juki-beppyo1:5", {"name"});
        bool refused = r.type == "juki.IdentityQuery.Fault";
        std::cout << "  agency:nenkin asks by name alone: " << (refused ? "refused by J-LIS's policy: " + r.fault : "NOT REFUSED (" + r.type + r.fault + ")") << "\n";
        return found && name == residents_[4].kanji && refused;
    }

    // 広域交付: Osaka's window issues a copy of the resident record of 住基　一郎 (Chiyoda).
    bool copy() {
        auto& r = residents_[0];
        capnp::MallocMessageBuilder mb;
        auto q = mb.initRoot<juki::CopyRequest>();
        q.setResidentCode(r.code);
        q.setName(r.kanji);
        auto d = q.initDateOfBirth();
        d.setYear(r.year);
        d.setMonth(r.month);
        d.setDay(r.day);
        q.setIdentityDocument("個人番号カード");
        q.setIssuingMunicipality("271004");
        auto a = legacy("muni:271004").ask("juki.CopyRequest", "muni:131016", mb, "juki-12-4");
        if (a.type != "juki.CopyAnswer") {
            std::cout << "  広域交付: FAILED " << a.fault << "\n";
            return false;
        }
        Read<juki::CopyAnswer> ans(a.payload);
        std::cout << "  広域交付 at muni:271004 for " << r.kanji << " of muni:131016 (CS to CS): "
                  << (ans.get().getIssued() ? "issued with" : "refused");
        for (auto i : ans.get().getItems()) std::cout << " " << i.getName().cStr() << "=" << i.getValue().cStr();
        std::cout << "\n";
        return ans.get().getIssued();
    }

    bool consistency() {
        capnp::MallocMessageBuilder mb;
        mb.initRoot<juki::ConsistencyStart>().setCheckId("demo-check");
        auto& p = legacy("muni:131024");
        p.send("juki.ConsistencyStart", "muni:131024", mb, "juki-seigou");
        std::string report;
        p.wait([&](const Party::Got& got) {
            for (auto& [c, a] : got)
                if (a.type == "juki.ConsistencyReport") report = a.payload;
            return !report.empty();
        });
        if (report.empty()) {
            std::cout << "  整合性確認 muni:131024: FAILED (no report)\n";
            return false;
        }
        Read<juki::ConsistencyReport> r(report);
        auto g = r.get();
        std::cout << "  整合性確認 muni:131024 with J-LIS: compared " << g.getCompared() << ", matching " << g.getMatching()
                  << ", missing at J-LIS " << g.getMissingAtNational() << ", missing at the CS "
                  << g.getMissingAtMunicipality() << ", differing " << g.getDiffering() << "\n";
        return g.getCompared() == 2 && g.getMatching() == 2;
    }

    std::filesystem::path build_, src_, dir_;
    std::map<std::string, NodeCard> cards_;
    std::map<std::string, std::string> endpoints_;
    std::map<std::string, std::unique_ptr<Host>> hosts_;
    std::map<std::string, std::unique_ptr<Party>> parties_;
    std::vector<Resident> residents_;
    int batches_ = 0;
};

} // namespace

bool juki_network_demo(const std::filesystem::path& build_dir, const std::filesystem::path& source_dir,
                       const std::filesystem::path& dir) {
    JukiNetwork net(build_dir, source_dir, dir);
    return net.run();
}

} // namespace renkei
