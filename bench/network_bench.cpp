// Two hosts on loopback: messages from muni:131016 to a sink at pref:13, signed (Ed25519 per hop),
// audited on both hosts, committed to the sender's durable outbox and acknowledged. Prints
// messages/s and p50/p99 latency, beside raw libzmq CURVE throughput measured in the same run, and
// the CPU per message, split between the two hosts (each host's threads, from the kernel's
// per-thread accounting; the sending host's include the threads that submit to it); the same
// with delivery = "memory" (no outbox or inbox writes; still signed and audited); then
// latency and CPU per message at a steady 5,000 messages/s (RENKEI_BENCH_RATE), well below
// saturation, where latency is the path's own and not time spent queueing. Between them, each host
// alone on the two cores, as each party runs on a machine of its own: the other end is a bare
// CURVE link that only feeds or acknowledges it (run_receiving_alone, run_sending_alone).
#include "../tests/support/network.hpp"

#include <renkei/envelope.hpp>
#include <renkei/keys.hpp>
#include <renkei/local_endpoint.hpp>
#include <renkei/transport.hpp>
#include <wire.capnp.h>
#include <renkei/log.hpp>

#include <zmq.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include <sys/resource.h>

using namespace renkei;
using Clock = std::chrono::steady_clock;

namespace {

// Each end with a ZeroMQ context (and so an I/O thread) of its own, as two hosts have: one
// context's single I/O thread would encrypt and decrypt every message and hold the figure down.
double raw_curve(int n, size_t size) {
    zmq::context_t ctx, client_ctx;
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
    zmq::socket_t dealer(client_ctx, zmq::socket_type::dealer);
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

struct Routed {
    double delivered_rate = 0, accepted_rate = 0, p50_us = 0, p99_us = 0;
    double cpu_us = 0; // process CPU (user + system, both hosts) per delivered message
    // Of it, what the threads of each host ran, per delivered message: the receiving host's own,
    // and the sending host's with the threads that submit to it.
    double receiving_us = 0, sending_us = 0;
};

// The threads of this process now.
std::set<pid_t> thread_ids() {
    std::set<pid_t> ids;
    for (auto& e : std::filesystem::directory_iterator("/proc/self/task")) ids.insert(std::stoi(e.path().filename()));
    return ids;
}

// The nanoseconds each of `threads` has run on a CPU (/proc/self/task/<tid>/schedstat), in all.
uint64_t cpu_ns_of(const std::set<pid_t>& threads) {
    uint64_t total = 0;
    for (pid_t t : threads) {
        std::ifstream in("/proc/self/task/" + std::to_string(t) + "/schedstat");
        uint64_t ns = 0;
        if (in >> ns) total += ns; // a thread that has ended is not counted
    }
    return total;
}

// The threads that appeared while `f` ran.
template <class F>
std::set<pid_t> threads_started_by(F&& f) {
    auto before = thread_ids();
    f();
    std::set<pid_t> started;
    for (pid_t t : thread_ids())
        if (!before.count(t)) started.insert(t);
    return started;
}

double cpu_seconds() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// Two real hosts: `senders` threads submit at muni:131016, a sink plugin at pref:13 takes them;
// as fast as they can, or `rate` messages/s in all (latency below saturation, not queueing).
Routed run_routed(int n, size_t payload_size, int senders, bool batch_signing, bool memory, double rate = 0) {
    test::TempDir tmp;
    test::Network net(tmp);
    auto receiving = threads_started_by([&] { net.start({"pref:13", true, {}, {{"muni:131016", {}}}, {}, false, memory}); });
    auto sending = threads_started_by(
        [&] { net.start({"muni:131016", false, {}, {{"pref:13", {"*"}}}, {}, batch_signing, memory}); });

    std::vector<double> latency_us;
    latency_us.reserve(n);
    std::mutex m;
    std::condition_variable cv;
    const size_t expected = size_t(n / senders * senders);
    auto sink = std::make_shared<LocalEndpoint>("sink", std::vector<std::string>{"bench.Sink"},
                                                [&](const EnvelopeView& v, std::string&) {
                                                    int64_t sent = 0;
                                                    memcpy(&sent, v.get().getPayload().begin(), sizeof sent);
                                                    int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                                                      Clock::now().time_since_epoch()).count();
                                                    std::lock_guard lock(m);
                                                    latency_us.push_back((now - sent) / 1000.0);
                                                    // Only the last: a wake-up of the waiting
                                                    // thread per message would cost the sink's
                                                    // thread (the receiving host's) a system call.
                                                    if (latency_us.size() == expected) cv.notify_all();
                                                    return RENKEI_OK;
                                                });
    receiving.merge(threads_started_by([&] { net["pref:13"].add_endpoint(sink); }));
    auto& muni = net["muni:131016"];

    auto t0 = Clock::now();
    const double cpu0 = cpu_seconds();
    const uint64_t receiving0 = cpu_ns_of(receiving), sending0 = cpu_ns_of(sending);
    std::vector<std::thread> threads;
    std::atomic<uint64_t> submitting_ns{0}; // the sending host's callers: their CPU is its submit path's
    for (int s = 0; s < senders; ++s)
        threads.emplace_back([&, s] {
            capnp::MallocMessageBuilder mb;
            auto e = mb.initRoot<schema::Envelope>();
            e.setType("bench.Sink");
            e.setTo("pref:13");
            e.setPurpose("bench");
            // Overwrite the payload in place: setting a Data field again would grow the message.
            auto payload = e.initPayload(payload_size);
            memset(payload.begin(), 'x', payload.size());
            for (int i = 0; i < n / senders; ++i) {
                // This thread's share of the rate, interleaved with the others; woken once a
                // millisecond at most, so the pacing itself costs little CPU.
                if (rate > 0 && i % std::max(1, int(rate / senders / 1000)) == 0)
                    std::this_thread::sleep_until(t0 + std::chrono::duration_cast<Clock::duration>(
                                                           std::chrono::duration<double>((i * senders + s) / rate)));
                int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
                memcpy(payload.begin(), &now, sizeof now);
                muni.submit("bench", capnp::messageToFlatArray(mb).asBytes());
            }
            timespec ran{};
            clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ran); // this thread's, from its start
            submitting_ns += uint64_t(ran.tv_sec) * 1'000'000'000u + uint64_t(ran.tv_nsec);
        });
    for (auto& t : threads) t.join();
    double submit_secs = std::chrono::duration<double>(Clock::now() - t0).count();
    {
        std::unique_lock lock(m);
        cv.wait_for(lock, std::chrono::seconds(300), [&] { return latency_us.size() >= expected; });
    }
    double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    const double cpu = cpu_seconds() - cpu0;
    const uint64_t receiving_ns = cpu_ns_of(receiving) - receiving0;
    const uint64_t sending_ns = cpu_ns_of(sending) - sending0 + submitting_ns;
    std::lock_guard lock(m);
    Routed r;
    r.cpu_us = cpu * 1e6 / double(expected);
    r.receiving_us = double(receiving_ns) / 1e3 / double(expected);
    r.sending_us = double(sending_ns) / 1e3 / double(expected);
    if (latency_us.size() < expected) {
        fprintf(stderr, "network_bench: only %zu of %zu messages arrived\n", latency_us.size(), expected);
        std::exit(1);
    }
    std::sort(latency_us.begin(), latency_us.end());
    r.delivered_rate = latency_us.size() / secs;
    r.accepted_rate = latency_us.size() / submit_secs;
    r.p50_us = latency_us[latency_us.size() / 2];
    r.p99_us = latency_us[latency_us.size() * 99 / 100];
    return r;
}

