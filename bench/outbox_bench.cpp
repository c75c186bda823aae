// Durable outbox throughput: put + ack messages/s (items_per_second), in batches and from
// concurrent single-message callers (group commit). Each message is committed on put and deleted
// on ack, each batch in one transaction, as the host does it.
//
//   ./build/bench/outbox_bench --benchmark_filter=PutAck
#include "renkei/outbox.hpp"

#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using renkei::MessageId;
using renkei::Outbox;
using renkei::OutboxPut;

// A database in a fresh temporary directory, removed afterwards.
class ScratchOutbox {
public:
    explicit ScratchOutbox(renkei::sqlite::Durability durability) {
        std::string tmpl =
            (std::filesystem::temp_directory_path() / "renkei-bench-XXXXXX").string();
        if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
        dir_ = tmpl;
        renkei::OutboxOptions options;
        options.storage.durability = durability;
        outbox_ = std::make_unique<Outbox>(dir_ / "outbox.db", options);
    }
    ~ScratchOutbox() {
        outbox_.reset();
        std::error_code ec;
        std::filesystem::remove_all(dir_, ec);
    }
    Outbox& outbox() { return *outbox_; }

private:
    std::filesystem::path dir_;
    std::unique_ptr<Outbox> outbox_;
};

const std::vector<uint8_t>& payload() {
    static const std::vector<uint8_t> bytes(512, 0x42);  // a typical small signed envelope
    return bytes;
}

void put_ack_batches(benchmark::State& state, renkei::sqlite::Durability durability) {
    ScratchOutbox scratch(durability);
    Outbox& outbox = scratch.outbox();
    const auto batch = static_cast<size_t>(state.range(0));
    std::vector<MessageId> ids(batch);
    std::vector<OutboxPut> puts(batch);
    for (auto _ : state) {
        for (size_t i = 0; i < batch; ++i) {
            ids[i] = renkei::new_message_id();
            puts[i] = OutboxPut{"pref:13", ids[i], "juki.IdentityUpdate", payload()};
        }
        outbox.put_batch(puts, 0);
        outbox.ack_batch("pref:13", ids);
    }
    state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(batch));
}

void BM_PutAckBatch(benchmark::State& state) {
    put_ack_batches(state, renkei::sqlite::Durability::process_crash);
}
BENCHMARK(BM_PutAckBatch)->Arg(1)->Arg(64)->Arg(256)->Arg(1024)->UseRealTime();

void BM_PutAckBatchPowerLossSafe(benchmark::State& state) {
    put_ack_batches(state, renkei::sqlite::Durability::power_loss);
}
BENCHMARK(BM_PutAckBatchPowerLossSafe)->Arg(256)->Arg(1024)->UseRealTime();

// Single-message puts from several threads: the group commit batches them.
std::unique_ptr<ScratchOutbox> shared_outbox;
std::mutex shared_mutex;

void BM_ConcurrentSinglePuts(benchmark::State& state) {
    if (state.thread_index() == 0) {
        std::lock_guard lock(shared_mutex);
        shared_outbox = std::make_unique<ScratchOutbox>(renkei::sqlite::Durability::process_crash);
    }
    // The benchmark library starts the timed loop of all threads together, after this setup.
    for (auto _ : state) {
        MessageId id = renkei::new_message_id();
        shared_outbox->outbox().put("pref:13", id, "juki.IdentityUpdate", payload(), 0);
    }
    state.SetItemsProcessed(state.iterations());
    if (state.thread_index() == 0) {
        std::lock_guard lock(shared_mutex);
        shared_outbox.reset();
    }
}
BENCHMARK(BM_ConcurrentSinglePuts)->Threads(1)->Threads(4)->Threads(16)->UseRealTime();

} // namespace

BENCHMARK_MAIN();
