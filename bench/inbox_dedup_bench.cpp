// The durable dedup check a receiving host makes for every message from a durable peer
// (InboxDedup::seen, before the plugin sees it), on new ids, the usual case: with the in-memory
// filter in front of the file and without it, against a store of 2 million ids (a few days of a
// prefecture's traffic; a national host keeps far more, and there the file's pages are seldom in
// memory). Also the cost of filling the filter when the store opens.
//
//   ./build/bench/inbox_dedup_bench
#include <renkei/envelope.hpp>
#include <renkei/inbox_dedup.hpp>

#include "../tests/support/test_support.hpp"

#include <benchmark/benchmark.h>

#include <chrono>
#include <memory>
#include <thread>
#include <vector>

namespace {

constexpr size_t kStored = 2'000'000;

// The store's file, made once for all the benchmarks: kStored ids, recorded in batches as the
// links' committer records them.
const std::filesystem::path& store_file() {
    static renkei::test::TempDir dir;
    static const std::filesystem::path path = [] {
        auto p = dir / "inbox.db";
        renkei::DedupFilterOptions none;
        none.ids = 0;
        renkei::InboxDedup store(p, {}, none);
        std::vector<renkei::MessageId> batch(10'000);
        for (size_t done = 0; done < kStored; done += batch.size()) {
            for (auto& id : batch) id = renkei::new_message_id();
            store.first_time_batch(batch, 1);
        }
        return p;
    }();
    return path;
}

std::unique_ptr<renkei::InboxDedup> open_store(bool filter) {
    renkei::DedupFilterOptions o;
    if (!filter) o.ids = 0;
    auto store = std::make_unique<renkei::InboxDedup>(store_file(), renkei::sqlite::OpenOptions{.exclusive = true}, o);
    while (filter && store->filters_built() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    return store;
}

void BM_SeenNewIds(benchmark::State& state) {
    auto store = open_store(state.range(0) != 0);
    std::vector<renkei::MessageId> ids(100'000);
    for (auto& id : ids) id = renkei::new_message_id();
    size_t found = 0;
    for (auto _ : state)
        for (auto& id : ids) found += store->seen(id);
    if (found != 0) state.SkipWithError("a new id was reported seen");
    state.SetItemsProcessed(int64_t(state.iterations()) * int64_t(ids.size()));
    state.SetLabel(state.range(0) ? "filter, then the file" : "the file");
}
BENCHMARK(BM_SeenNewIds)->Arg(1)->Arg(0)->Unit(benchmark::kMillisecond);

// Opening the store until its filter is ready (lookups read the file meanwhile).
void BM_FillTheFilterOnOpen(benchmark::State& state) {
    store_file();
    for (auto _ : state) benchmark::DoNotOptimize(open_store(true));
    state.SetItemsProcessed(int64_t(state.iterations()) * int64_t(kStored));
}
BENCHMARK(BM_FillTheFilterOnOpen)->Unit(benchmark::kMillisecond)->Iterations(3)->UseRealTime(); // filled on its own thread

} // namespace

BENCHMARK_MAIN();