// One host with the machine to itself, as each party runs at its own site. The other end is a bare
// link (a Transport with that node's keys, no host behind it), which does only what the wire
// needs; it shares the cores with the host, so the figures are what the host carries with part of
// the machine taken away, not less.
struct Alone {
    double rate = 0;      // messages/s
    double host_us = 0;   // the host's threads, CPU per message
    double link_us = 0;   // the rest of the process (the bare link, this thread), CPU per message
};

constexpr size_t kAloneWindow = 4096; // unacknowledged at once, as a sending host's flow control keeps
constexpr size_t kAloneBatch = 256;   // envelopes a batch signature covers, as a round of a busy sender

Alone alone(uint64_t host_ns, double cpu, size_t messages, double secs) {
    Alone a;
    a.rate = double(messages) / secs;
    a.host_us = double(host_ns) / 1e3 / double(messages);
    a.link_us = std::max(0.0, cpu * 1e6 / double(messages) - a.host_us);
    return a;
}

int64_t unix_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// A bench.Sink envelope for pref:13 as a plugin hands it to its host, with `payload_size` bytes.
kj::Array<capnp::word> plugin_envelope(size_t payload_size) {
    capnp::MallocMessageBuilder mb;
    auto e = mb.initRoot<schema::Envelope>();
    e.setType("bench.Sink");
    e.setTo("pref:13");
    e.setPurpose("bench");
    memset(e.initPayload(payload_size).begin(), 'x', payload_size);
    return capnp::messageToFlatArray(mb);
}

