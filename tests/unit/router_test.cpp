// The router on its own: local delivery by message type, faults back to the sender, the hop
// limit, the forwarder for other nodes, and the completion callback.
#include <renkei/local_endpoint.hpp>
#include <renkei/metrics.hpp>
#include <renkei/router.hpp>

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

using namespace renkei;
using namespace std::chrono_literals;

// In every test the router and what its callbacks capture are declared before the endpoints, so
// that the endpoints stop (and finish their completions) before those go away.
namespace {

const std::string kNode = "muni:131016";

struct Env {
    std::string type, from, to, id, correlation, purpose, payload;
    int hops = 0;
    bool fault = false;
    uint32_t fault_code = 0;
    std::string fault_message;
};

Env copy_of(const EnvelopeView& v) {
    auto e = v.get();
    Env r;
    r.type = e.getType();
    r.from = e.getFrom();
    r.to = e.getTo();
    r.id = hex(e.getId());
    r.correlation = hex(e.getCorrelationId());
    r.purpose = e.getPurpose();
    auto p = e.getPayload();
    r.payload.assign(reinterpret_cast<const char*>(p.begin()), p.size());
    r.hops = e.getHopCount();
    r.fault = e.hasFault();
    if (r.fault) {
        r.fault_code = e.getFault().getCode();
        r.fault_message = e.getFault().getMessage();
    }
    return r;
}

kj::Array<capnp::word> envelope(const std::string& type, const std::string& from, const std::string& to,
                                uint8_t hops = 0, std::string* id_hex = nullptr,
                                const std::string& payload = "p") {
    capnp::MallocMessageBuilder mb;
    auto e = mb.initRoot<schema::Envelope>();
    auto id = new_message_id();
    e.setId(kj::ArrayPtr<const kj::byte>(id.data(), id.size()));
    e.setType(type);
    e.setFrom(from);
    e.setTo(to);
    e.setPurpose("juki-30-6");
    e.setOperatorId("op-1");
    e.setHopCount(hops);
    e.setPayload(bytes_of(payload));
    if (id_hex != nullptr) *id_hex = hex(id);
    return capnp::messageToFlatArray(mb);
}

// Thread-safe list of envelopes, filled from endpoint threads or the forwarder.
class Inbox {
public:
    void add(Env e) {
        std::lock_guard lock(mutex_);
        got_.push_back(std::move(e));
        cv_.notify_all();
    }
    std::vector<Env> wait_for(size_t n, std::chrono::milliseconds timeout = 10s) {
        std::unique_lock lock(mutex_);
        cv_.wait_for(lock, timeout, [&] { return got_.size() >= n; });
        return got_;
    }
    std::vector<Env> all() {
        std::lock_guard lock(mutex_);
        return got_;
    }

private:
    std::mutex mutex_;
    std::condition_variable cv_;
    std::vector<Env> got_;
};

// A started LocalEndpoint that records what it gets and answers with a fixed status.
struct Recorder {
    Recorder(std::string name, std::vector<std::string> types, int32_t status = RENKEI_OK,
             std::string error = {}) {
        endpoint = std::make_shared<LocalEndpoint>(std::move(name), std::move(types),
                                                   [this, status, error](const EnvelopeView& v, std::string& err) {
                                                       inbox.add(copy_of(v));
                                                       err = error;
                                                       return status;
                                                   });
        endpoint->start();
    }
    ~Recorder() { endpoint->stop(); }
    Inbox inbox;
    std::shared_ptr<LocalEndpoint> endpoint;
};

// The outcome the router reports through `done`.
class Outcome {
public:
    std::function<void(int32_t, const std::string&)> callback() {
        return [this](int32_t status, const std::string& message) {
            std::lock_guard lock(mutex_);
            ++calls_;
            result_ = {status, message};
            cv_.notify_all();
        };
    }
    std::pair<int32_t, std::string> wait(std::chrono::milliseconds timeout = 10s) {
        std::unique_lock lock(mutex_);
        if (!cv_.wait_for(lock, timeout, [&] { return result_.has_value(); })) return {-1, "no outcome"};
        return *result_;
    }
    int calls() {
        std::lock_guard lock(mutex_);
        return calls_;
    }

private:
    std::mutex mutex_;
    std::condition_variable cv_;
    std::optional<std::pair<int32_t, std::string>> result_;
    int calls_ = 0;
};

// Routing outcomes seen by the observer (called from the router's and the endpoints' threads).
class Events {
public:
    Router::Observer observer() {
        return [this](const EnvelopeView& v, const std::string& event, const std::string& detail) {
            std::lock_guard lock(mutex_);
            got_.push_back(std::string(v.get().getType()) + " " + event + ": " + detail);
        };
    }
    std::vector<std::string> all() {
        std::lock_guard lock(mutex_);
        return got_;
    }

private:
    std::mutex mutex_;
    std::vector<std::string> got_;
};

} // namespace

