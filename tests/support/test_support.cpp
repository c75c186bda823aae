#include "test_support.hpp"

#include <renkei/sqlite.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <random>
#include <sstream>
#include <stdexcept>

namespace renkei::test {

TempDir::TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "renkei-test-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
}

TempDir::~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
}

namespace {

// The kernel's range for the local ports of outgoing connections. A test port inside it may be
// taken, while its listener is down (a host killed and restarted), by any outgoing connection on
// the machine, or even by the peer's own reconnect (a TCP self-connect): the restart then fails.
std::pair<int, int> ephemeral_range() {
    std::ifstream in("/proc/sys/net/ipv4/ip_local_port_range");
    int low = 32768, high = 60999;
    if (!(in >> low >> high) || low > high) return {32768, 60999};
    return {low, high};
}

bool bindable(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) throw std::runtime_error("socket failed");
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    bool ok = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    close(fd);
    return ok;
}

} // namespace

int free_port() {
    // Outside the ephemeral range, chosen at random so that parallel tests rarely pick the same.
    static std::mutex mutex;
    std::lock_guard lock(mutex);
    static std::mt19937 rng(std::random_device{}() ^ static_cast<unsigned>(getpid()));
    auto [eph_low, eph_high] = ephemeral_range();
    int low = 10000, high = 65000;
    if (eph_low - low >= 2000) high = eph_low - 1; // below the range (the usual case)
    else low = eph_high + 1;                       // or above it
    std::uniform_int_distribution<int> pick(low, std::max(low, high));
    for (int i = 0; i < 1000; ++i) {
        int port = pick(rng);
        if (port < eph_low || port > eph_high) {
            if (bindable(port)) return port;
        }
    }
    throw std::runtime_error("no free TCP port outside the ephemeral range " + std::to_string(eph_low) + "-" +
                             std::to_string(eph_high));
}

void write_file(const std::filesystem::path& path, const std::string& text) {
    if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path());
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
    if (!out) throw std::runtime_error("cannot write " + path.string());
}

std::string read_file(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

int64_t sqlite_scalar(const std::filesystem::path& db, const std::string& sql) {
    sqlite::Database d(db);
    auto q = d.prepare(sql, "read a test figure");
    return q.step() ? q.column_int64(0) : 0;
}

std::string plugin_path(const std::string& subdir, const std::string& target) {
    return std::string(RENKEI_BUILD_DIR) + "/" + subdir + "/" + target + ".so";
}

Run run_renkei(const std::string& args, bool stdout_only) {
    std::string cmd = std::string(RENKEI_BINARY) + " " + args + (stdout_only ? " 2>/dev/null" : " 2>&1");
    FILE* p = popen(cmd.c_str(), "r");
    std::string out;
    char buf[4096];
    size_t n;
    while (p && (n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    int status = p ? pclose(p) : -1;
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

} // namespace renkei::test
