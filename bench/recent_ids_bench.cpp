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

std::vector<renkei::MessageId> fresh_ids() {
    std::vector<renkei::MessageId> ids(600000);
    for (auto& id : ids) id = renkei::new_message_id();
    return ids;
}

// What a receiver does per message taken from a memory peer: is it known? Then remember it.
size_t take_all(renkei::RecentIds& seen, const std::vector<renkei::MessageId>& ids) {
    size_t hits = 0;
    for (auto& id : ids) {
        hits += seen.contains(id);
        seen.insert(id);
    }
    return hits;
}

void BM_RecentIdsLookupAndInsert(benchmark::State& state) {
    auto ids = fresh_ids();
    for (auto _ : state) {
        renkei::RecentIds seen(size_t(1) << 20);
        benchmark::DoNotOptimize(take_all(seen, ids));
    }
    state.SetItemsProcessed(int64_t(state.iterations()) * int64_t(ids.size()));
}
BENCHMARK(BM_RecentIdsLookupAndInsert)->Unit(benchmark::kMillisecond);

// The steady state of a long-running link: the set is full, and every insert forgets the oldest.
void BM_RecentIdsFullLookupInsertAndForget(benchmark::State& state) {
    auto ids = fresh_ids();
    renkei::RecentIds seen(size_t(1) << 18);
    take_all(seen, ids); // full from here on
    for (auto _ : state) benchmark::DoNotOptimize(take_all(seen, ids));
    state.SetItemsProcessed(int64_t(state.iterations()) * int64_t(ids.size()));
}
BENCHMARK(BM_RecentIdsFullLookupInsertAndForget)->Unit(benchmark::kMillisecond);

} // namespace

BENCHMARK_MAIN();
