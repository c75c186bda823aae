// Crashes on purpose, to prove that an isolated plugin's crash is contained and loses nothing.
//   crashy.Work    payload "ok"          -> replies crashy.Done with the same payload
//                  payload "crash-once"  -> the first time (no marker file yet) creates the
//                                           marker and dies with SIGSEGV; afterwards replies
//                  payload "crash-always"-> dies every time (a poison message)
#include <renkei/sdk.hpp>

#include <csignal>
#include <fstream>

namespace {

class Crashy : public renkei::sdk::Plugin {
public:
    using Plugin::Plugin;
    void start() override { marker_ = host().config_or("crash_marker", ""); }
    void handle(const renkei::sdk::Message& m) override {
        auto p = m.payload();
        std::string body(reinterpret_cast<const char*>(p.begin()), p.size());
        if (body == "crash-always") std::raise(SIGSEGV);
        if (body == "crash-once" && !marker_.empty() && !std::ifstream(marker_).good()) {
            std::ofstream(marker_) << "crashed\n";
            std::raise(SIGSEGV);
        }
        host().reply(m, "crashy.Done", p);
    }

private:
    std::string marker_;
};

} // namespace

RENKEI_PLUGIN(Crashy, "crashy", "0.0.1", RENKEI_KIND_ADAPTER, "crashy.Work")
