// The child side of process isolation: loads the plugin, and serves it the host API by forwarding
// every call to the host over the ipc:// socket. Runs as "renkei plugin-runner".
#include <renkei/ipc_frame.hpp>
#include <renkei/isolated_plugin.hpp>
#include <renkei/log.hpp>
#include <renkei/plugin_context.hpp>
#include <renkei/plugin_loader.hpp>

#include <unistd.h>

#include <chrono>
#include <cstring>
#include <deque>
#include <mutex>

namespace renkei {
namespace {

// HostServices answered by the parent host. Thread-safe: plugin threads may call concurrently
// with the main loop, so every use of the socket is under one mutex, and frames that arrive while
// a caller waits for its reply are parked for the main loop.
class RemoteServices : public HostServices {
public:
    explicit RemoteServices(zmq::socket_t& socket) : socket_(socket) {}

    void submit_from_plugin(const std::string&, kj::ArrayPtr<const kj::byte> envelope) override {
        call([&](ipc::Call::Builder c) { c.setSend(envelope); });
    }
    std::vector<uint8_t> sign(const std::string& key, kj::ArrayPtr<const kj::byte> data) override {
        return call([&](ipc::Call::Builder c) {
            auto s = c.initSign();
            s.setKeyName(key);
            s.setData(data);
        });
    }
    bool verify(const std::string& node, kj::ArrayPtr<const kj::byte> data,
                kj::ArrayPtr<const kj::byte> signature) override {
        try {
            call([&](ipc::Call::Builder c) {
                auto v = c.initVerify();
                v.setNodeId(node);
                v.setData(data);
                v.setSignature(signature);
            });
            return true;
        } catch (const HostCallError& e) {
            if (e.code() == RENKEI_ERR_DENIED) return false;
            throw;
        }
    }
    std::vector<uint8_t> seal(const std::string& recipient, kj::ArrayPtr<const kj::byte> data) override {
        return call([&](ipc::Call::Builder c) {
            auto s = c.initSeal();
            s.setRecipient(recipient);
            s.setData(data);
        });
    }
    std::vector<uint8_t> open(kj::ArrayPtr<const kj::byte> sealed) override {
        return call([&](ipc::Call::Builder c) { c.setOpen(sealed); });
    }
    int64_t now_unix_ms() override {
        return std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::system_clock::now().time_since_epoch())
            .count();
    }

    // The next frame for the main loop (parked first); null after `timeout_ms`.
    std::unique_ptr<ipc::Received> next(long timeout_ms) {
        std::lock_guard lock(mutex_);
        if (!parked_.empty()) {
            auto r = std::move(parked_.front());
            parked_.pop_front();
            return r;
        }
        return ipc::receive(socket_, timeout_ms);
    }

    void send(capnp::MessageBuilder& mb) {
        std::lock_guard lock(mutex_);
        ipc::send(socket_, mb);
    }

private:
    template <typename Fill> std::vector<uint8_t> call(Fill&& fill) {
        std::lock_guard lock(mutex_);
        uint64_t id = ++next_id_;
        capnp::MallocMessageBuilder mb;
        auto c = mb.initRoot<ipc::Frame>().initCall();
        c.setId(id);
        fill(c);
        ipc::send(socket_, mb);
        for (;;) {
            auto r = ipc::receive(socket_, 1000);
            if (!r) continue; // the host answers or kills us (PDEATHSIG); never give up silently
            auto f = r->get();
            if (f.which() == ipc::Frame::REPLY && f.getReply().getId() == id) {
                auto reply = f.getReply();
                if (reply.getStatus() != RENKEI_OK)
                    throw HostCallError(static_cast<renkei_status>(reply.getStatus()), reply.getMessage());
                auto d = reply.getData();
                return std::vector<uint8_t>(d.begin(), d.end());
            }
            parked_.push_back(std::move(r));
        }
    }

