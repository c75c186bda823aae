#include <renkei/isolated_plugin.hpp>

#include <renkei/ipc_frame.hpp>
#include <renkei/log.hpp>

#include <signal.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <sstream>

namespace renkei {
namespace {
using Clock = std::chrono::steady_clock;

std::string describe_exit(int status) {
    if (WIFSIGNALED(status))
        return "killed by signal " + std::to_string(WTERMSIG(status)) + " (" + strsignal(WTERMSIG(status)) + ")";
    if (WIFEXITED(status)) return "exited with code " + std::to_string(WEXITSTATUS(status));
    return "stopped (status " + std::to_string(status) + ")";
}

kj::ArrayPtr<const kj::byte> bytes_of_vec(const std::vector<uint8_t>& v) {
    return kj::ArrayPtr<const kj::byte>(v.data(), v.size());
}
} // namespace

// One child process and the socket the host talks to it on.
class ChildLink {
public:
    explicit ChildLink(zmq::context_t& ctx) : ctx_(ctx) {}
    zmq::context_t& ctx_;
    std::unique_ptr<zmq::socket_t> socket;
    std::filesystem::path socket_path;
    pid_t pid = 0;
    uint64_t generation = 0;
};

IsolatedPlugin::IsolatedPlugin(std::string instance_name, Options options, toml::table settings,
                               HostServices& services)
    : name_(std::move(instance_name)), options_(std::move(options)),
      settings_(std::move(settings)), services_(services) {
    info_.name = name_;
    wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wake_fd_ < 0) throw std::runtime_error("eventfd failed: " + std::string(strerror(errno)));
}

IsolatedPlugin::~IsolatedPlugin() {
    stop();
    if (wake_fd_ >= 0) close(wake_fd_);
}

void IsolatedPlugin::start() {
    std::filesystem::create_directories(options_.run_dir);
    chmod(options_.run_dir.c_str(), 0700); // nobody else may connect to a plugin's socket
    std::promise<void> started;
    auto fut = started.get_future();
    {
        std::lock_guard lock(mutex_);
        state_ = "starting";
    }
    io_ = std::thread([this, p = std::move(started)]() mutable { run(std::move(p)); });
    try {
        fut.get();
    } catch (...) {
        if (io_.joinable()) io_.join();
        throw;
    }
}

void IsolatedPlugin::deliver(Delivery d) {
    {
        std::lock_guard lock(mutex_);
        if (!stopping_) {
            queue_.push_back(std::move(d));
            if (DeliveryWakes::wake_now(*this)) wake();
            return;
        }
    }
    d.done(RENKEI_ERR_RETRY, "plugin '" + name_ + "' is stopping");
}

void IsolatedPlugin::wake() noexcept {
    uint64_t one = 1;
    (void)!write(wake_fd_, &one, sizeof one);
}

void IsolatedPlugin::stop() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
        cv_.notify_all();
        uint64_t one = 1;
        (void)!write(wake_fd_, &one, sizeof one);
    }
    if (io_.joinable()) io_.join();
}

EndpointStatus IsolatedPlugin::status() const {
    std::lock_guard lock(mutex_);
    return EndpointStatus{state_, queue_.size(), in_flight_.size(), handled_, failed_, restarts_};
}

int IsolatedPlugin::child_pid() const {
    std::lock_guard lock(mutex_);
    return pid_;
}

