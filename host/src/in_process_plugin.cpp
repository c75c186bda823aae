#include <renkei/in_process_plugin.hpp>

#include <renkei/log.hpp>

#include <chrono>

namespace renkei {

InProcessPlugin::InProcessPlugin(std::string instance_name, std::shared_ptr<LoadedPlugin> library,
                                 std::unique_ptr<PluginContext> context, DeliveryRetry retry)
    : name_(std::move(instance_name)), library_(std::move(library)),
      context_(std::move(context)), retry_(retry) {}

InProcessPlugin::~InProcessPlugin() { stop(); }

void InProcessPlugin::start() {
    const auto& d = library_->descriptor();
    renkei_error err{};
    int32_t rc = d.create(context_->api(), &instance_, &err);
    if (rc != RENKEI_OK || instance_ == nullptr) {
        instance_ = nullptr;
        throw std::runtime_error("plugin '" + name_ + "': create failed (status " +
                                 std::to_string(rc) + "): " + err.message);
    }
    err = {};
    rc = d.start(instance_, &err);
    if (rc != RENKEI_OK) {
        d.destroy(instance_);
        instance_ = nullptr;
        throw std::runtime_error("plugin '" + name_ + "': start failed (status " +
                                 std::to_string(rc) + "): " + err.message);
    }
    {
        std::lock_guard lock(mutex_);
        started_ = true;
        state_ = "running";
    }
    worker_ = std::thread([this] {
        name_thread("plugin-" + name_);
        run();
    });
}

void InProcessPlugin::deliver(Delivery delivery) {
    {
        std::unique_lock lock(mutex_);
        if (!stopping_ && started_) {
            queue_.push_back(std::move(delivery));
            lock.unlock();
            // Unlocked: the worker it wakes does not then wait for the mutex.
            if (DeliveryWakes::wake_now(*this)) cv_.notify_one();
            return;
        }
    }
    delivery.done(RENKEI_ERR_RETRY, "plugin '" + name_ + "' is not running");
}

void InProcessPlugin::wake() noexcept { cv_.notify_one(); }

void InProcessPlugin::run() {
    const auto& d = library_->descriptor();
    auto log = logger("plugin." + name_);
    for (;;) {
        Delivery msg;
        {
            std::unique_lock lock(mutex_);
            cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
            if (queue_.empty()) return; // stopping and drained
            if (stopping_) break;       // leave the rest queued for stop()
            msg = std::move(queue_.front());
            queue_.pop_front();
            ++in_flight_;
        }
        auto bytes = msg.envelope.asBytes();
        int32_t rc = RENKEI_OK;
        renkei_error err{};
        for (uint32_t attempt = 0;; ++attempt) {
            err = {};
            auto call = [&] { return d.handle(instance_, bytes.begin(), bytes.size(), &err); };
            try {
                // A plugin that keeps state in the host store gets exactly-once effects.
                rc = context_->store() ? context_->store()->handle_once(msg.id, call) : call();
            } catch (const std::exception& e) {
                rc = RENKEI_ERR_RETRY; // the store failed (disk?): nothing committed, try again
                snprintf(err.message, sizeof err.message, "plugin store: %s", e.what());
            }
            if (rc != RENKEI_ERR_RETRY || attempt + 1 >= retry_.max_attempts) break;
            std::unique_lock lock(mutex_);
            if (cv_.wait_for(lock, std::chrono::milliseconds(retry_.delay_ms(attempt)),
                             [&] { return stopping_; }))
                break;
        }
        {
            std::lock_guard lock(mutex_);
            --in_flight_;
            (rc == RENKEI_OK ? handled_ : failed_)++;
        }
        if (rc != RENKEI_OK) log->warn("{} failed with status {}: {}", msg.type, rc, err.message);
        msg.done(rc, err.message);
    }
}

void InProcessPlugin::stop() {
    std::deque<Delivery> left;
    {
        std::lock_guard lock(mutex_);
        if (!started_ || stopping_) {
            stopping_ = true;
            if (!worker_.joinable()) return;
        }
        stopping_ = true;
        state_ = "stopping";
        cv_.notify_all();
    }
    if (worker_.joinable()) worker_.join();
    {
        std::lock_guard lock(mutex_);
        left.swap(queue_);
    }
    for (auto& m : left) m.done(RENKEI_ERR_RETRY, "host stopping");
    if (instance_ != nullptr) {
        const auto& d = library_->descriptor();
        d.stop(instance_);
        d.destroy(instance_);
        instance_ = nullptr;
    }
    std::lock_guard lock(mutex_);
    state_ = "stopped";
}

EndpointStatus InProcessPlugin::status() const {
    std::lock_guard lock(mutex_);
    return EndpointStatus{state_, queue_.size(), in_flight_, handled_, failed_, 0};
}

} // namespace renkei
