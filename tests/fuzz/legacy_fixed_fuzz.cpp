// Fuzz target: adapters/legacy-file's parser with the shipped fixed-width CP932 profile
// (fixed-cp932.toml): iconv decoding, byte offsets, half-width kana, 和暦 dates, 外字 mapping.
#include "legacy_fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const legacy_fuzz::Setup setup("fixed-cp932.toml");
    legacy_fuzz::run(setup, data, size);
    return 0;
}

std::vector<std::vector<uint8_t>> fuzz_seeds() { return legacy_fuzz::seeds("fixed-cp932-sample.dat"); }
