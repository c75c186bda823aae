#include <renkei/config.hpp>
#include <renkei/non_transit.hpp>

#include <array>

namespace renkei {

bool non_transit_type(std::string_view type) {
    static constexpr std::array<std::string_view, 8> kTypes{
        "juki.MoveInNotice",       "juki.RecordNotice",  "juki.CopyRequest",      "juki.CopyAnswer",
        "juki.MoveOutCertificate", "fuhyo.RecordNotice", "fuhyo.CollationNotice", "fuhyo.DomicileTransferNotice"};
    constexpr std::string_view fault = ".Fault";
    if (type.size() > fault.size() && type.substr(type.size() - fault.size()) == fault)
        type.remove_suffix(fault.size());
    for (auto t : kTypes)
        if (t == type) return true;
    return false;
}

std::string transit_violation(std::string_view type, const std::string& via, const std::string& to) {
    if (via == to || !non_transit_type(type)) return {};
    auto kind = node_kind(via);
    if (kind != "pref" && kind != "jlis") return {};
    return std::string(type) + " may not pass through " + via +
           " (住基ネット技術的基準 第3 3(3): municipality-to-municipality notices never transit a prefecture or "
           "J-LIS server); link " + to + " directly";
}

} // namespace renkei
