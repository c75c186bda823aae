// renkei plugin SDK: a header-only C++ layer over the C ABI in plugin.h.
//
// A plugin author writes one class and one macro:
//
//   class Echo : public renkei::sdk::Plugin {
//    public:
//     using Plugin::Plugin;
//     void handle(const renkei::sdk::Message& m) override {
//       host().reply(m, "echo.Pong", m.payload());
//     }
//   };
//   RENKEI_PLUGIN(Echo, "mock-echo", "1.0.0", RENKEI_KIND_ADAPTER, "echo.Ping")
//
// Nothing C++ crosses the boundary: the SDK turns every exception into a status and a message,
// and the host only ever sees the C descriptor.
#pragma once

#include <renkei/plugin.h>
#include <renkei/schema/envelope.capnp.h>

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/exception.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace renkei::sdk {

// Thrown by plugin code to report a failure with a status, and optionally the field and rule that
// the input broke. The SDK converts it to a renkei_status and message at the boundary.
class Error : public std::runtime_error {
public:
    Error(renkei_status code, const std::string& message, std::string field = {},
          std::string rule = {})
        : std::runtime_error(message), code_(code), field_(std::move(field)),
          rule_(std::move(rule)) {}
    renkei_status code() const noexcept { return code_; }
    const std::string& field() const noexcept { return field_; }
    const std::string& rule() const noexcept { return rule_; }

private:
    renkei_status code_;
    std::string field_;
    std::string rule_;
};

namespace detail {
inline void fill_error(renkei_error* err, int32_t code, std::string_view text) noexcept {
    if (err == nullptr) return;
    err->code = code;
    size_t n = text.size() < sizeof(err->message) - 1 ? text.size() : sizeof(err->message) - 1;
    std::memcpy(err->message, text.data(), n);
    err->message[n] = '\0';
}

// Owns a host-allocated buffer and frees it through the host table.
class HostBuffer {
public:
    HostBuffer(const renkei_host_api* api) : api_(api) {}
    ~HostBuffer() { api_->buffer_free(api_->host_ctx, &buf_); }
    HostBuffer(const HostBuffer&) = delete;
    HostBuffer& operator=(const HostBuffer&) = delete;
    renkei_buffer* get() { return &buf_; }
    std::vector<uint8_t> bytes() const { return {buf_.data, buf_.data + buf_.size}; }
    std::string text() const { return {reinterpret_cast<const char*>(buf_.data), buf_.size}; }

private:
    const renkei_host_api* api_;
    renkei_buffer buf_{nullptr, 0};
};

inline void check(int32_t rc, const renkei_error& err, const char* what) {
    if (rc == RENKEI_OK) return;
    std::string msg = std::string(what) + ": " + err.message;
    throw Error(static_cast<renkei_status>(rc), msg);
}
} // namespace detail

// A received envelope. Valid only during Plugin::handle.
class Message {
public:
    Message(const uint8_t* data, size_t size)
        : reader_(kj::ArrayPtr<const capnp::word>(reinterpret_cast<const capnp::word*>(data),
                                                  size / sizeof(capnp::word)),
                  limits(size)),
          env_(reader_.getRoot<schema::Envelope>()) {}
    // Readers point into the message reader: neither may move.
    Message(const Message&) = delete;
    Message& operator=(const Message&) = delete;

    schema::Envelope::Reader envelope() const { return env_; }
    std::string type() const { return env_.getType(); }
    std::string from() const { return env_.getFrom(); }
    std::string to() const { return env_.getTo(); }
    std::string purpose() const { return env_.getPurpose(); }
    kj::ArrayPtr<const kj::byte> payload() const { return env_.getPayload(); }

    // Parses the payload as the Cap'n Proto struct T. The reader copies into aligned memory.
    template <typename T> class Payload {
    public:
        explicit Payload(kj::ArrayPtr<const kj::byte> bytes, unsigned reads = 4)
            : words_(kj::heapArray<capnp::word>((bytes.size() + 7) / 8)) {
            if (bytes.size() % 8 != 0)
                throw Error(RENKEI_ERR_INVALID, "payload size is not a multiple of 8", "payload",
                            "Cap'n Proto flat message");
            if (bytes.size() > 0) std::memcpy(words_.begin(), bytes.begin(), bytes.size());
            reader_.emplace(words_.asPtr(), limits(bytes.size(), reads));
        }
        Payload(const Payload&) = delete; // readers point into reader_: it must never move
        Payload& operator=(const Payload&) = delete;
        typename T::Reader get() { return reader_->template getRoot<T>(); }

    private:
        kj::Array<capnp::word> words_;
        std::optional<capnp::FlatArrayMessageReader> reader_;
    };
    // `reads`: how many times the handler may read each word (traversal limit = reads x size);
    // raise it for handlers that walk a large payload several times (validate, hash, copy).
    template <typename T> Payload<T> parse(unsigned reads = 4) const { return Payload<T>(payload(), reads); }

    static capnp::ReaderOptions limits(size_t bytes, unsigned reads = 4) {
        capnp::ReaderOptions o;
        o.traversalLimitInWords = bytes / 8 * reads + 1024; // bounded amplification
        o.nestingLimit = 32;
        return o;
    }

private:
    capnp::FlatArrayMessageReader reader_;
    schema::Envelope::Reader env_;
};

// Reads flat Cap'n Proto bytes from anywhere (a store, a file, a test), copied into aligned memory
// with a traversal limit of `reads` x their size.
template <typename T> using Flat = Message::Payload<T>;
inline kj::ArrayPtr<const kj::byte> bytes_of(const void* data, size_t size) {
    return kj::ArrayPtr<const kj::byte>(static_cast<const kj::byte*>(data), size);
}

// Flat (segment table + segments) bytes of a builder: what crosses the ABI and what payloads hold.
inline kj::Array<capnp::word> to_flat(capnp::MessageBuilder& builder) {
    return capnp::messageToFlatArray(builder);
}

// The host, as a plugin sees it.
class Host {
public:
    explicit Host(const renkei_host_api* api) : api_(api) {}

    // Sends an envelope built by the plugin. The host stamps id, from and sent-at.
    void send(capnp::MessageBuilder& envelope) {
        auto flat = capnp::messageToFlatArray(envelope);
        auto bytes = flat.asBytes();
        renkei_error err{};
        detail::check(api_->send(api_->host_ctx, bytes.begin(), bytes.size(), &err), err, "send");
    }

    // Sends a new message of `type` to node `to` carrying `payload`.
    void send(std::string_view type, std::string_view to, kj::ArrayPtr<const kj::byte> payload,
              std::string_view purpose = {}, kj::ArrayPtr<const kj::byte> correlation = {}) {
        capnp::MallocMessageBuilder mb;
        auto e = mb.initRoot<schema::Envelope>();
        e.setType(capnp::Text::Reader(type.data(), type.size()));
        e.setTo(capnp::Text::Reader(to.data(), to.size()));
        e.setPurpose(capnp::Text::Reader(purpose.data(), purpose.size()));
        e.setPayload(payload);
        if (correlation.size() > 0) e.setCorrelationId(correlation);
        send(mb);
    }

    // Answers `request`: goes back to its sender, correlated with its id, under its purpose.
    void reply(const Message& request, std::string_view type,
               kj::ArrayPtr<const kj::byte> payload) {
        auto env = request.envelope();
        std::string purpose = env.getPurpose();
        std::string to = env.getFrom();
        send(type, to, payload, purpose, env.getId());
    }

    void log(renkei_log_level level, const std::string& text) {
        api_->log(api_->host_ctx, level, text.c_str());
    }
    void info(const std::string& text) { log(RENKEI_LOG_INFO, text); }
    void warn(const std::string& text) { log(RENKEI_LOG_WARN, text); }
    void error(const std::string& text) { log(RENKEI_LOG_ERROR, text); }

    // The plugin's setting `key` (dotted path under [plugin.settings]); nullopt when absent.
    std::optional<std::string> config(const std::string& key) {
        detail::HostBuffer out(api_);
        renkei_error err{};
        int32_t rc = api_->config_get(api_->host_ctx, key.c_str(), out.get(), &err);
        if (rc == RENKEI_ERR_NOT_FOUND) return std::nullopt;
        detail::check(rc, err, "config_get");
        return out.text();
    }
    std::string config_or(const std::string& key, std::string fallback) {
        auto v = config(key);
        return v ? *v : std::move(fallback);
    }

    std::vector<uint8_t> sign(const std::string& key_name, kj::ArrayPtr<const kj::byte> data) {
        detail::HostBuffer out(api_);
        renkei_error err{};
        detail::check(api_->sign(api_->host_ctx, key_name.c_str(), data.begin(), data.size(),
                                 out.get(), &err),
                      err, "sign");
        return out.bytes();
    }
    bool verify(const std::string& node_id, kj::ArrayPtr<const kj::byte> data,
                kj::ArrayPtr<const kj::byte> signature) {
        renkei_error err{};
        int32_t rc = api_->verify(api_->host_ctx, node_id.c_str(), data.begin(), data.size(),
                                  signature.begin(), signature.size(), &err);
        if (rc == RENKEI_ERR_DENIED) return false;
        detail::check(rc, err, "verify");
        return true;
    }
    std::vector<uint8_t> seal(const std::string& recipient, kj::ArrayPtr<const kj::byte> data) {
        detail::HostBuffer out(api_);
        renkei_error err{};
        detail::check(api_->seal(api_->host_ctx, recipient.c_str(), data.begin(), data.size(),
                                 out.get(), &err),
                      err, "seal");
        return out.bytes();
    }
    std::vector<uint8_t> open(kj::ArrayPtr<const kj::byte> sealed) {
        detail::HostBuffer out(api_);
        renkei_error err{};
        detail::check(api_->open(api_->host_ctx, sealed.begin(), sealed.size(), out.get(), &err),
                      err, "open");
        return out.bytes();
    }
    int64_t now_unix_ms() { return api_->now_unix_ms(api_->host_ctx); }
    // The node this plugin runs on (the host's setting "renkei.node_id"), e.g. "muni:131016".
    std::string node_id() { return config_or("renkei.node_id", ""); }
    // Start of business on the next operating day after `unix_ms`, from the host's calendar
    // ("renkei.calendar.v1"); nullopt where the host offers no calendar.
    std::optional<int64_t> next_business_start(int64_t unix_ms) {
        auto* c = static_cast<const renkei_calendar_v1*>(interface(RENKEI_CALENDAR_V1));
        if (c == nullptr) return std::nullopt;
        return c->next_business_start(api_->host_ctx, unix_ms);
    }
    const void* interface(const char* id) { return api_->get_interface(api_->host_ctx, id); }
    const renkei_host_api* raw() const { return api_; }

private:
    const renkei_host_api* api_;
};

// The host's key-value store for this plugin ("renkei.store.v1"): writes made while handling a
// message commit atomically with the host's record of that message (exactly-once effect).
class Store {
public:
    explicit Store(const renkei_host_api* api)
        : api_(api), store_(static_cast<const renkei_store_v1*>(api->get_interface(api->host_ctx, RENKEI_STORE_V1))) {}
    bool available() const { return store_ != nullptr; }
    void put(std::string_view key, kj::ArrayPtr<const kj::byte> value) {
        renkei_error err{};
        detail::check(need()->put(api_->host_ctx, bytes(key), key.size(), value.begin(), value.size(), &err), err,
                      "store put");
    }
    void put(std::string_view key, std::string_view value) {
        put(key, kj::ArrayPtr<const kj::byte>(bytes(value), value.size()));
    }
    std::optional<std::string> get(std::string_view key) {
        detail::HostBuffer out(api_);
        renkei_error err{};
        int32_t rc = need()->get(api_->host_ctx, bytes(key), key.size(), out.get(), &err);
        if (rc == RENKEI_ERR_NOT_FOUND) return std::nullopt;
        detail::check(rc, err, "store get");
        return out.text();
    }
    void remove(std::string_view key) {
        renkei_error err{};
        detail::check(need()->remove(api_->host_ctx, bytes(key), key.size(), &err), err, "store remove");
    }

private:
    static const uint8_t* bytes(std::string_view s) { return reinterpret_cast<const uint8_t*>(s.data()); }
    const renkei_store_v1* need() {
        if (!store_) throw Error(RENKEI_ERR_UNSUPPORTED, "this host offers no renkei.store.v1 here");
        return store_;
    }
    const renkei_host_api* api_;
    const renkei_store_v1* store_;
};

// Base class of a plugin. Derive, add `using Plugin::Plugin;`, override handle().
class Plugin {
public:
    explicit Plugin(Host& host) : host_(host) {}
    virtual ~Plugin() = default;
    Plugin(const Plugin&) = delete;
    Plugin& operator=(const Plugin&) = delete;

    virtual void start() {}
    // Throw sdk::Error to refuse (RENKEI_ERR_RETRY asks for redelivery); return to acknowledge.
    virtual void handle(const Message& message) = 0;
    virtual void stop() {}

protected:
    Host& host() { return host_; }

private:
    Host& host_;
};

namespace detail {

template <typename P> struct Instance {
    explicit Instance(const renkei_host_api* api) : host(api), plugin(host) {}
    Host host;
    P plugin;
};

// Runs `fn`, converting every exception into a status and message at the C boundary.
template <typename F> int32_t guarded(renkei_error* err, F&& fn) noexcept {
    try {
        fn();
        return RENKEI_OK;
    } catch (const Error& e) {
        std::string text = e.what();
        if (!e.field().empty()) text += " [field " + e.field() + "]";
        if (!e.rule().empty()) text += " [rule " + e.rule() + "]";
        fill_error(err, e.code(), text);
        return e.code();
    } catch (const kj::Exception& e) {
        fill_error(err, RENKEI_ERR_INVALID, e.getDescription().cStr());
        return RENKEI_ERR_INVALID;
    } catch (const std::exception& e) {
        fill_error(err, RENKEI_ERR_INTERNAL, e.what());
        return RENKEI_ERR_INTERNAL;
    } catch (...) {
        fill_error(err, RENKEI_ERR_INTERNAL, "unknown exception");
        return RENKEI_ERR_INTERNAL;
    }
}

template <typename P>
int32_t create(const renkei_host_api* api, void** instance, renkei_error* err) noexcept {
    return guarded(err, [&] { *instance = new Instance<P>(api); });
}
template <typename P> int32_t start(void* instance, renkei_error* err) noexcept {
    return guarded(err, [&] { static_cast<Instance<P>*>(instance)->plugin.start(); });
}
template <typename P>
int32_t handle(void* instance, const uint8_t* data, size_t size, renkei_error* err) noexcept {
    return guarded(err, [&] {
        Message m(data, size);
        static_cast<Instance<P>*>(instance)->plugin.handle(m);
    });
}
template <typename P> void stop(void* instance) noexcept {
    renkei_error ignored{};
    guarded(&ignored, [&] { static_cast<Instance<P>*>(instance)->plugin.stop(); });
}
template <typename P> void destroy(void* instance) noexcept {
    delete static_cast<Instance<P>*>(instance);
}

template <typename P>
constexpr renkei_plugin_descriptor make_descriptor(const char* name, const char* version,
                                                   uint32_t kind,
                                                   const char* const* types) noexcept {
    return renkei_plugin_descriptor{RENKEI_ABI_MAJOR,
                                    RENKEI_ABI_MINOR,
                                    sizeof(renkei_plugin_descriptor),
                                    kind,
                                    name,
                                    version,
                                    types,
                                    &create<P>,
                                    &start<P>,
                                    &handle<P>,
                                    &stop<P>,
                                    &destroy<P>,
                                    nullptr};
}

} // namespace detail
} // namespace renkei::sdk

// Declares the plugin library's one entry point for class `Class`.
//   RENKEI_PLUGIN(Class, "name", "version", RENKEI_KIND_BUSINESS, "type.A", "type.B")
#define RENKEI_PLUGIN(Class, name, version, kind, ...)                                             \
    namespace {                                                                                    \
    const char* const renkei_sdk_types_[] = {__VA_ARGS__, nullptr};                                \
    const renkei_plugin_descriptor renkei_sdk_descriptor_ =                                        \
        ::renkei::sdk::detail::make_descriptor<Class>(name, version, kind, renkei_sdk_types_);     \
    }                                                                                              \
    RENKEI_DEFINE_ENTRY(renkei_sdk_descriptor_)
