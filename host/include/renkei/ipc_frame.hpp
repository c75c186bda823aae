// Sending and receiving isolation frames (isolation.capnp) on a ZeroMQ socket.
#pragma once

#include <isolation.capnp.h>

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <zmq.hpp>

#include <memory>
#include <optional>

namespace renkei::ipc {

// A received frame, copied into aligned memory (ipc:// frames are as misaligned as TCP ones).
class Received {
public:
    explicit Received(const zmq::message_t& msg);
    Frame::Reader get() { return reader_->getRoot<Frame>(); }

private:
    kj::Array<capnp::word> words_;
    std::optional<capnp::FlatArrayMessageReader> reader_;
};

void send(zmq::socket_t& socket, capnp::MessageBuilder& frame);
// Never blocks: false when the frame cannot be queued (PAIR with no connected peer, i.e. the
// other side is gone). The host uses this so a dead child can never wedge its I/O thread.
bool try_send(zmq::socket_t& socket, capnp::MessageBuilder& frame);
// Waits up to `timeout_ms` (-1 = forever) for a frame; null on timeout.
std::unique_ptr<Received> receive(zmq::socket_t& socket, long timeout_ms);

} // namespace renkei::ipc
