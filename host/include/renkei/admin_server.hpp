// Admin HTTP on loopback: /healthz, /metrics (Prometheus text), /plugins (JSON status).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>

namespace httplib {
class Server;
}

namespace renkei {

class AdminServer {
public:
    struct Handlers {
        std::function<std::string()> metrics; // Prometheus text
        std::function<std::string()> status;  // JSON
        std::function<bool()> healthy;
    };

    // Binds `listen` ("127.0.0.1:<port>", port 0 = any free port). Throws if it cannot bind.
    AdminServer(const std::string& listen, Handlers handlers);
    ~AdminServer();
    int port() const { return port_; }

private:
    std::unique_ptr<httplib::Server> server_;
    std::thread thread_;
    int port_ = 0;
};

} // namespace renkei
