// A LocalEndpoint that records every envelope it receives, for tests that wait for replies.
#pragma once

#include <renkei/envelope.hpp>
#include <renkei/host.hpp>
#include <renkei/local_endpoint.hpp>

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace renkei::test {

struct Received {
    std::string type;
    std::string id;          // hex
    std::string correlation; // hex
    std::string payload;
    uint32_t fault_code = 0;
    std::string fault_message;
};

class Collector {
public:
    Collector(std::string name, std::vector<std::string> types) {
        endpoint_ = std::make_shared<LocalEndpoint>(std::move(name), std::move(types),
                                                    [this](const EnvelopeView& v, std::string&) {
                                                        auto e = v.get();
                                                        Received r;
                                                        r.type = e.getType();
                                                        r.id = hex(e.getId());
                                                        r.correlation = hex(e.getCorrelationId());
                                                        auto p = e.getPayload();
                                                        r.payload.assign(reinterpret_cast<const char*>(p.begin()), p.size());
                                                        if (e.hasFault()) {
                                                            r.fault_code = e.getFault().getCode();
                                                            r.fault_message = e.getFault().getMessage();
                                                        }
                                                        std::lock_guard lock(mutex_);
                                                        got_.push_back(std::move(r));
                                                        cv_.notify_all();
                                                        return RENKEI_OK;
                                                    });
    }
    std::shared_ptr<LocalEndpoint> endpoint() const { return endpoint_; }
    const std::string& name() const { return endpoint_->instance_name(); }

    // Waits until at least `n` envelopes arrived (or `timeout`); returns a copy of all of them.
    std::vector<Received> wait_for(size_t n, std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
        std::unique_lock lock(mutex_);
        cv_.wait_for(lock, timeout, [&] { return got_.size() >= n; });
        return got_;
    }
    std::vector<Received> all() {
        std::lock_guard lock(mutex_);
        return got_;
    }

private:
    std::shared_ptr<LocalEndpoint> endpoint_;
    std::mutex mutex_;
    std::condition_variable cv_;
    std::vector<Received> got_;
};

// Builds and submits a request from `origin` to the host's own node; returns the id (hex).
inline std::string send_request(Host& host, const std::string& origin, const std::string& type,
                                const std::string& payload) {
    capnp::MallocMessageBuilder mb;
    auto e = mb.initRoot<schema::Envelope>();
    auto id = new_message_id();
    e.setId(kj::ArrayPtr<const kj::byte>(id.data(), id.size()));
    e.setType(type);
    e.setTo(host.config().node_id);
    e.setPurpose("test");
    e.setPayload(bytes_of(payload));
    auto flat = capnp::messageToFlatArray(mb);
    host.submit(origin, flat.asBytes());
    return hex(id);
}

} // namespace renkei::test
