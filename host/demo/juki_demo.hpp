// The juki part of `renkei demo` (built into the renkei binary, which links the juki schema).
#pragma once

#include <filesystem>

namespace renkei {

bool juki_network_demo(const std::filesystem::path& build_dir, const std::filesystem::path& source_dir,
                       const std::filesystem::path& dir);

} // namespace renkei
