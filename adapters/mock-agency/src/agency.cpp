// mock-agency: an agency's system (国の機関等) for testing and demos. After `delay_ms` it asks J-LIS
// about `count` residents of `municipality` (住民票コード = its first five digits + a six-digit
// serial, as mock-legacy-juki assigns them), `batch` keys per juki.IdentityQuery, once under each
// purpose in `purposes` (some the policy allows, some not), and tallies what came back per
// purpose: provided, notFound, refused. The tally is logged at stop and written to `report_file`
// (one line per purpose: "<purpose> provided=N notFound=N refused=N") when set.
#include <juki.capnp.h>

#include <renkei/sdk.hpp>

#include <chrono>
#include <condition_variable>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

namespace {

using renkei::sdk::Error;
namespace juki = renkei::juki;

class Agency : public renkei::sdk::Plugin {
public:
    using Plugin::Plugin;

    void start() override {
        std::istringstream p(host().config_or("purposes", "juki-beppyo1:5"));
        for (std::string s; std::getline(p, s, ',');)
            if (!s.empty()) purposes_.push_back(s);
        municipality_ = host().config_or("municipality", "131016");
        count_ = std::stoul(host().config_or("count", "10"));
        batch_ = std::max<size_t>(1, std::stoul(host().config_or("batch", "10")));
        delay_ms_ = std::stoll(host().config_or("delay_ms", "0"));
        report_ = host().config_or("report_file", "");
        worker_ = std::thread([this] { run(); });
    }

    void stop() override {
        {
            std::lock_guard lock(m_);
            stopping_ = true;
        }
        cv_.notify_all();
        if (worker_.joinable()) worker_.join();
        host().info("mock-agency: " + tally());
    }

    void handle(const renkei::sdk::Message& m) override {
        std::lock_guard lock(m_);
        auto& t = tally_[m.purpose()];
        if (m.type() == "juki.IdentityAnswer") {
            auto p = m.parse<juki::IdentityAnswer>();
            for (auto r : p.get().getResults())
                ++t[r.getStatus() == juki::QueryResult::Status::NOT_FOUND ? "notFound" : "provided"];
        } else if (m.type() == "juki.IdentityQuery.Fault") {
            t["refused"] += batch_of_.count(m.purpose()) ? batch_of_[m.purpose()] : 1;
        } else {
            throw Error(RENKEI_ERR_UNSUPPORTED, "mock-agency does not handle " + m.type(), "type");
        }
        write_report();
    }

private:
    void run() {
        std::unique_lock lock(m_);
        cv_.wait_for(lock, std::chrono::milliseconds(delay_ms_), [&] { return stopping_; });
        for (auto& purpose : purposes_) {
            for (size_t start = 0; start < count_ && !stopping_; start += batch_) {
                size_t n = std::min(batch_, count_ - start);
                batch_of_[purpose] = n;
                capnp::MallocMessageBuilder payload;
                auto keys = payload.initRoot<juki::IdentityQuery>().initKeys(static_cast<unsigned>(n));
                for (size_t i = 0; i < n; ++i) {
                    char code[16];
                    std::snprintf(code, sizeof code, "%s%06zu", municipality_.substr(0, 5).c_str(), start + i);
                    keys[i].setResidentCode(code);
                }
                auto bytes = capnp::messageToFlatArray(payload);
                capnp::MallocMessageBuilder mb;
                auto e = mb.initRoot<renkei::schema::Envelope>();
                e.setType("juki.IdentityQuery");
                e.setTo("jlis:juki");
                e.setPurpose(purpose);
                e.setOperatorId("mock-agency");
                e.initConditions(1).set(0, "residentCode");
                e.setPayload(bytes.asBytes());
                lock.unlock();
                host().send(mb);
                lock.lock();
            }
        }
    }

    std::string tally() {
        std::lock_guard lock(m_);
        std::string s;
        for (auto& [purpose, t] : tally_) s += line(purpose, t) + "; ";
        return s;
    }
    static std::string line(const std::string& purpose, std::map<std::string, uint64_t>& t) {
        return purpose + " provided=" + std::to_string(t["provided"]) + " notFound=" + std::to_string(t["notFound"]) +
               " refused=" + std::to_string(t["refused"]);
    }
    void write_report() {
        if (report_.empty()) return;
        std::ofstream out(report_ + ".tmp");
        for (auto& [purpose, t] : tally_) out << line(purpose, t) << "\n";
        out.close();
        std::rename((report_ + ".tmp").c_str(), report_.c_str());
    }

    std::vector<std::string> purposes_;
    std::string municipality_, report_;
    size_t count_ = 10, batch_ = 10;
    int64_t delay_ms_ = 0;
    std::map<std::string, std::map<std::string, uint64_t>> tally_;
    std::map<std::string, size_t> batch_of_;
    std::mutex m_;
    std::condition_variable cv_;
    bool stopping_ = false;
    std::thread worker_;
};

} // namespace

RENKEI_PLUGIN(Agency, "mock-agency", "0.1.0", RENKEI_KIND_ADAPTER, "juki.IdentityAnswer", "juki.IdentityQuery.Fault")
