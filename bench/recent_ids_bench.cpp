// The memory-delivery dedup set: a lookup and an insert per message taken from a memory peer
// (Links' memory_seen, [links] memory_dedup_ids = 2^20), on ids with random tails as hosts make them;
// filling it, and full (each insert forgets the oldest).
//
//   ./build/bench/recent_ids_bench
#include <renkei/envelope.hpp>
#include <renkei/recent_ids.hpp>

#include <benchmark/benchmark.h>

#include <vector>

namespace {

void BM_RecentIdsLookupAndInsert(benchmark::State& state) {
    std::vector<renkei::MessageId> ids(600000);
    for (auto& id : ids) id = renkei::new_message_id();
    for (auto _ : state) {
        renkei::RecentIds seen(size_t(1) << 20);
        size_t hits = 0;
        for (auto& id : ids) {
            hits += seen.contains(id);
            seen.insert(id);
        }
        benchmark::DoNotOptimize(hits);
    }
    state.SetItemsProcessed(int64_t(state.iterations()) * int64_t(ids.size()));
}
BENCHMARK(BM_RecentIdsLookupAndInsert)->Unit(benchmark::kMillisecond);

// The steady state of a long-running link: the set is full, and every insert forgets the oldest.
void BM_RecentIdsFullLookupInsertAndForget(benchmark::State& state) {
    std::vector<renkei::MessageId> ids(600000);
    for (auto& id : ids) id = renkei::new_message_id();
    renkei::RecentIds seen(size_t(1) << 18);
    for (auto& id : ids) seen.insert(id); // full from here on
    for (auto _ : state) {
        size_t hits = 0;
        for (auto& id : ids) {
            hits += seen.contains(id);
            seen.insert(id);
        }
        benchmark::DoNotOptimize(hits);
    }
    state.SetItemsProcessed(int64_t(state.iterations()) * int64_t(ids.size()));
}
BENCHMARK(BM_RecentIdsFullLookupInsertAndForget)->Unit(benchmark::kMillisecond);

} // namespace

BENCHMARK_MAIN();
