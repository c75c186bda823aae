#include <renkei/plugin_endpoint.hpp>

namespace renkei {
namespace {
thread_local DeliveryWakes* open_run = nullptr;
} // namespace

DeliveryWakes::DeliveryWakes() {
    if (open_run) return; // nested: the outer run holds the wakes
    open_run = this;
    open_ = true;
}

DeliveryWakes::~DeliveryWakes() {
    if (!open_) return;
    open_run = nullptr;
    for (auto& h : held_)
        if (h.since_wake > 0) h.endpoint->wake();
}

bool DeliveryWakes::wake_now(PluginEndpoint& ep) {
    DeliveryWakes* run = open_run;
    if (!run) return true;
    for (auto& h : run->held_)
        if (h.endpoint.get() == &ep) {
            if (++h.since_wake < kEvery) return false;
            h.since_wake = 0;
            return true;
        }
    auto owned = ep.weak_from_this().lock();
    if (!owned) return true;
    run->held_.push_back({std::move(owned), 1});
    return false;
}

} // namespace renkei
