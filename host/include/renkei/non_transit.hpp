// The non-transit rule of the 住基ネット technical standards (第3 3(3)): municipality-to-municipality
// notices (転入通知, 住民票記載事項通知, the 広域交付 request and answer, 戸籍の附票記載事項通知,
// 戸籍照合通知, 本籍転属通知, the 転入届の特例 information) must not pass through a prefecture server
// or a J-LIS server. The network is structured so: the host refuses to send such a message to a
// pref or jlis hop that is not its destination, and a pref or jlis host refuses to relay one. It is
// a property of the message type, enforced here, never left to a plugin or a policy file.
#pragma once

#include <string>
#include <string_view>

namespace renkei {

// Whether `type` (or the type a ".Fault" answers) is one of the CS-to-CS notices.
bool non_transit_type(std::string_view type);

// Why a message of `type` bound for `to` may not pass through node `via`; "" if it may.
std::string transit_violation(std::string_view type, const std::string& via, const std::string& to);

} // namespace renkei
