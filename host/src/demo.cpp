#include <renkei/demo.hpp>

#include <renkei/host.hpp>
#include <renkei/isolated_plugin.hpp>
#include <renkei/local_endpoint.hpp>

#include <httplib.h>

#include <chrono>
#include <future>
#include <iostream>

namespace renkei {
namespace {

struct RoundTrip {
    bool ok = false;
    std::string reply;
    double ms = 0;
    std::string error;
};

// Sends echo.Ping from a local client endpoint and waits for the correlated echo.Pong.
RoundTrip ping(Host& host, const std::string& text) {
    auto promise = std::make_shared<std::promise<RoundTrip>>();
    auto fut = promise->get_future();
    auto sent_id = std::make_shared<MessageId>();
    static int n = 0;
    auto client = std::make_shared<LocalEndpoint>(
        "demo-client-" + std::to_string(++n), std::vector<std::string>{"echo.Pong", "echo.Ping.Fault"},
        [promise, sent_id](const EnvelopeView& env, std::string&) {
            RoundTrip r;
            auto e = env.get();
            if (std::string(e.getType()) == "echo.Ping.Fault") {
                r.error = e.getFault().getMessage();
            } else if (to_message_id(e.getCorrelationId()) != *sent_id) {
                r.error = "reply not correlated with the request";
            } else {
                r.ok = true;
                auto p = e.getPayload();
                r.reply.assign(reinterpret_cast<const char*>(p.begin()), p.size());
            }
            try {
                promise->set_value(r);
            } catch (const std::future_error&) {
            }
            return RENKEI_OK;
        });
    host.add_endpoint(client);

    capnp::MallocMessageBuilder mb;
    auto e = mb.initRoot<schema::Envelope>();
    *sent_id = new_message_id();
    e.setId(kj::ArrayPtr<const kj::byte>(sent_id->data(), sent_id->size()));
    e.setType("echo.Ping");
    e.setTo(host.config().node_id);
    e.setPurpose("demo");
    e.setOperatorId("demo-operator");
    e.setPayload(bytes_of(text));
    auto flat = capnp::messageToFlatArray(mb);
    auto t0 = std::chrono::steady_clock::now();
    host.submit(client->instance_name(), flat.asBytes());
    RoundTrip r;
    if (fut.wait_for(std::chrono::seconds(10)) != std::future_status::ready)
        r.error = "no answer within 10 s";
    else
        r = fut.get();
    r.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    host.router().remove_endpoint(client->instance_name());
    client->stop();
    return r;
}

bool report(const char* step, const RoundTrip& r, const std::string& sent) {
    if (r.ok)
        std::cout << "  " << step << ": sent echo.Ping \"" << sent << "\" -> got echo.Pong \"" << r.reply
                  << "\" (correlated, " << std::fixed << std::setprecision(2) << r.ms << " ms)\n";
    else
        std::cout << "  " << step << ": FAILED: " << r.error << "\n";
    return r.ok;
}

} // namespace

int run_demo(const std::filesystem::path& build_dir, const std::filesystem::path& source_dir) {
    bool ok = true;
    auto config_path = source_dir / "examples/echo/node.toml";
    std::cout << "renkei demo: one node with the mock-echo adapter (" << config_path.string() << ")\n";
    for (auto isolation : {Isolation::in_process, Isolation::process}) {
        HostConfig cfg = load_config(config_path, {build_dir});
        cfg.data_dir = std::filesystem::temp_directory_path() / ("renkei-demo-" + std::to_string(getpid()));
        for (auto& p : cfg.plugins) p.isolation = isolation;
        Host host(cfg);
        host.start();
        std::string mode = isolation == Isolation::process ? "isolated process" : "in-process";
        std::cout << "\n[" << mode << "] node " << cfg.node_id << ", plugin " << host.router().endpoints()[0]->info().name
                  << " " << host.router().endpoints()[0]->info().version << "\n";
        std::string text = "本人確認 round trip";
        ok &= report("round trip", ping(host, text), text);
        if (isolation == Isolation::process) {
            auto ep = std::dynamic_pointer_cast<IsolatedPlugin>(host.router().handler_for("echo.Ping"));
            int pid = ep ? ep->child_pid() : 0;
            if (pid > 0) {
                std::cout << "  killing the plugin process (pid " << pid << ") with SIGKILL...\n";
                kill(pid, SIGKILL);
                ok &= report("after crash", ping(host, "still there?"), "still there?");
                std::cout << "  plugin restarts: " << ep->status().restarts << "\n";
            }
        }
        httplib::Client admin("127.0.0.1", host.admin_port());
        auto health = admin.Get("/healthz");
        auto metrics = admin.Get("/metrics");
        bool admin_ok = health && health->status == 200 && metrics && metrics->status == 200;
        std::cout << "  admin http://127.0.0.1:" << host.admin_port() << ": /healthz "
                  << (health ? std::to_string(health->status) : "unreachable") << "\n";
        if (metrics) {
            std::istringstream lines(metrics->body);
            for (std::string line; std::getline(lines, line);)
                if (line.find("echo.Ping") != std::string::npos && line.find("_in_total") != std::string::npos)
                    std::cout << "  /metrics: " << line << "\n";
        }
        ok &= admin_ok;
        host.stop();
        std::filesystem::remove_all(cfg.data_dir);
    }
    std::cout << "\n" << (ok ? "demo OK" : "demo FAILED") << "\n";
    return ok ? 0 : 1;
}

} // namespace renkei
