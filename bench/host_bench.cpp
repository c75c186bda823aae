// Round trips through one host: a client endpoint sends echo.Ping, mock-echo answers echo.Pong.
// Prints messages/s and latency percentiles for an in-process and an isolated plugin.
#include <renkei/host.hpp>
#include <renkei/local_endpoint.hpp>
#include <renkei/log.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <vector>

using namespace renkei;
using Clock = std::chrono::steady_clock;

namespace {

void run(Isolation iso, int messages, int window) {
    HostConfig cfg;
    cfg.node_id = "muni:131016";
    cfg.data_dir = std::filesystem::temp_directory_path() / ("renkei-bench-" + std::to_string(getpid()));
    PluginConfig pc;
    pc.name = "echo";
    pc.path = std::string(RENKEI_BUILD_DIR) + "/adapters/mock-echo/mock_echo.so";
    pc.isolation = iso;
    cfg.plugins.push_back(pc);
    HostOptions opts;
    opts.runner_path = std::string(RENKEI_BUILD_DIR) + "/host/renkei";
    Host host(cfg, opts);
    host.start();

    std::mutex m;
    std::condition_variable cv;
    int received = 0;
    std::vector<Clock::time_point> sent_at(messages);
    std::vector<double> latency_us;
    latency_us.reserve(messages);
    auto client = std::make_shared<LocalEndpoint>("bench-client", std::vector<std::string>{"echo.Pong"},
                                                  [&](const EnvelopeView& v, std::string&) {
                                                      auto p = v.get().getPayload();
                                                      int idx = 0;
                                                      memcpy(&idx, p.begin(), sizeof idx);
                                                      std::lock_guard lock(m);
                                                      latency_us.push_back(std::chrono::duration<double, std::micro>(
                                                                               Clock::now() - sent_at[idx]).count());
                                                      ++received;
                                                      cv.notify_all();
                                                      return RENKEI_OK;
                                                  });
    host.add_endpoint(client);

    auto t0 = Clock::now();
    for (int i = 0; i < messages; ++i) {
        {
            std::unique_lock lock(m);
            cv.wait(lock, [&] { return i - received < window; });
        }
        capnp::MallocMessageBuilder mb;
        auto e = mb.initRoot<schema::Envelope>();
        e.setType("echo.Ping");
        e.setTo(cfg.node_id);
        e.setPayload(kj::ArrayPtr<const kj::byte>(reinterpret_cast<const kj::byte*>(&i), sizeof i));
        auto flat = capnp::messageToFlatArray(mb);
        sent_at[i] = Clock::now();
        host.submit("bench-client", flat.asBytes());
    }
    {
        std::unique_lock lock(m);
        cv.wait(lock, [&] { return received == messages; });
    }
    double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    std::sort(latency_us.begin(), latency_us.end());
    printf("%-12s %8d round trips  %10.0f msg/s  p50 %7.1f us  p99 %7.1f us  (window %d)\n",
           iso == Isolation::process ? "isolated" : "in-process", messages, messages / secs,
           latency_us[latency_us.size() / 2], latency_us[latency_us.size() * 99 / 100], window);
    host.stop();
    std::filesystem::remove_all(cfg.data_dir);
}

} // namespace

int main() {
    init_logging("warn");
    printf("host_bench: echo round trips through one host (request routed to the plugin, reply routed back)\n");
    run(Isolation::in_process, 200000, 256);
    run(Isolation::process, 50000, 256);
    return 0;
}
