// A parsed record as the juki schema carries it (juki.IdentityRecord): shared by the adapter's
// notifications and by `renkei load`, so both record exactly the same record.
#pragma once

#include "parser.hpp"

#include <juki.capnp.h>

namespace renkei::legacy_file {

// Fills `out` from `r`; `operator_id` stands in where the file named no 操作者ID.
void fill(juki::IdentityRecord::Builder out, const Record& r, const std::string& operator_id);

} // namespace renkei::legacy_file
