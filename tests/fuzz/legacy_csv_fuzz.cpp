// Fuzz target: adapters/legacy-file's parser with the shipped UTF-8 CSV profile (csv-utf8.toml).
// Any bytes must parse into records, per-line rejections or one file failure, never a crash.
#include "legacy_fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const legacy_fuzz::Setup setup("csv-utf8.toml");
    legacy_fuzz::run(setup, data, size);
    return 0;
}

std::vector<std::vector<uint8_t>> fuzz_seeds() { return legacy_fuzz::seeds("csv-utf8-sample.csv"); }
