// Access policy: deny by default. A rule allows (or, with deny = true, forbids) a sender - an
// exact node, a node kind ("kind:agency") or "*" - to send a message type (exact or "prefix.*")
// under a purpose / legal-basis code (exact, "prefix*", or "*"). A rule may limit the query conditions: the request
// is allowed only if its conditions contain one of the listed sets (so a rule can allow lookups by
// 個人番号 but not by name alone). An explicit deny wins over any allow. Rules mirror the law's
// tables (住基法 別表, 番号法 別表); see examples/policy/.
//
//   [[rule]]
//   sender = "kind:agency"
//   type = "juki.Query"
//   purpose = "juki-beppyo1:3"
//   conditions = [["myNumber"], ["residentCode"], ["name", "dateOfBirth", "sex"]]
//   comment = "住基法別表第一 3: ..."
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace renkei {

struct PolicyDecision {
    bool allowed = false;
    std::string rule;   // "file:line" of the deciding rule, or "" for the default
    std::string reason; // human-readable, for the audit trail and the Fault
};

class Policy {
public:
    // Throws std::runtime_error listing every problem as "file:line: key: message".
    static Policy from_file(const std::filesystem::path& file);
    static Policy from_string(const std::string& text, const std::string& source_name);

    PolicyDecision check(const std::string& sender, const std::string& type, const std::string& purpose,
                         const std::vector<std::string>& conditions) const;
    size_t size() const { return rules_.size(); }

private:
    struct Rule {
        std::string where, sender, type, purpose, comment;
        std::vector<std::vector<std::string>> conditions; // empty: any
        bool deny = false;
    };
    std::vector<Rule> rules_;
};

} // namespace renkei
