// `renkei import FILE --dir DIR`: an operator hands a record file from the municipality's
// 住民記録システム to the legacy-file adapter of a running CS (adapters/legacy-file, whose `dir`
// setting is DIR) and watches it go through: the file is copied into DIR/inbox under a hidden name,
// synced and renamed in (the adapter never sees half a file); while the adapter works, a progress
// line shows records done, rate and time left (read from the adapter's metrics file, rewritten in
// place on a terminal, a line every --interval seconds otherwise); at the end a summary gives the
// counts, the time taken, the first rejected records with field and rule, and where the result
// file and the input went. main.cpp only parses the options; everything else is here so it can be
// called (and tested) without a process.
//
// Exit codes: 0 every record accepted (and answered by J-LIS, unless --wait recorded);
// 1 the file was refused whole (its result says why) or nothing came within --timeout;
// 2 bad usage (no such file or adapter directory, a file of that name already waiting);
// 3 done, but some records were rejected (listed in the result file).
#pragma once

#include <filesystem>
#include <ostream>
#include <string>

namespace renkei {

struct ImportCliOptions {
    std::filesystem::path file;
    std::filesystem::path dir;          // the adapter's `dir` (inbox/, results/, ...)
    std::filesystem::path metrics_file; // the adapter's `metrics_file` (default DIR/legacy-file.prom)
    std::string name;                   // the name in the inbox (default: the file's name)
    bool wait_for_jlis = true;          // false: stop once the CS recorded the file (--wait recorded)
    double timeout_s = 3600;            // give up waiting after this long (the adapter carries on)
    double interval_s = 10;             // progress lines when the output is not a terminal
    bool terminal = false;              // rewrite one progress line in place (set when stdout is a TTY)
};

int run_import_command(const ImportCliOptions& options, std::ostream& out, std::ostream& err);

} // namespace renkei
