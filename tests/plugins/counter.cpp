// Counts the messages it handles in the host store: "count" and one "msg:<id>" key per message.
// With the store's exactly-once effect, after any crash and redelivery count equals the number of
// distinct messages sent. settings.start_delay_ms makes its start slow.
#include <renkei/sdk.hpp>

#include <chrono>
#include <thread>

namespace {

class Counter : public renkei::sdk::Plugin {
public:
    using Plugin::Plugin;
    void start() override {
        // A slow start (settings.start_delay_ms), as a plugin that opens a big store has: the
        // host must not take messages for it before it runs.
        auto delay = std::stoll(host().config_or("start_delay_ms", "0"));
        std::this_thread::sleep_for(std::chrono::milliseconds(delay));
        store_.emplace(host().raw());
        if (!store_->available()) throw renkei::sdk::Error(RENKEI_ERR_UNSUPPORTED, "counter needs renkei.store.v1");
    }
    void handle(const renkei::sdk::Message& m) override {
        static const char digits[] = "0123456789abcdef";
        std::string key = "msg:";
        for (auto b : m.envelope().getId()) {
            key.push_back(digits[b >> 4]);
            key.push_back(digits[b & 15]);
        }
        if (store_->get(key)) throw renkei::sdk::Error(RENKEI_ERR_INTERNAL, "handled twice: " + key);
        store_->put(key, "1");
        auto count = store_->get("count");
        store_->put("count", std::to_string(count ? std::stoll(*count) + 1 : 1));
    }

private:
    std::optional<renkei::sdk::Store> store_;
};

} // namespace

RENKEI_PLUGIN(Counter, "counter", "0.0.1", RENKEI_KIND_BUSINESS, "counter.Count")
