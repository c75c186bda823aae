// Runs a libFuzzer-style target without libFuzzer (GCC builds, CI): a fixed-seed stream of random
// inputs and of mutations of the target's own seed inputs, so every run is reproducible.
// Usage: <target> [iterations]   (clang builds link libFuzzer instead; see tests/fuzz/README.md)
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
// Each target provides well-formed examples to mutate.
std::vector<std::vector<uint8_t>> fuzz_seeds();

int main(int argc, char** argv) {
    long iterations = argc > 1 ? std::atol(argv[1]) : 20000;
    std::mt19937_64 rng(0x72656e6b6569ULL);
    auto seeds = fuzz_seeds();
    for (auto& s : seeds) LLVMFuzzerTestOneInput(s.data(), s.size());
    std::vector<uint8_t> buf;
    for (long i = 0; i < iterations; ++i) {
        if (!seeds.empty() && i % 4 != 0) {
            buf = seeds[rng() % seeds.size()];
            int edits = 1 + static_cast<int>(rng() % 8);
            for (int e = 0; e < edits && !buf.empty(); ++e) {
                switch (rng() % 4) {
                case 0: buf[rng() % buf.size()] = static_cast<uint8_t>(rng()); break;      // flip a byte
                case 1: buf[rng() % buf.size()] ^= static_cast<uint8_t>(1u << (rng() % 8)); break;
                case 2: buf.resize(rng() % (buf.size() + 1)); break;                      // truncate
                case 3: buf.insert(buf.begin() + static_cast<long>(rng() % buf.size()), static_cast<uint8_t>(rng())); break;
                }
            }
        } else {
            buf.resize(rng() % 512);
            for (auto& b : buf) b = static_cast<uint8_t>(rng());
        }
        LLVMFuzzerTestOneInput(buf.data(), buf.size());
    }
    std::printf("%ld inputs, no crash\n", iterations + static_cast<long>(seeds.size()));
    return 0;
}