TEST(Router, DeliversByTypeToTheMatchingLocalEndpoint) {
    Metrics metrics;
    Router router(kNode, metrics);
    Recorder echo("echo", {"echo.Ping"});
    Recorder juki("juki", {"juki.*"});
    Recorder query("query", {"juki.query.*"});
    Recorder special("special", {"juki.query.Special"});
    for (auto* r : {&echo, &juki, &query, &special}) router.add_endpoint(r->endpoint);
    EXPECT_EQ(router.endpoints().size(), 4u);

    // Exact registrations win over prefixes; the longest prefix wins over a shorter one.
    EXPECT_EQ(router.handler_for("echo.Ping"), echo.endpoint);
    EXPECT_EQ(router.handler_for("juki.IdentityUpdate"), juki.endpoint);
    EXPECT_EQ(router.handler_for("juki.query.ByName"), query.endpoint);
    EXPECT_EQ(router.handler_for("juki.query.Special"), special.endpoint);
    EXPECT_EQ(router.handler_for("echo.Pong"), nullptr);
    EXPECT_EQ(router.handler_for("juki."), nullptr);   // a prefix alone is not a type
    EXPECT_EQ(router.handler_for("jukiX.Y"), nullptr); // "juki." is matched with its dot

    struct Case {
        std::string type;
        Recorder* want;
    };
    std::vector<Case> cases{{"echo.Ping", &echo}, {"juki.IdentityUpdate", &juki},
                            {"juki.query.ByName", &query}, {"juki.query.Special", &special}};
    for (auto& c : cases) {
        std::string id;
        Outcome done;
        router.route(envelope(c.type, "agency:nta", kNode, 0, &id, "body:" + c.type), done.callback());
        EXPECT_EQ(done.wait(), std::make_pair(int32_t(RENKEI_OK), std::string())) << c.type;
        auto got = c.want->inbox.wait_for(1);
        ASSERT_EQ(got.size(), 1u) << c.type;
        EXPECT_EQ(got[0].type, c.type);
        EXPECT_EQ(got[0].id, id);
        EXPECT_EQ(got[0].payload, "body:" + c.type);
        EXPECT_EQ(metrics.counters(c.type, c.want->endpoint->instance_name()).in.load(), 1u);
    }
    // Each endpoint got exactly its own message.
    for (auto* r : {&echo, &juki, &query, &special}) EXPECT_EQ(r->inbox.all().size(), 1u);
}

// A caller that decoded the bytes hands its view in with them (not decoded again); a view of
// other bytes is refused before anything is routed.
TEST(Router, RoutesWithTheCallersViewOnlyWhenItIsOfTheSameBytes) {
    Metrics metrics;
    Router router(kNode, metrics);
    Recorder echo("echo", {"echo.Ping"});
    router.add_endpoint(echo.endpoint);
    auto decoded = [](const kj::Array<capnp::word>& flat) {
        return std::make_shared<EnvelopeView>(EnvelopeView::decode(flat.begin(), flat.asBytes().size()));
    };
    std::string id;
    auto flat = envelope("echo.Ping", "agency:nta", kNode, 0, &id, "with its view");
    auto other = envelope("echo.Ping", "agency:nta", kNode, 0, nullptr, "another");
    EXPECT_THROW(router.route(decoded(other), envelope("echo.Ping", "agency:nta", kNode, 0)), std::logic_error);
    EXPECT_THROW(router.route(nullptr, envelope("echo.Ping", "agency:nta", kNode, 0)), std::logic_error);
    auto view = decoded(flat);
    Outcome done;
    router.route(std::move(view), std::move(flat), done.callback());
    EXPECT_EQ(done.wait(), std::make_pair(int32_t(RENKEI_OK), std::string()));
    auto got = echo.inbox.wait_for(1);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].id, id);
    EXPECT_EQ(got[0].payload, "with its view");
    EXPECT_EQ(echo.inbox.all().size(), 1u) << "nothing of the refused calls was delivered";
}

