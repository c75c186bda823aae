// A shared library that is not a renkei plugin: it exports no renkei_plugin_entry.
#include <renkei/plugin.h>

extern "C" RENKEI_EXPORT int some_other_function(void) { return 42; }
