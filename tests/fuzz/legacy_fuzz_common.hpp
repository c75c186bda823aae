// Shared by the legacy-file parser fuzz targets: the shipped profile and 外字 table, the sample
// files as seeds, and the invariants every parse must keep (a broken one aborts: a finding).
#pragma once

#include <renkei/legacy_file/parser.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace legacy_fuzz {

using namespace renkei::legacy_file;

inline std::string profiles_dir() { return std::string(RENKEI_SOURCE_DIR) + "/adapters/legacy-file/profiles/"; }

struct Setup {
    Profile profile;
    GaijiTable gaiji;
    ParseOptions options;
    explicit Setup(const char* profile_file)
        : profile(load_profile(profiles_dir() + profile_file)), gaiji(load_gaiji_table(profiles_dir() + "gaiji-131016.toml")) {
        options.municipalities = {"131016"};
        options.gaiji = &gaiji;
    }
};

inline void check(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "legacy fuzz: invariant broken: %s\n", what);
        std::abort();
    }
}

inline void run(const Setup& s, const uint8_t* data, size_t size) {
    std::string_view bytes(reinterpret_cast<const char*>(data), size);
    auto r = parse(bytes, s.profile, s.options);
    if (r.failure) {
        check(r.records.empty() && r.rejected.empty(), "a failed file yields no records");
        check(!r.failure->rule.empty() && !r.failure->message.empty(), "a failure names its rule");
        return;
    }
    check(r.records.size() + r.rejected.size() == r.lines, "every data line is a record or a rejection");
    for (auto& x : r.rejected)
        check(x.line > 0 && !x.field.empty() && !x.rule.empty() && x.message.rfind(x.field + ": ", 0) == 0,
              "a rejection names line, field and rule");
    for (auto& rec : r.records) {
        check(rec.line > 0, "records have lines");
        check(rec.resident_code.size() == 11 && rec.my_number.size() == 12, "accepted numbers have their lengths");
        check(rec.local_gov_code == "131016", "only this municipality's records are accepted");
        check(rec.sex != Sex::unknown && rec.reason != Reason::unspecified, "accepted codes are mapped");
    }
}

inline std::vector<std::vector<uint8_t>> seeds(const char* sample) {
    std::ifstream in(profiles_dir() + "samples/" + sample, std::ios::binary);
    std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return {bytes};
}

} // namespace legacy_fuzz
