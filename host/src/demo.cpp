#include <renkei/demo.hpp>
#include <renkei/trust_store.hpp>

#include <renkei/audit_log.hpp>
#include <renkei/keys.hpp>
#include <renkei/host.hpp>
#include <renkei/isolated_plugin.hpp>
#include <renkei/local_endpoint.hpp>

#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <future>
#include <map>
#include <iostream>

namespace renkei {
namespace {

struct RoundTrip {
    bool ok = false;
    std::string reply;
    double ms = 0;
    std::string error;
};

// Sends echo.Ping from `from` (a local client) to node `to` with `purpose` and waits for the
// correlated echo.Pong, or the fault that answers it.
RoundTrip remote_ping(Host& from, const std::string& to, const std::string& purpose, const std::string& text) {
    auto promise = std::make_shared<std::promise<RoundTrip>>();
    auto fut = promise->get_future();
    auto sent_id = std::make_shared<MessageId>(new_message_id());
    static std::atomic<int> n{0};
    auto client = std::make_shared<LocalEndpoint>(
        "demo-client-" + std::to_string(++n), std::vector<std::string>{"echo.Pong", "echo.Ping.Fault"},
        [promise, sent_id](const EnvelopeView& env, std::string&) {
            RoundTrip r;
            auto e = env.get();
            if (to_message_id(e.getCorrelationId()) != *sent_id) {
                // A late duplicate answer to an earlier request (delivery into an isolated plugin
                // is at least once across a crash): not ours, ignore it.
                return RENKEI_OK;
            }
            if (e.hasFault()) {
                r.error = e.getFault().getMessage();
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
    from.add_endpoint(client);
    capnp::MallocMessageBuilder mb;
    auto e = mb.initRoot<schema::Envelope>();
    e.setId(kj::ArrayPtr<const kj::byte>(sent_id->data(), sent_id->size()));
    e.setType("echo.Ping");
    e.setTo(to);
    e.setPurpose(purpose);
    e.setOperatorId("demo-operator");
    e.setPayload(bytes_of(text));
    auto t0 = std::chrono::steady_clock::now();
    from.submit(client->instance_name(), capnp::messageToFlatArray(mb).asBytes());
    RoundTrip r;
    if (fut.wait_for(std::chrono::seconds(15)) != std::future_status::ready)
        r.error = "no answer within 15 s";
    else
        r = fut.get();
    r.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    from.router().remove_endpoint(client->instance_name());
    client->stop();
    return r;
}

// A round trip through one node's own plugin.
RoundTrip ping(Host& host, const std::string& text) { return remote_ping(host, host.config().node_id, "demo", text); }

bool report(const char* step, const RoundTrip& r, const std::string& sent) {
    if (r.ok)
        std::cout << "  " << step << ": sent echo.Ping \"" << sent << "\" -> got echo.Pong \"" << r.reply
                  << "\" (correlated, " << std::fixed << std::setprecision(2) << r.ms << " ms)\n";
    else
        std::cout << "  " << step << ": FAILED: " << r.error << "\n";
    return r.ok;
}


// J-LIS <- prefecture <- municipality on loopback with real keys, CURVE links, signatures,
// access policy and audit trails.
bool network_demo(const std::filesystem::path& build_dir, const std::filesystem::path& dir) {
    bool ok = true;
    std::cout << "\n[network] J-LIS, a prefecture and a municipality on 127.0.0.1, each with its own keys\n";
    std::map<std::string, NodeCard> cards;
    for (auto id : {"jlis:juki", "pref:13", "muni:131016"}) {
        std::string safe = id;
        std::replace(safe.begin(), safe.end(), ':', '_');
        cards[id] = generate_node_keys(dir / ("keys-" + safe), id);
        std::cout << "  renkei keygen " << id << ": CURVE " << cards[id].curve_public.substr(0, 8) << "..., Ed25519 "
                  << cards[id].sign_public.substr(0, 8) << "... (private files 0600)\n";
    }
    // The network root (J-LIS) signs the trust store that binds each node id to its keys.
    auto root_pub = generate_root_key(dir / "root");
    auto trust = dir / "trust.toml";
    {
        std::ofstream t(trust);
        t << "[trust]\nnetwork = \"renkei-demo\"\nserial = 1\nissued_at = 2026-01-01T00:00:00Z\n"
             "expires_at = 2099-01-01T00:00:00Z\n\n";
        for (auto& [id, card] : cards) t << card.to_toml() << "\n";
    }
    sign_trust_store(trust, load_signing_key(dir / "root" / "root.key"));
    std::cout << "  renkei trust sign: trust store serial 1 (" << cards.size() << " nodes) signed by the network root "
              << root_pub.substr(0, 8) << "...\n";
    auto policy = dir / "jlis-policy.toml";
    std::ofstream(policy) << "[[rule]]\nsender = \"kind:muni\"\ntype = \"echo.Ping\"\npurpose = \"juki-30-6\"\n"
                             "comment = \"the demo's stand-in for 本人確認情報 traffic\"\n";
    auto open_policy = dir / "open-policy.toml";
    std::ofstream(open_policy) << "[[rule]]\nsender = \"*\"\ntype = \"echo.*\"\npurpose = \"*\"\n";
    std::map<std::string, std::string> endpoints;
    auto make = [&](const std::string& id, bool listen, bool echo, std::vector<std::pair<std::string, std::vector<std::string>>> peers,
                    const std::filesystem::path& pol) {
        std::string safe = id;
        std::replace(safe.begin(), safe.end(), ':', '_');
        HostConfig c;
        c.node_id = id;
        c.data_dir = dir / ("data-" + safe);
        c.keys_dir = dir / ("keys-" + safe);
        c.policy_file = pol;
        c.trust_store = trust; // peers' keys come from the signed store
        c.trust_root = root_pub;
        if (listen) c.listen = "tcp://127.0.0.1:0";
        if (echo) {
            PluginConfig p;
            p.name = "echo";
            p.path = build_dir / "adapters/mock-echo/mock_echo.so";
            c.plugins.push_back(p);
        }
        for (auto& [peer, reaches] : peers) {
            PeerConfig pc;
            pc.node = peer;
            pc.reaches = reaches;
            pc.batch_signing = id == "pref:13" && peer == "jlis:juki"; // the high-volume link
            if (endpoints.count(peer)) pc.endpoints = {endpoints[peer]};
            c.peers.push_back(pc);
        }
        auto h = std::make_unique<Host>(c);
        h->start();
        if (listen) endpoints[id] = h->link_endpoint();
        std::cout << "  started " << id << (listen ? " listening on " + h->link_endpoint() : std::string(" (dials out)"))
                  << (listen ? " (ZAP self-test: unknown key refused)" : "") << "\n";
        return h;
    };
    // Tiers start top-down: J-LIS, then the prefecture, then the municipality.
    auto jlis = make("jlis:juki", true, true, {{"pref:13", {"muni:*"}}}, policy);
    auto pref = make("pref:13", true, false, {{"jlis:juki", {"jlis:*"}}, {"muni:131016", {}}}, open_policy);
    auto muni = make("muni:131016", false, false, {{"pref:13", {"*"}}}, open_policy);

    auto r = remote_ping(*muni, "jlis:juki", "juki-30-6", "本人確認情報の通知");
    if (r.ok)
        std::cout << "  muni:131016 -> pref:13 -> jlis:juki: echo.Ping answered \"" << r.reply << "\" ("
                  << std::fixed << std::setprecision(1) << r.ms
                  << " ms, signed per hop (pref -> jlis in Merkle batches), acknowledged per hop)\n";
    else
        std::cout << "  muni -> jlis: FAILED: " << r.error << "\n";
    ok &= r.ok;
    auto denied = remote_ping(*muni, "jlis:juki", "no-legal-basis", "x");
    std::cout << "  same message without a legal basis: " << (denied.ok ? "DELIVERED (wrong!)" : "refused: " + denied.error) << "\n";
    ok &= !denied.ok && denied.error.find("denied by default") != std::string::npos;

    // A host whose key nobody trusts gets nowhere.
    auto rogue_card = generate_node_keys(dir / "keys-rogue", "muni:011002");
    HostConfig rc;
    rc.node_id = "muni:011002";
    rc.data_dir = dir / "data-rogue";
    rc.keys_dir = dir / "keys-rogue";
    PeerConfig pc;
    pc.node = "pref:13";
    pc.endpoints = {endpoints["pref:13"]};
    pc.curve_public = cards["pref:13"].curve_public;
    pc.sign_public = cards["pref:13"].sign_public;
    pc.reaches = {"*"};
    rc.peers.push_back(pc);
    Host rogue(rc);
    rogue.start();
    auto rr = remote_ping(rogue, "pref:13", "juki-30-6", "let me in");
    std::cout << "  an untrusted host (muni:011002) tries pref:13: " << (rr.ok ? "GOT IN (wrong!)" : "no answer, handshake refused by ZAP") << "\n";
    ok &= !rr.ok;
    rogue.stop();

    for (auto* h : {muni.get(), pref.get(), jlis.get()}) {
        auto dir_of = h->audit()->dir();
        h->stop();
        auto v = verify_audit(dir_of);
        std::cout << "  renkei audit verify " << h->config().node_id << ": " << (v.ok ? "ok" : "BROKEN: " + v.error) << ", "
                  << v.records << " records\n";
        ok &= v.ok;
    }
    return ok;
}

} // namespace

int run_demo(const std::filesystem::path& build_dir, const std::filesystem::path& source_dir, DemoPart more) {
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
                if (line.find("plugin=\"echo\"") != std::string::npos && line.find("_in_total") != std::string::npos)
                    std::cout << "  /metrics: " << line << "\n";
        }
        ok &= admin_ok;
        host.stop();
        std::filesystem::remove_all(cfg.data_dir);
    }
    auto net_dir = std::filesystem::temp_directory_path() / ("renkei-demo-net-" + std::to_string(getpid()));
    std::filesystem::remove_all(net_dir);
    try {
        ok &= network_demo(build_dir, net_dir);
    } catch (const std::exception& e) {
        std::cout << "  network demo FAILED: " << e.what() << "\n";
        ok = false;
    }
    std::filesystem::remove_all(net_dir);
    if (more) {
        auto more_dir = std::filesystem::temp_directory_path() / ("renkei-demo-juki-" + std::to_string(getpid()));
        std::filesystem::remove_all(more_dir);
        std::filesystem::create_directories(more_dir);
        try {
            ok &= more(build_dir, source_dir, more_dir);
        } catch (const std::exception& e) {
            std::cout << "  FAILED: " << e.what() << "\n";
            ok = false;
        }
        std::filesystem::remove_all(more_dir);
    }
    std::cout << "\n" << (ok ? "demo OK" : "demo FAILED") << "\n";
    return ok ? 0 : 1;
}

} // namespace renkei