// The transport options of a bare link speaking as the node whose keys these are.
TransportOptions bare_link_options(const NodeKeys& keys) {
    TransportOptions o;
    o.node_id = keys.node_id;
    o.curve_public = keys.curve_public;
    o.curve_secret.assign(reinterpret_cast<const char*>(keys.curve_secret.view().data()), 40);
    return o;
}

// Counts the ids in acknowledgement frames.
size_t acked_ids(const uint8_t* f, size_t size) {
    if (size % 8 != 0 || size == 0) return 0;
    auto words = kj::heapArray<capnp::word>(size / 8);
    memcpy(words.begin(), f, size);
    capnp::FlatArrayMessageReader r(words.asPtr());
    auto frame = r.getRoot<wire::Frame>();
    return frame.which() == wire::Frame::ACK ? frame.getAck().size() : 0;
}

// pref:13 alone, taking what muni:131016's host sends it: batch-signed frames built as that host
// builds them (stamped, canonical at hop 1, one Ed25519 signature per kAloneBatch), made before
// the clock starts and sent by a bare link with muni:131016's keys that keeps kAloneWindow
// unacknowledged.
Alone run_receiving_alone(size_t n, size_t payload_size, bool memory) {
    test::TempDir tmp;
    test::Network net(tmp);
    auto host = threads_started_by([&] { net.start({"pref:13", true, {}, {{"muni:131016", {}}}, {}, true, memory}); });
    std::mutex m;
    std::condition_variable cv;
    size_t delivered = 0, acked = 0;
    auto sink = std::make_shared<LocalEndpoint>("sink", std::vector<std::string>{"bench.Sink"},
                                                [&](const EnvelopeView&, std::string&) {
                                                    std::lock_guard lock(m);
                                                    if (++delivered == n) cv.notify_all();
                                                    return RENKEI_OK;
                                                });
    host.merge(threads_started_by([&] { net["pref:13"].add_endpoint(sink); }));

    auto keys = load_node_keys(net.keys_dir("muni:131016"));
    std::vector<std::vector<uint8_t>> frames;
    frames.reserve(n);
    auto plugin_bytes = plugin_envelope(payload_size);
    for (size_t start = 0; start < n; start += kAloneBatch) {
        std::vector<std::vector<uint8_t>> bodies;
        for (size_t i = start; i < std::min(n, start + kAloneBatch); ++i) {
            auto stamped = stamp_outgoing(plugin_bytes.asBytes(), "muni:131016", unix_ms(), 1 << 20);
            capnp::FlatArrayMessageReader r(stamped.asPtr());
            auto body = canonical_with_hops(r.getRoot<schema::Envelope>(), 1);
            bodies.emplace_back(body.asBytes().begin(), body.asBytes().end());
        }
        for (auto& f : test::batch_frames(keys, "muni:131016", bodies)) frames.push_back(std::move(f));
    }

    Transport link(bare_link_options(keys), {});
    link.on_receive([&](const std::string&, const uint8_t* f, size_t size) {
        size_t k = acked_ids(f, size);
        std::lock_guard lock(m);
        acked += k;
        cv.notify_all();
    });
    link.add_peer("pref:13", {net.endpoint("pref:13")}, net.keys_for("pref:13").curve_public);
    link.start();
    // The first frame until it is taken: a frame sent before the CURVE handshake is dropped.
    for (int i = 0; i < 300; ++i) {
        link.send("pref:13", frames[0]);
        std::unique_lock lock(m);
        if (cv.wait_for(lock, std::chrono::milliseconds(100), [&] { return acked > 0; })) break;
    }
    {
        std::lock_guard lock(m);
        if (acked == 0) {
            fprintf(stderr, "network_bench: the bare link to pref:13 never came up\n");
            std::exit(1);
        }
        acked = 1; // repeats of the first frame are acknowledged again
    }

    const uint64_t host0 = cpu_ns_of(host);
    const double cpu0 = cpu_seconds();
    auto t0 = Clock::now();
    for (size_t sent = 1; sent < n;) {
        {
            std::unique_lock lock(m);
            cv.wait(lock, [&] { return sent < acked + kAloneWindow; });
        }
        for (size_t end = std::min(n, sent + kAloneBatch); sent < end; ++sent) link.send("pref:13", std::move(frames[sent]));
    }
    {
        std::unique_lock lock(m);
        cv.wait_for(lock, std::chrono::seconds(300), [&] { return delivered >= n; });
        if (delivered < n) {
            fprintf(stderr, "network_bench: only %zu of %zu messages arrived at pref:13 alone\n", delivered, n);
            std::exit(1);
        }
    }
    double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    auto a = alone(cpu_ns_of(host) - host0, cpu_seconds() - cpu0, n - 1, secs);
    link.stop();
    return a;
}

