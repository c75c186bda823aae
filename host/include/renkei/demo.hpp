// "renkei demo": runs the demo and prints what happened. Returns the exit code.
#pragma once

#include <filesystem>
#include <functional>

namespace renkei {

// `more` (if set) runs further parts of the demo in a scratch directory before the verdict.
using DemoPart = std::function<bool(const std::filesystem::path& build_dir, const std::filesystem::path& source_dir,
                                    const std::filesystem::path& dir)>;
int run_demo(const std::filesystem::path& build_dir, const std::filesystem::path& source_dir, DemoPart more = nullptr);

} // namespace renkei
