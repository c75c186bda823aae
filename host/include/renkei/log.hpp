// Structured logging on spdlog: one logger per component ("host", "router", "plugin.<name>").
#pragma once

#include <spdlog/spdlog.h>

#include <memory>
#include <string>

namespace renkei {

// Configures the default sink and level once per process ("trace".."error", "off").
void init_logging(const std::string& level = "info", bool json = false);

// The named logger, created on first use with the process-wide sink and level.
std::shared_ptr<spdlog::logger> logger(const std::string& name);

// Names the calling thread for top, perf and gdb ("links-recv"); cut to the kernel's 15 bytes.
void name_thread(const std::string& name);

} // namespace renkei