// muni:131016 alone, sending to pref:13: `senders` threads submit to it, and a bare link with
// pref:13's keys takes the frames and acknowledges them in rounds of what arrived, as a receiving
// host does (without checking or delivering them).
Alone run_sending_alone(size_t n, size_t payload_size, int senders, bool memory) {
    test::TempDir tmp;
    test::Network net(tmp);
    net.keys_for("pref:13"); // generates them
    auto pref = load_node_keys(net.keys_dir("pref:13"));
    auto o = bare_link_options(pref);
    o.listen = "tcp://127.0.0.1:0";
    Transport link(o, {{"muni:131016", net.keys_for("muni:131016").curve_public}});
    const size_t expected = n / size_t(senders) * size_t(senders);
    std::mutex m;
    std::condition_variable cv;
    std::vector<MessageId> to_ack;
    std::set<MessageId> taken;
    bool stopping = false;
    link.on_receive([&](const std::string&, const uint8_t* f, size_t size) {
        if (size % 8 != 0 || size == 0) return;
        auto words = kj::heapArray<capnp::word>(size / 8);
        memcpy(words.begin(), f, size);
        capnp::FlatArrayMessageReader r(words.asPtr());
        auto frame = r.getRoot<wire::Frame>();
        if (frame.which() != wire::Frame::ENVELOPE) return;
        auto body = frame.getEnvelope().getBody();
        auto segment = kj::heapArray<capnp::word>(body.size() / 8);
        memcpy(segment.begin(), body.begin(), segment.size() * 8);
        kj::ArrayPtr<const capnp::word> segments[1] = {segment.asPtr()};
        capnp::SegmentArrayMessageReader env(kj::arrayPtr(segments, 1));
        auto id = env.getRoot<schema::Envelope>().getId();
        if (id.size() != 16) return;
        std::lock_guard lock(m);
        to_ack.push_back(to_message_id(id));
        if (to_ack.size() == 1) cv.notify_all();
    });
    link.start();
    // Acknowledges what arrived, a round at a time.
    std::thread acker([&] {
        std::vector<MessageId> ids;
        for (;;) {
            {
                std::unique_lock lock(m);
                cv.wait(lock, [&] { return stopping || !to_ack.empty(); });
                if (stopping) return;
                ids.swap(to_ack);
                taken.insert(ids.begin(), ids.end());
                if (taken.size() >= expected) cv.notify_all();
            }
            capnp::MallocMessageBuilder mb;
            auto list = mb.initRoot<wire::Frame>().initAck(static_cast<unsigned>(ids.size()));
            for (unsigned i = 0; i < ids.size(); ++i) list.set(i, kj::ArrayPtr<const kj::byte>(ids[i].data(), 16));
            auto flat = capnp::messageToFlatArray(mb);
            link.send("muni:131016", std::vector<uint8_t>(flat.asBytes().begin(), flat.asBytes().end()));
            ids.clear();
        }
    });
    auto host = threads_started_by([&] {
        net.start({"muni:131016", false, {}, {{"pref:13", {"*"}}}, {}, true, memory},
                  [&](HostConfig& c) { c.peers[0].endpoints = {link.endpoint()}; });
    });
    auto& muni = net["muni:131016"];

    const uint64_t host0 = cpu_ns_of(host);
    const double cpu0 = cpu_seconds();
    std::atomic<uint64_t> submitting_ns{0};
    auto t0 = Clock::now();
    std::vector<std::thread> threads;
    for (int s = 0; s < senders; ++s)
        threads.emplace_back([&] {
            auto bytes = plugin_envelope(payload_size);
            for (size_t i = 0; i < n / size_t(senders); ++i) muni.submit("bench", bytes.asBytes());
            timespec ran{};
            clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ran);
            submitting_ns += uint64_t(ran.tv_sec) * 1'000'000'000u + uint64_t(ran.tv_nsec);
        });
    for (auto& t : threads) t.join();
    {
        std::unique_lock lock(m);
        cv.wait_for(lock, std::chrono::seconds(300), [&] { return taken.size() >= expected; });
        if (taken.size() < expected) {
            fprintf(stderr, "network_bench: only %zu of %zu messages reached the bare pref:13\n", taken.size(), expected);
            std::exit(1);
        }
    }
    double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    auto a = alone(cpu_ns_of(host) - host0 + submitting_ns, cpu_seconds() - cpu0, expected, secs);
    net.stop("muni:131016");
    {
        std::lock_guard lock(m);
        stopping = true;
        cv.notify_all();
    }
    acker.join();
    link.stop();
    return a;
}

} // namespace