TEST(Router, DuplicateTypeIsRefusedAndRegistersNothing) {
    Metrics metrics;
    Router router(kNode, metrics);
    Recorder a("a", {"echo.Ping", "juki.*"});
    router.add_endpoint(a.endpoint);

    Recorder b("b", {"card.Issue", "echo.Ping"});
    try {
        router.add_endpoint(b.endpoint);
        FAIL() << "a type declared twice was accepted";
    } catch (const std::runtime_error& e) {
        EXPECT_STREQ(e.what(), "message type 'echo.Ping' is declared by both 'a' and 'b'");
    }
    Recorder c("c", {"mdoc.Issue", "juki.*"});
    EXPECT_THROW(router.add_endpoint(c.endpoint), std::runtime_error);
    Recorder d("d", {"fuhyo.Update", "fuhyo.Update"});
    try {
        router.add_endpoint(d.endpoint);
        FAIL() << "an endpoint declaring a type twice was accepted";
    } catch (const std::runtime_error& e) {
        EXPECT_STREQ(e.what(), "message type 'fuhyo.Update' is declared by both 'd' and 'd'");
    }

    // A refused endpoint leaves no partial registration behind.
    EXPECT_EQ(router.handler_for("card.Issue"), nullptr);
    EXPECT_EQ(router.handler_for("mdoc.Issue"), nullptr);
    EXPECT_EQ(router.handler_for("fuhyo.Update"), nullptr);
    EXPECT_EQ(router.handler_for("echo.Ping"), a.endpoint);
    EXPECT_EQ(router.endpoints().size(), 1u);

    // Removing the holder frees its types.
    router.remove_endpoint("a");
    EXPECT_EQ(router.handler_for("echo.Ping"), nullptr);
    EXPECT_EQ(router.handler_for("juki.X"), nullptr);
    EXPECT_TRUE(router.endpoints().empty());
    router.add_endpoint(b.endpoint);
    EXPECT_EQ(router.handler_for("echo.Ping"), b.endpoint);
    EXPECT_EQ(router.handler_for("card.Issue"), b.endpoint);
}

TEST(Router, UnknownTypeReturnsAFaultToALocalSender) {
    Metrics metrics;
    Router router(kNode, metrics);
    Events events;
    Recorder client("client", {"nope.Thing.Fault"});
    router.add_endpoint(client.endpoint);
    router.set_observer(events.observer());

    std::string id;
    Outcome done;
    router.route(envelope("nope.Thing", kNode, kNode, 0, &id), done.callback());
    const std::string why = "no plugin at muni:131016 handles message type 'nope.Thing'";
    EXPECT_EQ(done.wait(), std::make_pair(int32_t(RENKEI_ERR_UNSUPPORTED), why));

    auto got = client.inbox.wait_for(1);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].type, "nope.Thing.Fault");
    EXPECT_EQ(got[0].correlation, id);
    EXPECT_NE(got[0].id, id);
    EXPECT_EQ(got[0].from, kNode);
    EXPECT_EQ(got[0].to, kNode);
    EXPECT_EQ(got[0].purpose, "juki-30-6");
    ASSERT_TRUE(got[0].fault);
    EXPECT_EQ(got[0].fault_code, uint32_t(RENKEI_ERR_UNSUPPORTED));
    EXPECT_EQ(got[0].fault_message, why);
    EXPECT_EQ(metrics.counters("nope.Thing", "router").failed.load(), 1u);
    ASSERT_GE(events.all().size(), 1u);
    EXPECT_EQ(events.all()[0], "nope.Thing refused: " + why);
}

TEST(Router, FaultForARemoteSenderGoesThroughTheForwarder) {
    Metrics metrics;
    Router router(kNode, metrics);
    Inbox forwarded;
    router.set_forwarder([&](const EnvelopeView& v) {
        forwarded.add(copy_of(v));
        return std::string();
    });
    std::string id;
    Outcome done;
    router.route(envelope("nope.Thing", "pref:13", kNode, 0, &id), done.callback());
    EXPECT_EQ(done.wait().first, RENKEI_ERR_UNSUPPORTED);
    auto got = forwarded.all();
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].type, "nope.Thing.Fault");
    EXPECT_EQ(got[0].from, kNode);
    EXPECT_EQ(got[0].to, "pref:13");
    EXPECT_EQ(got[0].correlation, id);
    EXPECT_EQ(got[0].hops, 0);
    EXPECT_EQ(got[0].fault_code, uint32_t(RENKEI_ERR_UNSUPPORTED));
}