bool IsolatedPlugin::spawn_and_handshake(ChildLink& link, std::string& error) {
    auto log = logger("plugin." + name_);
    ++link.generation;
    link.socket_path = options_.run_dir / (name_ + "-" + std::to_string(getpid()) + "-" +
                                           std::to_string(link.generation) + ".sock");
    std::filesystem::remove(link.socket_path);
    std::string endpoint = "ipc://" + link.socket_path.string();
    link.socket = std::make_unique<zmq::socket_t>(link.ctx_, zmq::socket_type::pair);
    link.socket->set(zmq::sockopt::linger, 0);
    link.socket->bind(endpoint);

    // Everything the child needs is prepared before fork: only async-signal-safe calls follow.
    std::string runner = options_.runner.string(), plugin = options_.plugin_path.string();
    std::vector<std::string> args{runner, "--log-level", options_.log_level, "plugin-runner",
                                  "--plugin", plugin, "--endpoint", endpoint};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        error = "fork failed: " + std::string(strerror(errno));
        return false;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); // the child never outlives the host
        if (getppid() != parent) _exit(126);
        execv(argv[0], argv.data());
        _exit(127);
    }
    link.pid = pid;
    {
        std::lock_guard lock(mutex_);
        pid_ = pid;
    }

    auto deadline = Clock::now() + std::chrono::milliseconds(options_.start_timeout_ms);
    auto await = [&](ipc::Frame::Which want) -> std::unique_ptr<ipc::Received> {
        while (Clock::now() < deadline) {
            auto r = ipc::receive(*link.socket, 50);
            if (r) {
                auto f = r->get();
                if (f.which() == ipc::Frame::LOAD_ERROR) {
                    error = "plugin '" + name_ + "': " + std::string(f.getLoadError());
                    return nullptr;
                }
                if (f.which() == want) return r;
                continue;
            }
            int status = 0;
            if (waitpid(link.pid, &status, WNOHANG) == link.pid) {
                link.pid = 0;
                error = "plugin '" + name_ + "': runner " + describe_exit(status) + " during start" +
                        (WIFEXITED(status) && WEXITSTATUS(status) == 127 ? " (cannot execute " + runner + ")" : "");
                return nullptr;
            }
        }
        error = "plugin '" + name_ + "': runner did not answer within " +
                std::to_string(options_.start_timeout_ms) + " ms";
        return nullptr;
    };

    auto hello = await(ipc::Frame::HELLO);
    if (!hello) return false;
    {
        auto h = hello->get().getHello();
        PluginInfo info;
        info.name = h.getName();
        info.version = h.getVersion();
        info.kind = h.getKind();
        info.abi_major = h.getAbiMajor();
        info.abi_minor = h.getAbiMinor();
        info.path = options_.plugin_path;
        for (auto t : h.getMessageTypes()) info.message_types.emplace_back(t);
        std::lock_guard lock(mutex_);
        if (link.generation > 1 && info.message_types != info_.message_types) {
            error = "plugin '" + name_ + "' changed its message types across a restart";
            return false;
        }
        info_ = std::move(info);
    }
    {
        capnp::MallocMessageBuilder mb;
        auto init = mb.initRoot<ipc::Frame>().initInit();
        init.setInstanceName(name_);
        std::ostringstream settings;
        settings << settings_;
        init.setSettingsToml(settings.str());
        if (!ipc::try_send(*link.socket, mb)) {
            error = "plugin '" + name_ + "': runner went away before init";
            return false;
        }
    }
    if (!await(ipc::Frame::READY)) return false;
    log->info("isolated plugin '{}' running in pid {}", name_, link.pid);
    return true;
}

