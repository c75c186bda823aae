// Throws C++ exceptions from plugin code. The SDK must turn them into a status at the boundary
// and the host must keep serving.
//   throwing.Work  payload "throw" -> std::runtime_error; anything else -> replies throwing.Done
//   settings.throw_in_start = "yes" -> start() throws, so the host refuses to start the plugin
#include <renkei/sdk.hpp>

#include <stdexcept>

namespace {

class Throwing : public renkei::sdk::Plugin {
public:
    using Plugin::Plugin;
    void start() override {
        if (host().config_or("throw_in_start", "no") == "yes")
            throw std::runtime_error("refusing to start: throw_in_start is set");
    }
    void handle(const renkei::sdk::Message& m) override {
        auto p = m.payload();
        if (std::string(reinterpret_cast<const char*>(p.begin()), p.size()) == "throw")
            throw std::runtime_error("deliberate failure in handle");
        host().reply(m, "throwing.Done", p);
    }
};

} // namespace

RENKEI_PLUGIN(Throwing, "throwing", "0.0.1", RENKEI_KIND_ADAPTER, "throwing.Work")