int main(int argc, char** argv) {
    init_logging("error");
    const int n = argc > 1 ? std::atoi(argv[1]) : 100000;
    const int senders = 4;
    const size_t payload_size = 256;

    double raw = raw_curve(200000, payload_size);
    printf("network_bench: %d messages of %zu bytes, muni:131016 -> pref:13 over CURVE, %d sender threads\n",
           n, payload_size, senders);
    printf("  raw libzmq CURVE DEALER->ROUTER:             %10.0f msg/s\n", raw);
    const char* only = getenv("RENKEI_BENCH_SIGNING");   // "message" or "batch": run one mode only
    const char* delivery = getenv("RENKEI_BENCH_DELIVERY"); // "durable" or "memory": run one only
    struct Mode {
        bool batch, memory;
    };
    for (Mode mode : {Mode{false, false}, Mode{true, false}, Mode{true, true}}) {
        if (only && std::string(only) != (mode.batch ? "batch" : "message")) continue;
        if (delivery && std::string(delivery) != (mode.memory ? "memory" : "durable")) continue;
        auto r = run_routed(n, payload_size, senders, mode.batch, mode.memory);
        printf("  signed (%-7s) + audited + %-7s:        %10.0f msg/s  p50 %8.0f us  p99 %8.0f us  "
               "(%.1f%% of raw; sender accepted %0.f msg/s; %.1f us CPU per message, of it %.1f on the "
               "receiving host and %.1f on the sending one)\n",
               mode.batch ? "batch" : "message", mode.memory ? "memory" : "durable", r.delivered_rate, r.p50_us,
               r.p99_us, 100.0 * r.delivered_rate / raw, r.accepted_rate, r.cpu_us, r.receiving_us, r.sending_us);
    }
    // Each host with the two cores to itself (but for the bare link at the other end).
    if (!(only && std::string(only) == "message"))
        for (bool memory : {false, true}) {
            if (delivery && std::string(delivery) != (memory ? "memory" : "durable")) continue;
            auto rx = run_receiving_alone(size_t(n), payload_size, memory);
            auto tx = run_sending_alone(size_t(n), payload_size, senders, memory);
            printf("  one host alone (batch) + audited + %-7s: receiving %8.0f msg/s (%.1f us CPU per message on the host, "
                   "%.1f on the bare link); sending %8.0f msg/s (%.1f us on the host, %.1f on the bare link)\n",
                   memory ? "memory" : "durable", rx.rate, rx.host_us, rx.link_us, tx.rate, tx.host_us, tx.link_us);
        }
    // Latency where it means something: at a steady rate well below the link's capacity.
    const double paced = getenv("RENKEI_BENCH_RATE") ? std::atof(getenv("RENKEI_BENCH_RATE")) : 5000;
    auto r = run_routed(static_cast<int>(paced) * 4, payload_size, senders, true, false, paced);
    printf("  paced at %.0f msg/s (batch), latency:      p50 %8.0f us  p99 %8.0f us  (%.0f us CPU per message)\n",
           paced, r.p50_us, r.p99_us, r.cpu_us);
    return 0;
}
