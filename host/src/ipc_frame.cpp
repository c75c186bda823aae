#include <renkei/ipc_frame.hpp>

#include <renkei/envelope.hpp>

#include <cstring>
#include <stdexcept>

namespace renkei::ipc {

Received::Received(const zmq::message_t& msg) {
    if (msg.size() == 0 || msg.size() % sizeof(capnp::word) != 0)
        throw std::runtime_error("isolation frame of " + std::to_string(msg.size()) +
                                 " bytes is not a Cap'n Proto message");
    words_ = kj::heapArray<capnp::word>(msg.size() / sizeof(capnp::word));
    std::memcpy(words_.begin(), msg.data(), msg.size());
    reader_.emplace(words_.asPtr(), reader_options_for(msg.size()));
}

void send(zmq::socket_t& socket, capnp::MessageBuilder& frame) {
    auto words = capnp::messageToFlatArray(frame);
    auto bytes = words.asBytes();
    socket.send(zmq::buffer(bytes.begin(), bytes.size()), zmq::send_flags::none);
}

bool try_send(zmq::socket_t& socket, capnp::MessageBuilder& frame) {
    auto words = capnp::messageToFlatArray(frame);
    auto bytes = words.asBytes();
    return socket.send(zmq::buffer(bytes.begin(), bytes.size()), zmq::send_flags::dontwait).has_value();
}

std::unique_ptr<Received> receive(zmq::socket_t& socket, long timeout_ms) {
    zmq::pollitem_t item{socket.handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, std::chrono::milliseconds(timeout_ms)) == 0) return nullptr;
    zmq::message_t msg;
    if (!socket.recv(msg, zmq::recv_flags::dontwait)) return nullptr;
    return std::make_unique<Received>(msg);
}

} // namespace renkei::ipc
