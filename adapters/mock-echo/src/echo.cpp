// mock-echo: answers every echo.Ping with an echo.Pong carrying the same payload. It proves the
// plugin boundary end to end (load, create, start, handle, host send, stop, destroy).
#include <renkei/sdk.hpp>

namespace {

class Echo : public renkei::sdk::Plugin {
public:
    using Plugin::Plugin;

    void start() override { prefix_ = host().config_or("reply_prefix", ""); }

    void handle(const renkei::sdk::Message& m) override {
        if (m.type() != "echo.Ping")
            throw renkei::sdk::Error(RENKEI_ERR_UNSUPPORTED, "unexpected type " + m.type(), "type");
        auto in = m.payload();
        std::string body = prefix_ + std::string(reinterpret_cast<const char*>(in.begin()), in.size());
        host().reply(m, "echo.Pong",
                     kj::ArrayPtr<const kj::byte>(reinterpret_cast<const kj::byte*>(body.data()),
                                                  body.size()));
    }

private:
    std::string prefix_;
};

} // namespace

RENKEI_PLUGIN(Echo, "mock-echo", "1.0.0", RENKEI_KIND_ADAPTER, "echo.Ping")
