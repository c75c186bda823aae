#include <renkei/http/server.hpp>

namespace renkei::http {

json error_body(int status, const std::string& rule, const std::string& field, const std::string& message) {
    return json{{"error", {{"status", status}, {"rule", rule}, {"field", field}, {"message", message}}}};
}

json ApiError::body() const {
    auto b = error_body(status_, rule_, field_, what());
    for (auto& [k, v] : extra_.items()) b["error"][k] = v;
    return b;
}

void send_json(httplib::Response& res, int status, const json& body) {
    res.status = status;
    // Invalid UTF-8 from a caller is replaced, never a reason to fail the answer.
    res.set_content(body.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

json parse_object(const httplib::Request& req) {
    json j;
    try {
        j = json::parse(req.body);
    } catch (const json::parse_error& e) {
        throw ApiError(400, "http.not_json", "body",
                       "body: not JSON (byte " + std::to_string(e.byte) + " of " + std::to_string(req.body.size()) + ")");
    }
    if (!j.is_object()) throw ApiError(400, "http.not_object", "body", "body: must be a JSON object");
    return j;
}

std::pair<std::string, int> split_listen(const std::string& listen, const std::string& setting) {
    auto colon = listen.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 >= listen.size())
        throw std::invalid_argument(setting + ": '" + listen + "' must be host:port, e.g. 127.0.0.1:8470");
    std::string host = listen.substr(0, colon);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    if (host == "localhost") host = "127.0.0.1";
    int port = -1;
    try {
        size_t used = 0;
        port = std::stoi(listen.substr(colon + 1), &used);
        if (used != listen.size() - colon - 1) port = -1;
    } catch (const std::exception&) {
    }
    if (port < 0 || port > 65535) throw std::invalid_argument(setting + ": port of '" + listen + "' must be 0..65535");
    return {host, port};
}

Server::Server(ServerOptions o) : options_(std::move(o)), server_(std::make_unique<httplib::Server>()) {
    auto [host, port] = split_listen(options_.listen, options_.setting_prefix + "listen");
    if (host != "127.0.0.1" && host != "::1" && !options_.allow_non_loopback)
        throw std::invalid_argument(options_.setting_prefix + "listen: " + host +
                                    " is not a loopback address; set allow_non_loopback = true to bind it");
    host_ = host;
    port_ = port;
    size_t limit = options_.max_body_bytes;
    server_->set_payload_max_length(limit);
    int threads = std::max(1, options_.threads);
    server_->new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
    // Errors raised by the server itself (body too large, no route) get the same JSON shape.
    server_->set_error_handler(httplib::Server::HandlerWithResponse([limit](const httplib::Request& req, httplib::Response& res) {
        if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
        if (res.status == 413)
            send_json(res, 413, error_body(413, "http.body_too_large", "body",
                                           "body: larger than the limit of " + std::to_string(limit) + " bytes"));
        else if (res.status == 404)
            send_json(res, 404, error_body(404, "http.not_found", "path", "path: no endpoint " + req.method + " " + req.path));
        else
            send_json(res, res.status, error_body(res.status, "http.error", "", "HTTP error " + std::to_string(res.status)));
        return httplib::Server::HandlerResponse::Handled;
    }));
}

Server::~Server() { stop(); }

Server::Handler Server::wrap(Handler h) {
    return [h = std::move(h)](const httplib::Request& req, httplib::Response& res) {
        try {
            h(req, res);
        } catch (const ApiError& e) {
            send_json(res, e.status(), e.body());
        } catch (const std::exception& e) {
            send_json(res, 500, error_body(500, "http.internal", "", std::string("internal error: ") + e.what()));
        }
    };
}

void Server::get(const std::string& pattern, Handler h) { server_->Get(pattern, wrap(std::move(h))); }
void Server::post(const std::string& pattern, Handler h) { server_->Post(pattern, wrap(std::move(h))); }

void Server::start() {
    int port = port_ == 0 ? server_->bind_to_any_port(host_) : (server_->bind_to_port(host_, port_) ? port_ : -1);
    if (port <= 0) throw std::runtime_error(options_.setting_prefix + "listen: cannot bind " + options_.listen);
    port_ = port;
    // bind_to_port already listens: connections queue until this thread accepts them.
    thread_ = std::thread([this] { server_->listen_after_bind(); });
}

void Server::stop() {
    if (server_) server_->stop();
    if (thread_.joinable()) thread_.join();
}

} // namespace renkei::http
