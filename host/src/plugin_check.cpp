#include <renkei/plugin_check.hpp>

#include <renkei/envelope.hpp>
#include <renkei/plugin_context.hpp>
#include <renkei/plugin_loader.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <iostream>

namespace renkei {
namespace {

// Host services for the handshake: accepts sends (and counts them); no keys.
class SmokeServices : public HostServices {
public:
    int sent = 0;
    void submit_from_plugin(const std::string&, kj::ArrayPtr<const kj::byte> envelope) override {
        try {
            stamp_outgoing(envelope, "muni:131016", 0, 16u << 20); // must be a valid envelope
        } catch (const EnvelopeError& e) {
            throw HostCallError(RENKEI_ERR_INVALID, e.what());
        }
        ++sent;
    }
    std::vector<uint8_t> sign(const std::string&, kj::ArrayPtr<const kj::byte>) override {
        throw HostCallError(RENKEI_ERR_NOT_FOUND, "no keys during plugin check");
    }
    bool verify(const std::string&, kj::ArrayPtr<const kj::byte>, kj::ArrayPtr<const kj::byte>) override {
        throw HostCallError(RENKEI_ERR_NOT_FOUND, "no keys during plugin check");
    }
    std::vector<uint8_t> seal(const std::string&, kj::ArrayPtr<const kj::byte>) override {
        throw HostCallError(RENKEI_ERR_NOT_FOUND, "no keys during plugin check");
    }
    std::vector<uint8_t> open(kj::ArrayPtr<const kj::byte>) override {
        throw HostCallError(RENKEI_ERR_NOT_FOUND, "no keys during plugin check");
    }
    int64_t now_unix_ms() override { return 0; }
};

const char* status_name(int32_t s) {
    switch (s) {
    case RENKEI_OK: return "ok";
    case RENKEI_ERR_INVALID: return "invalid";
    case RENKEI_ERR_UNSUPPORTED: return "unsupported";
    case RENKEI_ERR_DENIED: return "denied";
    case RENKEI_ERR_NOT_FOUND: return "not-found";
    case RENKEI_ERR_RETRY: return "retry";
    case RENKEI_ERR_INTERNAL: return "internal";
    default: return "unknown";
    }
}

// Runs in the forked child. Prints one line per step, flushed, so the parent's output shows
// where a crash happened.
int handshake(const LoadedPlugin& lib) {
    SmokeServices services;
    PluginContext ctx(lib.info().name, toml::table{}, services);
    const auto& d = lib.descriptor();
    void* instance = nullptr;
    renkei_error err{};
    int32_t rc = d.create(ctx.api(), &instance, &err);
    std::cout << "  create: " << status_name(rc) << (rc ? std::string(" ") + err.message : "") << std::endl;
    if (rc != RENKEI_OK) return 1;
    err = {};
    rc = d.start(instance, &err);
    std::cout << "  start: " << status_name(rc) << (rc ? std::string(" ") + err.message : "") << std::endl;
    if (rc != RENKEI_OK) {
        d.destroy(instance);
        return 1;
    }
    for (const auto& declared : lib.info().message_types) {
        std::string type = declared;
        if (type.size() >= 2 && type.compare(type.size() - 2, 2, ".*") == 0)
            type = type.substr(0, type.size() - 1) + "SmokeTest";
        std::cout << "  handle " << type << ": " << std::flush;
        capnp::MallocMessageBuilder mb;
        auto e = mb.initRoot<schema::Envelope>();
        auto id = new_message_id();
        e.setId(kj::ArrayPtr<const kj::byte>(id.data(), id.size()));
        e.setType(type);
        e.setFrom("muni:131016");
        e.setTo("muni:131016");
        e.setPurpose("smoke-test");
        auto flat = capnp::messageToFlatArray(mb);
        auto bytes = flat.asBytes();
        err = {};
        rc = d.handle(instance, bytes.begin(), bytes.size(), &err);
        // Any status is a valid answer to an empty payload; what matters is that one comes back.
        std::cout << status_name(rc) << (rc ? std::string(" (") + err.message + ")" : "") << std::endl;
    }
    d.stop(instance);
    d.destroy(instance);
    std::cout << "  stop, destroy: ok (" << services.sent << " message(s) sent by the plugin)" << std::endl;
    return 0;
}

} // namespace

int plugin_check(const std::string& path, std::ostream& out) {
    std::shared_ptr<LoadedPlugin> lib;
    try {
        lib = load_plugin(path);
    } catch (const std::exception& e) {
        out << "REFUSED: " << e.what() << "\n";
        return 1;
    }
    const auto& i = lib->info();
    out << "plugin:   " << i.name << " " << i.version << "\n"
        << "file:     " << i.path.string() << "\n"
        << "kind:     " << i.kind_name() << "\n"
        << "abi:      " << i.abi_major << "." << i.abi_minor << " (host " << RENKEI_ABI_MAJOR << "."
        << RENKEI_ABI_MINOR << ")\n"
        << "types:   ";
    for (auto& t : i.message_types) out << " " << t;
    out << "\nhandshake:" << std::endl;
    std::cout.flush();
    pid_t pid = fork();
    if (pid < 0) {
        out << "REFUSED: fork failed: " << strerror(errno) << "\n";
        return 1;
    }
    if (pid == 0) _exit(handshake(*lib));
    int status = 0;
    waitpid(pid, &status, 0);
    if (WIFSIGNALED(status)) {
        out << "\nFAILED: the plugin crashed (signal " << WTERMSIG(status) << ", "
            << strsignal(WTERMSIG(status)) << ") during the step above; run it with isolation = \"process\" "
            << "at most, or fix it\n";
        return 1;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        out << "FAILED: handshake did not complete\n";
        return 1;
    }
    out << "OK\n";
    return 0;
}

} // namespace renkei
