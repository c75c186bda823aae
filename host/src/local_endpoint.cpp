#include <renkei/local_endpoint.hpp>
#include <renkei/log.hpp>

namespace renkei {

LocalEndpoint::LocalEndpoint(std::string name, std::vector<std::string> types, Handler handler)
    : handler_(std::move(handler)) {
    info_.name = std::move(name);
    info_.version = RENKEI_VERSION;
    info_.kind = RENKEI_KIND_ADAPTER;
    info_.abi_major = RENKEI_ABI_MAJOR;
    info_.abi_minor = RENKEI_ABI_MINOR;
    info_.message_types = std::move(types);
}

LocalEndpoint::~LocalEndpoint() { stop(); }

void LocalEndpoint::start() {
    worker_ = std::thread([this] {
        name_thread("ep-" + info_.name);
        for (;;) {
            Delivery d;
            {
                std::unique_lock lock(mutex_);
                cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
                if (queue_.empty()) return;
                d = std::move(queue_.front());
                queue_.pop_front();
            }
            std::string error;
            int32_t rc;
            try {
                auto bytes = d.envelope.asBytes();
                rc = handler_(EnvelopeView::decode(bytes.begin(), bytes.size()), error);
            } catch (const std::exception& e) {
                rc = RENKEI_ERR_INTERNAL;
                error = e.what();
            }
            {
                std::lock_guard lock(mutex_);
                (rc == RENKEI_OK ? handled_ : failed_)++;
            }
            d.done(rc, error);
        }
    });
}

void LocalEndpoint::deliver(Delivery d) {
    {
        std::lock_guard lock(mutex_);
        queue_.push_back(std::move(d));
    }
    // Unlocked: the worker it wakes does not then wait for the mutex.
    if (DeliveryWakes::wake_now(*this)) cv_.notify_one();
}

void LocalEndpoint::wake() noexcept { cv_.notify_one(); }

void LocalEndpoint::stop() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
        cv_.notify_all();
    }
    if (worker_.joinable()) worker_.join();
}

EndpointStatus LocalEndpoint::status() const {
    std::lock_guard lock(mutex_);
    return {stopping_ ? "stopped" : "running", queue_.size(), 0, handled_, failed_, 0};
}

} // namespace renkei