    zmq::socket_t& socket_;
    std::mutex mutex_;
    std::deque<std::unique_ptr<ipc::Received>> parked_;
    uint64_t next_id_ = 0;
};

void send_load_error(RemoteServices& remote, const std::string& text) {
    capnp::MallocMessageBuilder mb;
    mb.initRoot<ipc::Frame>().setLoadError(text);
    remote.send(mb);
}

} // namespace

int run_plugin_runner(const std::string& plugin_path, const std::string& endpoint) {
    zmq::context_t ctx(1);
    zmq::socket_t socket(ctx, zmq::socket_type::pair);
    socket.set(zmq::sockopt::linger, 2000); // let a final loadError or ack reach the host
    socket.connect(endpoint);
    RemoteServices remote(socket);
    auto log = logger("runner");

    std::shared_ptr<LoadedPlugin> lib;
    try {
        lib = load_plugin(plugin_path);
    } catch (const std::exception& e) {
        send_load_error(remote, e.what());
        return 2;
    }
    const auto& info = lib->info();
    {
        capnp::MallocMessageBuilder mb;
        auto h = mb.initRoot<ipc::Frame>().initHello();
        h.setName(info.name);
        h.setVersion(info.version);
        h.setKind(info.kind);
        h.setAbiMajor(info.abi_major);
        h.setAbiMinor(info.abi_minor);
        h.setPid(getpid());
        auto types = h.initMessageTypes(info.message_types.size());
        for (size_t i = 0; i < info.message_types.size(); ++i) types.set(i, info.message_types[i]);
        remote.send(mb);
    }

    std::unique_ptr<ipc::Received> init;
    while (!(init = remote.next(1000)) || init->get().which() != ipc::Frame::INIT) {
        if (init && init->get().which() == ipc::Frame::SHUTDOWN) return 0;
    }
    std::string instance_name = init->get().getInit().getInstanceName();
    toml::table settings;
    try {
        settings = toml::parse(std::string(init->get().getInit().getSettingsToml()));
    } catch (const std::exception& e) {
        send_load_error(remote, std::string("settings: ") + e.what());
        return 2;
    }
    PluginContext context(instance_name, std::move(settings), remote);
    const auto& d = lib->descriptor();
    void* instance = nullptr;
    renkei_error err{};
    if (int32_t rc = d.create(context.api(), &instance, &err); rc != RENKEI_OK || instance == nullptr) {
        send_load_error(remote, "create failed (status " + std::to_string(rc) + "): " + err.message);
        return 2;
    }
    err = {};
    if (int32_t rc = d.start(instance, &err); rc != RENKEI_OK) {
        d.destroy(instance);
        send_load_error(remote, "start failed (status " + std::to_string(rc) + "): " + err.message);
        return 2;
    }
    {
        capnp::MallocMessageBuilder mb;
        mb.initRoot<ipc::Frame>().setReady();
        remote.send(mb);
    }

    for (;;) {
        auto r = remote.next(1000);
        if (!r) continue;
        auto f = r->get();
        if (f.which() == ipc::Frame::SHUTDOWN) break;
        if (f.which() != ipc::Frame::DELIVER) continue;
        auto deliver = f.getDeliver();
        auto env = deliver.getEnvelope();
        // The plugin is promised 8-byte-aligned bytes.
        auto words = kj::heapArray<capnp::word>((env.size() + 7) / 8);
        if (env.size() > 0) std::memcpy(words.begin(), env.begin(), env.size());
        err = {};
        int32_t rc = d.handle(instance, reinterpret_cast<const uint8_t*>(words.begin()), env.size(), &err);
        capnp::MallocMessageBuilder mb;
        auto ack = mb.initRoot<ipc::Frame>().initAck();
        ack.setSeq(deliver.getSeq());
        ack.setStatus(rc);
        ack.setMessage(err.message);
        remote.send(mb);
    }
    d.stop(instance);
    d.destroy(instance);
    return 0;
}

} // namespace renkei
