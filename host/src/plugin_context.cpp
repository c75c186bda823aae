#include <renkei/plugin_context.hpp>

#include <renkei/log.hpp>

#include <cstdlib>
#include <cstring>
#include <new>
#include <sstream>

namespace renkei {
namespace {

PluginContext& ctx(void* p) { return *static_cast<PluginContext*>(p); }

void fill(renkei_error* err, int32_t code, const std::string& text) {
    if (err == nullptr) return;
    err->code = code;
    size_t n = std::min(text.size(), sizeof(err->message) - 1);
    std::memcpy(err->message, text.data(), n);
    err->message[n] = '\0';
}

// Buffers handed to plugins are malloc'd so that buffer_free never depends on C++ state.
bool give(renkei_buffer* out, const void* data, size_t size, bool nul) {
    auto* p = static_cast<uint8_t*>(std::malloc(size + (nul ? 1 : 0) + (size == 0 ? 1 : 0)));
    if (p == nullptr) return false;
    if (size > 0) std::memcpy(p, data, size);
    if (nul) p[size] = 0;
    out->data = p;
    out->size = size;
    return true;
}

// Runs `fn`, converting exceptions to a status so that nothing unwinds into plugin code.
template <typename F> int32_t guarded(renkei_error* err, F&& fn) noexcept {
    try {
        return fn();
    } catch (const HostCallError& e) {
        fill(err, e.code(), e.what());
        return e.code();
    } catch (const std::bad_alloc&) {
        fill(err, RENKEI_ERR_RETRY, "out of memory");
        return RENKEI_ERR_RETRY;
    } catch (const std::exception& e) {
        fill(err, RENKEI_ERR_INTERNAL, e.what());
        return RENKEI_ERR_INTERNAL;
    } catch (...) {
        fill(err, RENKEI_ERR_INTERNAL, "unknown host error");
        return RENKEI_ERR_INTERNAL;
    }
}

kj::ArrayPtr<const kj::byte> view(const uint8_t* data, size_t size) {
    return kj::ArrayPtr<const kj::byte>(data, size);
}

int32_t c_send(void* h, const uint8_t* envelope, size_t size, renkei_error* err) {
    return guarded(err, [&] {
        if (envelope == nullptr) throw HostCallError(RENKEI_ERR_INVALID, "send: envelope is NULL");
        ctx(h).services().submit_from_plugin(ctx(h).plugin_name(), view(envelope, size));
        return RENKEI_OK;
    });
}

void c_log(void* h, int32_t level, const char* message) {
    try {
        ctx(h).log(level, message != nullptr ? message : "");
    } catch (...) {
    }
}

int32_t c_config_get(void* h, const char* key, renkei_buffer* out, renkei_error* err) {
    return guarded(err, [&] {
        if (key == nullptr || out == nullptr)
            throw HostCallError(RENKEI_ERR_INVALID, "config_get: key and out are required");
        *out = {nullptr, 0};
        auto v = ctx(h).setting(key);
        if (!v) {
            fill(err, RENKEI_ERR_NOT_FOUND, std::string("no setting '") + key + "'");
            return static_cast<int32_t>(RENKEI_ERR_NOT_FOUND);
        }
        if (!give(out, v->data(), v->size(), true)) throw std::bad_alloc();
        return static_cast<int32_t>(RENKEI_OK);
    });
}

int32_t give_bytes(renkei_buffer* out, const std::vector<uint8_t>& bytes) {
    if (!give(out, bytes.data(), bytes.size(), false)) throw std::bad_alloc();
    return RENKEI_OK;
}

int32_t c_sign(void* h, const char* key_name, const uint8_t* data, size_t size,
               renkei_buffer* sig, renkei_error* err) {
    return guarded(err, [&] {
        if (key_name == nullptr || sig == nullptr || (data == nullptr && size > 0))
            throw HostCallError(RENKEI_ERR_INVALID, "sign: key_name, data and signature required");
        *sig = {nullptr, 0};
        return give_bytes(sig, ctx(h).services().sign(key_name, view(data, size)));
    });
}

int32_t c_verify(void* h, const char* node_id, const uint8_t* data, size_t size,
                 const uint8_t* signature, size_t signature_size, renkei_error* err) {
    return guarded(err, [&] {
        if (node_id == nullptr || signature == nullptr || (data == nullptr && size > 0))
            throw HostCallError(RENKEI_ERR_INVALID, "verify: node_id, data and signature required");
        bool ok = ctx(h).services().verify(node_id, view(data, size), view(signature, signature_size));
        if (!ok) fill(err, RENKEI_ERR_DENIED, "signature does not verify");
        return static_cast<int32_t>(ok ? RENKEI_OK : RENKEI_ERR_DENIED);
    });
}

int32_t c_seal(void* h, const char* recipient, const uint8_t* data, size_t size,
               renkei_buffer* sealed, renkei_error* err) {
    return guarded(err, [&] {
        if (recipient == nullptr || sealed == nullptr || (data == nullptr && size > 0))
            throw HostCallError(RENKEI_ERR_INVALID, "seal: recipient, data and output required");
        *sealed = {nullptr, 0};
        return give_bytes(sealed, ctx(h).services().seal(recipient, view(data, size)));
    });
}

int32_t c_open(void* h, const uint8_t* sealed, size_t size, renkei_buffer* plain,
               renkei_error* err) {
    return guarded(err, [&] {
        if (sealed == nullptr || plain == nullptr)
            throw HostCallError(RENKEI_ERR_INVALID, "open: sealed data and output required");
        *plain = {nullptr, 0};
        return give_bytes(plain, ctx(h).services().open(view(sealed, size)));
    });
}

int64_t c_now(void* h) {
    try {
        return ctx(h).services().now_unix_ms();
    } catch (...) {
        return 0;
    }
}

void c_buffer_free(void*, renkei_buffer* b) {
    if (b == nullptr) return;
    std::free(b->data);
    b->data = nullptr;
    b->size = 0;
}

const void* c_get_interface(void* h, const char* id) {
    try {
        return id != nullptr ? ctx(h).interface(id) : nullptr;
    } catch (const std::exception& e) {
        ctx(h).log(RENKEI_LOG_ERROR, (std::string("cannot open the plugin store: ") + e.what()).c_str());
        return nullptr;
    }
}

std::span<const uint8_t> span_of(const uint8_t* p, size_t n) { return {p, n}; }

int32_t check_key(const uint8_t* key, size_t size) {
    if (key == nullptr || size == 0 || size > 1024)
        throw HostCallError(RENKEI_ERR_INVALID, "store key must be 1..1024 bytes");
    return RENKEI_OK;
}

int32_t c_store_put(void* h, const uint8_t* key, size_t key_size, const uint8_t* value, size_t value_size,
                    renkei_error* err) {
    return guarded(err, [&] {
        check_key(key, key_size);
        if (value == nullptr && value_size > 0) throw HostCallError(RENKEI_ERR_INVALID, "store value is NULL");
        if (value_size > (16u << 20)) throw HostCallError(RENKEI_ERR_INVALID, "store value exceeds 16 MiB");
        static const uint8_t empty = 0;
        ctx(h).store()->put(span_of(key, key_size), span_of(value ? value : &empty, value_size));
        return static_cast<int32_t>(RENKEI_OK);
    });
}

int32_t c_store_get(void* h, const uint8_t* key, size_t key_size, renkei_buffer* value, renkei_error* err) {
    return guarded(err, [&] {
        check_key(key, key_size);
        *value = {nullptr, 0};
        auto v = ctx(h).store()->get(span_of(key, key_size));
        if (!v) {
            fill(err, RENKEI_ERR_NOT_FOUND, "no such key");
            return static_cast<int32_t>(RENKEI_ERR_NOT_FOUND);
        }
        return give_bytes(value, *v);
    });
}

int32_t c_store_remove(void* h, const uint8_t* key, size_t key_size, renkei_error* err) {
    return guarded(err, [&] {
        check_key(key, key_size);
        ctx(h).store()->remove(span_of(key, key_size));
        return static_cast<int32_t>(RENKEI_OK);
    });
}

const renkei_store_v1 kStoreV1{sizeof(renkei_store_v1), &c_store_put, &c_store_get, &c_store_remove};

int64_t c_next_business_start(void* h, int64_t unix_ms) {
    auto* c = ctx(h).services().calendar();
    return c ? c->next_business_start(unix_ms) : unix_ms;
}
int32_t c_open_at(void* h, int64_t unix_ms) {
    auto* c = ctx(h).services().calendar();
    return c && c->open_at(unix_ms) ? 1 : 0;
}
const renkei_calendar_v1 kCalendarV1{sizeof(renkei_calendar_v1), &c_next_business_start, &c_open_at};

} // namespace

PluginContext::PluginContext(std::string plugin_name, toml::table settings,
                             HostServices& services, std::filesystem::path store_file)
    : name_(std::move(plugin_name)), settings_(std::move(settings)), services_(services),
      log_(logger("plugin." + name_)), store_file_(std::move(store_file)) {
    api_.struct_size = sizeof(renkei_host_api);
    api_.abi_minor = RENKEI_ABI_MINOR;
    api_.host_ctx = this;
    api_.send = &c_send;
    api_.log = &c_log;
    api_.config_get = &c_config_get;
    api_.sign = &c_sign;
    api_.verify = &c_verify;
    api_.seal = &c_seal;
    api_.open = &c_open;
    api_.now_unix_ms = &c_now;
    api_.buffer_free = &c_buffer_free;
    api_.get_interface = &c_get_interface;
}

const void* PluginContext::interface(const char* id) {
    if (std::string_view(id) == RENKEI_STORE_V1 && !store_file_.empty()) {
        if (!store_) store_ = std::make_unique<PluginStore>(store_file_);
        return &kStoreV1;
    }
    if (std::string_view(id) == RENKEI_CALENDAR_V1 && services_.calendar() != nullptr) return &kCalendarV1;
    return nullptr;
}

std::optional<std::string> PluginContext::setting(const std::string& key) const { return setting_text(settings_, key); }

std::optional<std::string> setting_text(const toml::table& settings, const std::string& key) {
    auto node = settings.at_path(key);
    if (!node) return std::nullopt;
    if (auto s = node.value<std::string>()) return *s;
    std::ostringstream out;
    node.visit([&](auto&& v) { out << v; });
    return out.str();
}

void PluginContext::log(int32_t level, const char* message) const {
    switch (level) {
    case RENKEI_LOG_TRACE: log_->trace("{}", message); break;
    case RENKEI_LOG_DEBUG: log_->debug("{}", message); break;
    case RENKEI_LOG_INFO: log_->info("{}", message); break;
    case RENKEI_LOG_WARN: log_->warn("{}", message); break;
    default: log_->error("{}", message); break;
    }
}

} // namespace renkei
