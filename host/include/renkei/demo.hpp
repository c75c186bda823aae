// "renkei demo": runs the demo and prints what happened. Returns the exit code.
#pragma once

#include <filesystem>

namespace renkei {

int run_demo(const std::filesystem::path& build_dir, const std::filesystem::path& source_dir);

} // namespace renkei
