// Two hosts on loopback: messages from muni:131016 to a sink at pref:13, signed (Ed25519 per hop),
// audited on both hosts, committed to the sender's durable outbox and acknowledged. Prints
// messages/s and p50/p99 latency, beside raw libzmq CURVE throughput measured in the same run.
#include "../tests/support/network.hpp"

#include <renkei/local_endpoint.hpp>
#include <renkei/log.hpp>

#include <zmq.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>

using namespace renkei;
using Clock = std::chrono::steady_clock;

namespace {

double raw_curve(int n, size_t size) {
    zmq::context_t ctx;
    zmq::socket_t zap(ctx, zmq::socket_type::rep);
    zap.bind("inproc://zeromq.zap.01");
    std::thread zap_thread([&] {
        try {
        for (;;) {
            std::vector<zmq::message_t> req;
            zmq::message_t m;
            if (!zap.recv(m)) return;
            if (m.size() == 0) return;
            req.push_back(std::move(m));
            while (req.back().more()) {
                zmq::message_t p;
                (void)zap.recv(p);
                req.push_back(std::move(p));
            }
            std::string v = req[0].to_string(), id = req[1].to_string();
            zap.send(zmq::buffer(v), zmq::send_flags::sndmore);
            zap.send(zmq::buffer(id), zmq::send_flags::sndmore);
            zap.send(zmq::str_buffer("200"), zmq::send_flags::sndmore);
            zap.send(zmq::str_buffer("OK"), zmq::send_flags::sndmore);
            zap.send(zmq::str_buffer("peer"), zmq::send_flags::sndmore);
            zap.send(zmq::str_buffer(""), zmq::send_flags::none);
        }
        } catch (const zmq::error_t&) {
            // context shut down: the benchmark is over
        }
    });
    char spub[41], ssec[41], cpub[41], csec[41];
    zmq_curve_keypair(spub, ssec);
    zmq_curve_keypair(cpub, csec);
    zmq::socket_t router(ctx, zmq::socket_type::router);
    router.set(zmq::sockopt::curve_server, 1);
    router.set(zmq::sockopt::curve_secretkey, std::string(ssec));
    router.set(zmq::sockopt::zap_domain, "renkei");
    router.set(zmq::sockopt::rcvhwm, 0);
    router.bind("tcp://127.0.0.1:0");
    zmq::socket_t dealer(ctx, zmq::socket_type::dealer);
    dealer.set(zmq::sockopt::curve_serverkey, std::string(spub));
    dealer.set(zmq::sockopt::curve_publickey, std::string(cpub));
    dealer.set(zmq::sockopt::curve_secretkey, std::string(csec));
    dealer.set(zmq::sockopt::sndhwm, 0);
    dealer.connect(router.get(zmq::sockopt::last_endpoint));
    std::vector<uint8_t> payload(size, 'x');
    dealer.send(zmq::buffer(payload));
    zmq::message_t id, body;
    (void)router.recv(id);
    (void)router.recv(body);
    auto t0 = Clock::now();
    std::thread sender([&] {
        for (int i = 0; i < n; ++i) dealer.send(zmq::buffer(payload));
    });
    for (int i = 0; i < n; ++i) {
        (void)router.recv(id);
        (void)router.recv(body);
    }
    double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    sender.join();
    dealer.close();
    router.close();
    ctx.shutdown();
    zap_thread.join();
    zap.close();
    return n / secs;
}

} // namespace

int main(int argc, char** argv) {
    init_logging("error");
    const int n = argc > 1 ? std::atoi(argv[1]) : 20000;
    const int senders = 4;
    const size_t payload_size = 256;

    double raw = raw_curve(200000, payload_size);
    printf("network_bench: %d messages of %zu bytes, muni:131016 -> pref:13 over CURVE\n", n, payload_size);
    printf("  raw libzmq CURVE DEALER->ROUTER:        %10.0f msg/s\n", raw);

    test::TempDir tmp;
    test::Network net(tmp);
    net.start({"pref:13", true, {}, {{"muni:131016", {}}}});
    net.start({"muni:131016", false, {}, {{"pref:13", {"*"}}}});

    std::vector<double> latency_us;
    latency_us.reserve(n);
    std::mutex m;
    std::condition_variable cv;
    auto sink = std::make_shared<LocalEndpoint>("sink", std::vector<std::string>{"bench.Sink"},
                                                [&](const EnvelopeView& v, std::string&) {
                                                    int64_t sent = 0;
                                                    memcpy(&sent, v.get().getPayload().begin(), sizeof sent);
                                                    int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                                                      Clock::now().time_since_epoch()).count();
                                                    std::lock_guard lock(m);
                                                    latency_us.push_back((now - sent) / 1000.0);
                                                    cv.notify_all();
                                                    return RENKEI_OK;
                                                });
    net["pref:13"].add_endpoint(sink);
    auto& muni = net["muni:131016"];

    auto t0 = Clock::now();
    std::vector<std::thread> threads;
    for (int s = 0; s < senders; ++s)
        threads.emplace_back([&] {
            capnp::MallocMessageBuilder mb;
            auto e = mb.initRoot<schema::Envelope>();
            e.setType("bench.Sink");
            e.setTo("pref:13");
            e.setPurpose("bench");
            std::vector<uint8_t> payload(payload_size, 'x');
            for (int i = 0; i < n / senders; ++i) {
                int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
                memcpy(payload.data(), &now, sizeof now);
                e.setPayload(kj::ArrayPtr<const kj::byte>(payload.data(), payload.size()));
                muni.submit("bench", capnp::messageToFlatArray(mb).asBytes());
            }
        });
    for (auto& t : threads) t.join();
    double submit_secs = std::chrono::duration<double>(Clock::now() - t0).count();
    {
        std::unique_lock lock(m);
        cv.wait_for(lock, std::chrono::seconds(300), [&] { return latency_us.size() >= size_t(n / senders * senders); });
    }
    double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    while (muni.links_pending() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    std::sort(latency_us.begin(), latency_us.end());
    double rate = latency_us.size() / secs;
    printf("  signed + audited + durable, delivered: %10.0f msg/s  p50 %8.0f us  p99 %8.0f us  (%d sender threads)\n",
           rate, latency_us[latency_us.size() / 2], latency_us[latency_us.size() * 99 / 100], senders);
    printf("  accepted by the sender (signed, committed to its outbox): %10.0f msg/s\n", latency_us.size() / submit_secs);
    printf("  ratio to raw CURVE: %.1f%%\n", 100.0 * rate / raw);
    return 0;
}