TEST(Router, NoFaultIsSentForAFaultOrWithoutASender) {
    Metrics metrics;
    Router router(kNode, metrics);
    Inbox forwarded;
    router.set_forwarder([&](const EnvelopeView& v) {
        forwarded.add(copy_of(v));
        return std::string();
    });
    Outcome fault_done, anonymous_done;
    router.route(envelope("nope.Thing.Fault", "pref:13", kNode), fault_done.callback());
    router.route(envelope("nope.Thing", "", kNode), anonymous_done.callback());
    EXPECT_EQ(fault_done.wait().first, RENKEI_ERR_UNSUPPORTED);
    EXPECT_EQ(anonymous_done.wait().first, RENKEI_ERR_UNSUPPORTED);
    EXPECT_TRUE(forwarded.all().empty()); // a fault is never answered with a fault
}

TEST(Router, LocalSenderWithoutAFaultHandlerStillGetsTheOutcome) {
    Metrics metrics;
    Router router(kNode, metrics);
    Recorder other("other", {"x.Other"});
    router.add_endpoint(other.endpoint);
    Outcome done;
    router.route(envelope("nope.Thing", kNode, kNode), done.callback());
    EXPECT_EQ(done.wait().first, RENKEI_ERR_UNSUPPORTED);
    EXPECT_EQ(done.calls(), 1);
    EXPECT_TRUE(other.inbox.wait_for(1, 200ms).empty());
}

TEST(Router, HopLimitRefusesBeforeForwarding) {
    Metrics metrics;
    Router router(kNode, metrics);
    Inbox forwarded;
    Recorder client("client", {"juki.Update.Fault"});
    router.add_endpoint(client.endpoint);
    router.set_forwarder([&](const EnvelopeView& v) {
        forwarded.add(copy_of(v));
        return std::string();
    });

    // One below the limit still goes out.
    Outcome below;
    router.route(envelope("juki.Update", kNode, "jlis:juki", Router::kMaxHops - 1), below.callback());
    EXPECT_EQ(below.wait(), std::make_pair(int32_t(RENKEI_OK), std::string()));
    ASSERT_EQ(forwarded.all().size(), 1u);
    EXPECT_EQ(forwarded.all()[0].hops, Router::kMaxHops - 1);

    for (uint8_t hops : {uint8_t(Router::kMaxHops), uint8_t(255)}) {
        std::string id;
        Outcome at;
        router.route(envelope("juki.Update", kNode, "jlis:juki", hops, &id), at.callback());
        auto [status, message] = at.wait();
        EXPECT_EQ(status, RENKEI_ERR_DENIED) << int(hops);
        EXPECT_EQ(message, "hop limit 8 reached on the way to jlis:juki");
        EXPECT_EQ(forwarded.all().size(), 1u) << "forwarded at hop " << int(hops);
        auto faults = client.inbox.wait_for(hops == Router::kMaxHops ? 1 : 2);
        ASSERT_FALSE(faults.empty());
        EXPECT_EQ(faults.back().correlation, id);
        EXPECT_EQ(faults.back().fault_code, uint32_t(RENKEI_ERR_DENIED));
        EXPECT_EQ(faults.back().fault_message, message);
    }
}

TEST(Router, NonLocalWithoutForwarderHasNoRoute) {
    Metrics metrics;
    Router router(kNode, metrics);
    Outcome done;
    router.route(envelope("juki.Update", kNode, "jlis:juki"), done.callback());
    EXPECT_EQ(done.wait(), std::make_pair(int32_t(RENKEI_ERR_NOT_FOUND),
                                          std::string("no route from muni:131016 to node jlis:juki")));
}

TEST(Router, ForwarderTakesNonLocalDestinations) {
    Metrics metrics;
    Router router(kNode, metrics);
    Events events;
    Inbox forwarded;
    // A local plugin handles the type, but the message is for another node.
    Recorder local("juki", {"juki.Update"});
    router.add_endpoint(local.endpoint);
    router.set_forwarder([&](const EnvelopeView& v) {
        forwarded.add(copy_of(v));
        return std::string();
    });
    router.set_observer(events.observer());

    std::string id;
    Outcome done;
    router.route(envelope("juki.Update", "muni:011002", "jlis:juki", 2, &id), done.callback());
    EXPECT_EQ(done.wait(), std::make_pair(int32_t(RENKEI_OK), std::string()));
    auto got = forwarded.all();
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].id, id);
    EXPECT_EQ(got[0].to, "jlis:juki");
    EXPECT_EQ(got[0].from, "muni:011002"); // passed on unchanged
    EXPECT_EQ(got[0].hops, 2);
    EXPECT_EQ(events.all(), std::vector<std::string>{"juki.Update forwarded: jlis:juki"});
    EXPECT_EQ(metrics.counters("juki.Update", "transport").out.load(), 1u);
    EXPECT_TRUE(local.inbox.wait_for(1, 200ms).empty());
}