void IsolatedPlugin::reap_child(ChildLink& link, bool crashed) {
    if (link.pid > 0 && !crashed) {
        // Polite shutdown first, then force.
        capnp::MallocMessageBuilder mb;
        mb.initRoot<ipc::Frame>().setShutdown();
        ipc::try_send(*link.socket, mb);
        auto deadline = Clock::now() + std::chrono::seconds(5);
        int status = 0;
        while (Clock::now() < deadline) {
            if (waitpid(link.pid, &status, WNOHANG) == link.pid) {
                link.pid = 0;
                break;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        if (link.pid > 0) {
            kill(link.pid, SIGKILL);
            waitpid(link.pid, &status, 0);
            link.pid = 0;
        }
    }
    link.socket.reset();
    std::error_code ec;
    std::filesystem::remove(link.socket_path, ec);
    std::lock_guard lock(mutex_);
    pid_ = 0;
}

void IsolatedPlugin::run(std::promise<void> started) {
    auto log = logger("plugin." + name_);
    zmq::context_t ctx(1);
    ChildLink link(ctx);
    std::string error;
    if (!spawn_and_handshake(link, error)) {
        reap_child(link, false);
        {
            std::lock_guard lock(mutex_);
            state_ = "failed";
        }
        started.set_exception(std::make_exception_ptr(std::runtime_error(error)));
        return;
    }
    {
        std::lock_guard lock(mutex_);
        state_ = "running";
    }
    started.set_value();

    uint32_t backoff = options_.first_backoff_ms;
    auto up_since = Clock::now();
    // Deliveries the plugin asked to retry, with when to send them again.
    std::deque<std::pair<Clock::time_point, InFlight>> delayed;

    auto send_deliver = [&](uint64_t seq, const InFlight& f) {
        capnp::MallocMessageBuilder mb;
        auto d = mb.initRoot<ipc::Frame>().initDeliver();
        d.setSeq(seq);
        d.setEnvelope(f.delivery.envelope.asBytes());
        // If the child is gone the delivery stays in flight and goes again after the restart.
        ipc::try_send(*link.socket, mb);
    };

    auto handle_call = [&](ipc::Call::Reader call) {
        capnp::MallocMessageBuilder mb;
        auto reply = mb.initRoot<ipc::Frame>().initReply();
        reply.setId(call.getId());
        try {
            switch (call.which()) {
            case ipc::Call::SEND: services_.submit_from_plugin(name_, call.getSend()); break;
            case ipc::Call::SIGN:
                reply.setData(bytes_of_vec(services_.sign(call.getSign().getKeyName(), call.getSign().getData())));
                break;
            case ipc::Call::VERIFY: {
                auto v = call.getVerify();
                if (!services_.verify(v.getNodeId(), v.getData(), v.getSignature()))
                    throw HostCallError(RENKEI_ERR_DENIED, "signature does not verify");
                break;
            }
            case ipc::Call::SEAL:
                reply.setData(bytes_of_vec(services_.seal(call.getSeal().getRecipient(), call.getSeal().getData())));
                break;
            case ipc::Call::OPEN: reply.setData(bytes_of_vec(services_.open(call.getOpen()))); break;
            }
            reply.setStatus(RENKEI_OK);
        } catch (const HostCallError& e) {
            reply.setStatus(e.code());
            reply.setMessage(e.what());
        } catch (const std::exception& e) {
            reply.setStatus(RENKEI_ERR_INTERNAL);
            reply.setMessage(e.what());
        }
        ipc::try_send(*link.socket, mb); // a dead child needs no answer
    };

    for (;;) {
        // 1. Move due retries back in line, then fill the window.
        std::vector<uint64_t> to_send;
        {
            std::lock_guard lock(mutex_);
            if (stopping_) break;
            auto now = Clock::now();
            while (!delayed.empty() && delayed.front().first <= now) {
                uint64_t seq = next_seq_++;
                in_flight_.emplace(seq, std::move(delayed.front().second));
                delayed.pop_front();
                to_send.push_back(seq);
            }
            while (!queue_.empty() && in_flight_.size() < options_.window) {
                uint64_t seq = next_seq_++;
                in_flight_.emplace(seq, InFlight{std::move(queue_.front()), 0});
                queue_.pop_front();
                to_send.push_back(seq);
            }
        }
        for (auto seq : to_send) send_deliver(seq, in_flight_.at(seq));

        // 2. Wait for the child or for new work.
        zmq::pollitem_t items[] = {{link.socket->handle(), 0, ZMQ_POLLIN, 0}, {nullptr, wake_fd_, ZMQ_POLLIN, 0}};
        zmq::poll(items, 2, std::chrono::milliseconds(delayed.empty() ? 100 : 10));
        if (items[1].revents & ZMQ_POLLIN) {
            uint64_t n;
            (void)!read(wake_fd_, &n, sizeof n);
        }

        // 3. Drain everything the child said.
        while (items[0].revents & ZMQ_POLLIN) {
            auto r = ipc::receive(*link.socket, 0);
            if (!r) break;
            auto f = r->get();
            if (f.which() == ipc::Frame::ACK) {
                auto ack = f.getAck();
                auto it = in_flight_.find(ack.getSeq());
                if (it == in_flight_.end()) continue; // from a previous child: already redelivered
                InFlight done;
                {
                    std::lock_guard lock(mutex_);
                    done = std::move(it->second);
                    in_flight_.erase(it);
                }
                int32_t status = ack.getStatus();
                if (status == RENKEI_ERR_RETRY && done.attempts + 1 < options_.retry.max_attempts) {
                    auto delay = std::chrono::milliseconds(options_.retry.delay_ms(done.attempts));
                    ++done.attempts;
                    delayed.emplace_back(Clock::now() + delay, std::move(done));
                    continue;
                }
                {
                    std::lock_guard lock(mutex_);
                    (status == RENKEI_OK ? handled_ : failed_)++;
                }
                if (status != RENKEI_OK)
                    log->warn("{} failed with status {}: {}", done.delivery.type, status, std::string(ack.getMessage()));
                done.delivery.done(status, ack.getMessage());
            } else if (f.which() == ipc::Frame::CALL) {
                handle_call(f.getCall());
            }
        }

        // 4. Did the child die?
        int status = 0;
        if (link.pid > 0 && waitpid(link.pid, &status, WNOHANG) == link.pid) {
            link.pid = 0;
            log->error("isolated plugin '{}' {}; {} message(s) in flight will be delivered again",
                       name_, describe_exit(status), in_flight_.size());
            std::vector<Delivery> poisoned;
            {
                std::lock_guard lock(mutex_);
                // The child handles deliveries in order, so the oldest unacknowledged one is
                // the message it died on; only that one is blamed, the rest simply go again.
                for (auto it = in_flight_.rbegin(); it != in_flight_.rend(); ++it) {
                    auto& d = it->second.delivery;
                    bool culprit = it->first == in_flight_.begin()->first;
                    if (culprit && ++d.crashes >= options_.max_crashes_per_message)
                        poisoned.push_back(std::move(d));
                    else
                        queue_.push_front(std::move(d));
                }
                in_flight_.clear();
                ++restarts_;
                failed_ += poisoned.size();
                state_ = "restarting";
            }
            for (auto& d : poisoned) {
                log->error("{} gave up: the plugin crashed {} times while handling it", d.type, d.crashes);
                d.done(RENKEI_ERR_INTERNAL, "plugin '" + name_ + "' crashed " + std::to_string(d.crashes) +
                                                " times while handling this message");
            }
            reap_child(link, true);
            if (Clock::now() - up_since > std::chrono::seconds(60)) backoff = options_.first_backoff_ms;
            for (;;) {
                {
                    std::unique_lock lock(mutex_);
                    if (cv_.wait_for(lock, std::chrono::milliseconds(backoff), [&] { return stopping_; })) break;
                }
                backoff = std::min(backoff * 2, options_.max_backoff_ms);
                std::string why;
                if (spawn_and_handshake(link, why)) {
                    up_since = Clock::now();
                    std::lock_guard lock(mutex_);
                    state_ = "running";
                    break;
                }
                log->error("restart of '{}' failed: {}; next try in {} ms", name_, why, backoff);
                reap_child(link, false);
                std::lock_guard lock(mutex_);
                state_ = "failed";
            }
        }
    }

    // Stopping: the child finishes what it holds, then exits; anything unacknowledged goes back
    // to the caller as retryable so that nothing is lost.
    if (link.pid > 0) {
        auto drain_until = Clock::now() + std::chrono::seconds(5);
        while (!in_flight_.empty() && Clock::now() < drain_until) {
            auto r = ipc::receive(*link.socket, 50);
            if (!r) continue;
            auto f = r->get();
            if (f.which() == ipc::Frame::CALL) {
                handle_call(f.getCall());
            } else if (f.which() == ipc::Frame::ACK) {
                auto it = in_flight_.find(f.getAck().getSeq());
                if (it == in_flight_.end()) continue;
                auto d = std::move(it->second.delivery);
                {
                    std::lock_guard lock(mutex_);
                    in_flight_.erase(it);
                }
                d.done(f.getAck().getStatus(), f.getAck().getMessage());
            }
        }
    }
    reap_child(link, false);
    std::vector<Delivery> left;
    {
        std::lock_guard lock(mutex_);
        for (auto& [seq, f] : in_flight_) left.push_back(std::move(f.delivery));
        in_flight_.clear();
        for (auto& d : queue_) left.push_back(std::move(d));
        queue_.clear();
        state_ = "stopped";
    }
    for (auto& [t, f] : delayed) left.push_back(std::move(f.delivery));
    for (auto& d : left) d.done(RENKEI_ERR_RETRY, "host stopping");
}

} // namespace renkei
