#include <renkei/admin_server.hpp>

#include <httplib.h>

#include <stdexcept>

namespace renkei {

AdminServer::AdminServer(const std::string& listen, Handlers h) : server_(std::make_unique<httplib::Server>()) {
    auto colon = listen.rfind(':');
    std::string host = listen.substr(0, colon);
    if (host == "localhost") host = "127.0.0.1";
    if (host == "[::1]") host = "::1";
    int port = std::stoi(listen.substr(colon + 1));

    server_->Get("/healthz", [h](const httplib::Request&, httplib::Response& res) {
        bool ok = h.healthy();
        res.status = ok ? 200 : 503;
        res.set_content(h.status(), "application/json");
    });
    server_->Get("/metrics", [h](const httplib::Request&, httplib::Response& res) {
        res.set_content(h.metrics(), "text/plain; version=0.0.4");
    });
    server_->Get("/plugins", [h](const httplib::Request&, httplib::Response& res) {
        res.set_content(h.status(), "application/json");
    });
    server_->set_payload_max_length(4096); // admin GETs carry no body

    if (port == 0)
        port_ = server_->bind_to_any_port(host.c_str());
    else
        port_ = server_->bind_to_port(host.c_str(), port) ? port : -1;
    if (port_ <= 0) throw std::runtime_error("admin HTTP: cannot bind " + listen);
    // bind_to_port already listens, so connections queue until the thread accepts them.
    thread_ = std::thread([this] { server_->listen_after_bind(); });
}

AdminServer::~AdminServer() {
    server_->stop();
    if (thread_.joinable()) thread_.join();
}

} // namespace renkei