TEST(Router, ForwarderErrorBecomesAFault) {
    Metrics metrics;
    Router router(kNode, metrics);
    int calls = 0;
    Recorder client("client", {"juki.Update.Fault"});
    router.add_endpoint(client.endpoint);
    router.set_forwarder([&](const EnvelopeView&) {
        ++calls;
        return std::string("link to pref:13 is down");
    });
    std::string id;
    Outcome done;
    router.route(envelope("juki.Update", kNode, "jlis:juki", 0, &id), done.callback());
    EXPECT_EQ(done.wait(), std::make_pair(int32_t(RENKEI_ERR_NOT_FOUND), std::string("link to pref:13 is down")));
    EXPECT_EQ(calls, 1);
    auto got = client.inbox.wait_for(1);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].type, "juki.Update.Fault");
    EXPECT_EQ(got[0].correlation, id);
    EXPECT_EQ(got[0].fault_code, uint32_t(RENKEI_ERR_NOT_FOUND));
    EXPECT_EQ(got[0].fault_message, "link to pref:13 is down");
    EXPECT_EQ(metrics.counters("juki.Update", "transport").out.load(), 0u);
}

TEST(Router, CompletionGetsThePluginStatusAndAFaultGoesBack) {
    Metrics metrics;
    Router router(kNode, metrics);
    Events events;
    Recorder client("client", {"juki.Update.Fault"});
    Recorder strict("strict", {"juki.Update"}, RENKEI_ERR_INVALID, "person.name: must not be empty");
    router.add_endpoint(client.endpoint);
    router.add_endpoint(strict.endpoint);
    router.set_observer(events.observer());

    std::string id;
    Outcome done;
    router.route(envelope("juki.Update", kNode, kNode, 0, &id), done.callback());
    EXPECT_EQ(done.wait(), std::make_pair(int32_t(RENKEI_ERR_INVALID), std::string("person.name: must not be empty")));
    EXPECT_EQ(strict.inbox.all().size(), 1u);
    auto got = client.inbox.wait_for(1);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].correlation, id);
    EXPECT_EQ(got[0].fault_code, uint32_t(RENKEI_ERR_INVALID));
    EXPECT_EQ(got[0].fault_message, "person.name: must not be empty");
    EXPECT_EQ(metrics.counters("juki.Update", "strict").in.load(), 1u);
    EXPECT_EQ(metrics.counters("juki.Update", "strict").failed.load(), 1u);
    ASSERT_FALSE(events.all().empty());
    EXPECT_EQ(events.all()[0], "juki.Update failed: strict: person.name: must not be empty");
}

TEST(Router, RetryStatusReachesTheCallerWithoutAFault) {
    Metrics metrics;
    Router router(kNode, metrics);
    Recorder client("client", {"juki.Update.Fault"});
    Recorder busy("busy", {"juki.Update"}, RENKEI_ERR_RETRY, "store busy");
    router.add_endpoint(client.endpoint);
    router.add_endpoint(busy.endpoint);
    Outcome done;
    router.route(envelope("juki.Update", kNode, kNode), done.callback());
    EXPECT_EQ(done.wait(), std::make_pair(int32_t(RENKEI_ERR_RETRY), std::string("store busy")));
    EXPECT_TRUE(client.inbox.wait_for(1, 300ms).empty()); // retried later, not refused
}

TEST(Router, HandlerExceptionBecomesInternalError) {
    Metrics metrics;
    Router router(kNode, metrics);
    auto ep = std::make_shared<LocalEndpoint>("thrower", std::vector<std::string>{"x.Boom"},
                                              [](const EnvelopeView&, std::string&) -> int32_t {
                                                  throw std::runtime_error("kaboom");
                                              });
    ep->start();
    router.add_endpoint(ep);
    Outcome done;
    router.route(envelope("x.Boom", "", kNode), done.callback());
    EXPECT_EQ(done.wait(), std::make_pair(int32_t(RENKEI_ERR_INTERNAL), std::string("kaboom")));
    EXPECT_EQ(ep->status().failed, 1u);
    ep->stop();
}

TEST(Router, RouteWithoutCallbackStillDelivers) {
    Metrics metrics;
    Router router(kNode, metrics);
    Recorder echo("echo", {"echo.Ping"});
    router.add_endpoint(echo.endpoint);
    router.route(envelope("echo.Ping", kNode, kNode));
    EXPECT_EQ(echo.inbox.wait_for(1).size(), 1u);
}
