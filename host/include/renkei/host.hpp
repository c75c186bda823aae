// A renkei node: loads the configured plugins, routes their messages, offers host services
// (crypto with host-held keys, the clock) and the admin HTTP endpoint.
#pragma once

#include <renkei/trust_store.hpp>
#include <renkei/config.hpp>
#include <renkei/host_services.hpp>
#include <renkei/keys.hpp>
#include <renkei/metrics.hpp>
#include <renkei/plugin_endpoint.hpp>
#include <renkei/policy.hpp>
#include <renkei/router.hpp>

#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace renkei {

class AdminServer;
class AuditLog;
class Links;

struct HostOptions {
    // The renkei executable that runs isolated plugins ("renkei plugin-runner"); defaults to the
    // running executable, which is right for the renkei binary but not for test programs.
    std::filesystem::path runner_path;
    // Clock for plugins and stamps; defaults to the system clock.
    std::function<int64_t()> clock;
    size_t max_envelope_bytes = 16u << 20;
};

class Host : public HostServices {
public:
    Host(HostConfig config, HostOptions options = {});
    ~Host() override;
    Host(const Host&) = delete;
    Host& operator=(const Host&) = delete;

    // Loads and starts every configured plugin, then the admin server. Throws on any failure,
    // after stopping what was started.
    void start();
    // Stops in reverse order. Idempotent.
    void stop();

    // Registers an endpoint built by the caller (before or after start).
    void add_endpoint(std::shared_ptr<PluginEndpoint> endpoint);

    // Accepts an envelope as if sent by local component `origin`: fills id (if empty), from,
    // sent-at and hop count, then routes it. Throws HostCallError when it cannot be accepted.
    void submit(const std::string& origin, kj::ArrayPtr<const kj::byte> envelope,
                std::function<void(int32_t, const std::string&)> done = nullptr);

    const HostConfig& config() const { return config_; }
    bool has_keys() const { return keys() != nullptr; }
    Router& router() { return router_; }
    Metrics& metrics() { return metrics_; }
    // The admin HTTP port actually bound (0 when admin is off).
    int admin_port() const;
    // The bound inter-host endpoint ("" when this node has no inbound links).
    std::string link_endpoint() const;
    // Messages committed to the outbox and not yet acknowledged by the next hop.
    size_t links_pending() const;
    // The audit trail (null before start).
    AuditLog* audit() { return audit_.get(); }
    // Loads the trust store again (SIGHUP): peers' rotated keys and revocations take effect for
    // the next frame and handshake. A store that does not verify, has expired or is older than
    // the current one is refused and the current one stays. Returns what happened (for the log).
    std::string reload_trust();
    // Loads this node's own keys again from keys_dir (SIGHUP, after reload_trust): when they
    // changed, what is signed from now on is signed with the new signing key, links listen and dial
    // with the new CURVE key pair, and the previous sealing key still opens what was sealed to it.
    // Keys the trust store does not list for this node are refused and the current ones stay.
    // Audited. Returns what happened (for the log).
    std::string reload_keys();
    // Serial of the trust store in use (0: keys come from [[peer]]).
    int64_t trust_serial() const;

    // JSON status of every endpoint (for /healthz and tests).
    std::string status_json() const;

    // HostServices
    void submit_from_plugin(const std::string& plugin, kj::ArrayPtr<const kj::byte> envelope) override;
    std::vector<uint8_t> sign(const std::string& key_name, kj::ArrayPtr<const kj::byte> data) override;
    bool verify(const std::string& node_id, kj::ArrayPtr<const kj::byte> data,
                kj::ArrayPtr<const kj::byte> signature) override;
    std::vector<uint8_t> seal(const std::string& recipient, kj::ArrayPtr<const kj::byte> data) override;
    std::vector<uint8_t> open(kj::ArrayPtr<const kj::byte> sealed) override;
    int64_t now_unix_ms() override;
    const OperatingCalendar* calendar() const override { return &calendar_; }

private:
    std::shared_ptr<PluginEndpoint> make_endpoint(const PluginConfig& pc);

    HostConfig config_;
    HostOptions options_;
    OperatingCalendar calendar_;
    // Loaded from keys_dir when present; replaced whole by reload_keys (read through keys()).
    std::shared_ptr<const NodeKeys> keys_, previous_keys_;
    mutable std::mutex keys_mutex_;
    std::shared_ptr<const NodeKeys> keys() const {
        std::lock_guard lock(keys_mutex_);
        return keys_;
    }
    std::optional<Policy> policy_; // loaded from policy_file when set
    void apply_trust(TrustStore ts);
    void check_trust(const TrustStore& ts) const;
    void check_own_keys(const TrustStore& ts, const NodeKeys* keys) const;
    mutable std::mutex trust_mutex_;
    std::optional<TrustStore> trust_; // loaded from trust_store when set
    std::map<std::string, std::string> pinned_curve_; // curve keys written in [[peer]] (must stay trusted)
    Metrics metrics_;
    Router router_;
    std::unique_ptr<AuditLog> audit_;     // <data_dir>/audit
    std::unique_ptr<Links> links_;         // to other hosts, when this node has keys and peers
    std::unique_ptr<AdminServer> admin_;
    std::mutex lifecycle_;
    std::vector<std::shared_ptr<PluginEndpoint>> started_;
    bool running_ = false;
};

} // namespace renkei
