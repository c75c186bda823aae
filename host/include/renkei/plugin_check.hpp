// "renkei plugin check F.so": load a plugin, print its descriptor, and run each declared message
// type through create/start/handle/stop/destroy in a child process so that a crash is reported,
// not suffered.
#pragma once

#include <ostream>
#include <string>

namespace renkei {

// Returns the process exit code: 0 when the plugin loads and survives the handshake.
int plugin_check(const std::string& path, std::ostream& out);

} // namespace renkei
