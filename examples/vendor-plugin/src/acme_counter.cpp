// A vendor's adapter: counts the requests it answered and reports the count in each reply.
// Shows the whole SDK surface a vendor needs: settings, logging, replying, errors.
#include <renkei/sdk.hpp>

#include <atomic>
#include <string>

namespace {

class AcmeCounter : public renkei::sdk::Plugin {
public:
    using Plugin::Plugin;

    void start() override {
        greeting_ = host().config_or("greeting", "hello");
        host().info("acme counter ready");
    }

    void handle(const renkei::sdk::Message& m) override {
        if (m.payload().size() > 1024)
            throw renkei::sdk::Error(RENKEI_ERR_INVALID, "payload too large", "payload", "at most 1024 bytes");
        std::string answer = greeting_ + " #" + std::to_string(++count_);
        host().reply(m, "acme.Counted",
                     kj::ArrayPtr<const kj::byte>(reinterpret_cast<const kj::byte*>(answer.data()), answer.size()));
    }

private:
    std::string greeting_;
    std::atomic<uint64_t> count_{0};
};

} // namespace

RENKEI_PLUGIN(AcmeCounter, "acme-counter", "2.3.0", RENKEI_KIND_ADAPTER, "acme.Count")
