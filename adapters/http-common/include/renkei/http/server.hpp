// The loopback HTTP/JSON server the HTTP adapters share (cpp-httplib): binds 127.0.0.1 (or ::1)
// unless another address is explicitly allowed, bounds the request body, answers every error as
// JSON naming the rule and the field, and serves on its own threads so a plugin's handle() never
// waits for HTTP.
#pragma once

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>

namespace renkei::http {

using json = nlohmann::json;

// An error answer: HTTP status, the rule broken (stable id, e.g. "quota.keys_per_day"), the field
// it concerns and a message that reads "<field>: <what is wrong>". `extra` adds members to the
// error object (e.g. the quota's limit and use).
class ApiError : public std::runtime_error {
public:
    ApiError(int status, std::string rule, std::string field, const std::string& message, json extra = json::object())
        : std::runtime_error(message), status_(status), rule_(std::move(rule)), field_(std::move(field)),
          extra_(std::move(extra)) {}
    int status() const { return status_; }
    const std::string& rule() const { return rule_; }
    const std::string& field() const { return field_; }
    const json& extra() const { return extra_; }
    json body() const;

private:
    int status_;
    std::string rule_, field_;
    json extra_;
};

// {"error": {"status": 413, "rule": "...", "field": "...", "message": "..."}}
json error_body(int status, const std::string& rule, const std::string& field, const std::string& message);

void send_json(httplib::Response& res, int status, const json& body);

// The request body as a JSON object; ApiError 400 (http.not_json, with the parse position, or
// http.not_object) otherwise.
json parse_object(const httplib::Request& req);

struct ServerOptions {
    std::string listen = "127.0.0.1:0"; // host:port; port 0 picks a free one
    bool allow_non_loopback = false;    // bind another address than 127.0.0.1 / ::1
    size_t max_body_bytes = 1 << 20;    // larger bodies: 413 with a JSON error
    int threads = 8;                    // requests served at once
    std::string setting_prefix = "settings."; // how errors name the settings
};

// Splits "host:port" ("[::1]:8080" too); throws std::invalid_argument naming the setting.
std::pair<std::string, int> split_listen(const std::string& listen, const std::string& setting);

class Server {
public:
    using Handler = std::function<void(const httplib::Request&, httplib::Response&)>;

    explicit Server(ServerOptions o);
    ~Server();
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    // Routes (before start). A handler may throw ApiError; anything else is a 500 JSON error.
    void get(const std::string& pattern, Handler h);
    void post(const std::string& pattern, Handler h);

    // Binds and serves on its own thread; throws std::runtime_error when it cannot bind.
    void start();
    void stop();
    int port() const { return port_; }
    const std::string& address() const { return host_; }

private:
    Handler wrap(Handler h);
    ServerOptions options_;
    std::string host_;
    int port_ = 0;
    std::unique_ptr<httplib::Server> server_;
    std::thread thread_;
};

} // namespace renkei::http
