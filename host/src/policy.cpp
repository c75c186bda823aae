#include <renkei/policy.hpp>

#include <renkei/config.hpp>

#include <toml++/toml.h>

#include <algorithm>
#include <fstream>
#include <sstream>

namespace renkei {
namespace {

bool sender_matches(const std::string& pattern, const std::string& sender) {
    if (pattern == "*" || pattern == sender) return true;
    if (pattern.rfind("kind:", 0) == 0) return node_kind(sender) == pattern.substr(5);
    return false;
}

bool type_matches(const std::string& pattern, const std::string& type) {
    if (pattern == "*" || pattern == type) return true;
    if (pattern.size() >= 2 && pattern.compare(pattern.size() - 2, 2, ".*") == 0)
        return type.size() > pattern.size() - 1 && type.compare(0, pattern.size() - 1, pattern, 0, pattern.size() - 1) == 0;
    return false;
}

// "*" or an exact code, or a prefix ending in "*" ("juki-beppyo1:*" covers every item of the table).
bool purpose_matches(const std::string& pattern, const std::string& purpose) {
    if (pattern == "*" || pattern == purpose) return true;
    return pattern.size() > 1 && pattern.back() == '*' && purpose.size() >= pattern.size() &&
           purpose.compare(0, pattern.size() - 1, pattern, 0, pattern.size() - 1) == 0;
}

bool conditions_ok(const std::vector<std::vector<std::string>>& allowed, const std::vector<std::string>& present) {
    if (allowed.empty()) return true;
    for (auto& set : allowed)
        if (std::all_of(set.begin(), set.end(), [&](const std::string& c) {
                return std::find(present.begin(), present.end(), c) != present.end();
            }))
            return true;
    return false;
}

std::string join(const std::vector<std::string>& v) {
    std::string s;
    for (auto& x : v) s += (s.empty() ? "" : "+") + x;
    return s.empty() ? "(none)" : s;
}

} // namespace

Policy Policy::from_file(const std::filesystem::path& file) {
    std::ifstream in(file);
    if (!in) throw std::runtime_error(file.string() + ": cannot read the policy file");
    std::stringstream ss;
    ss << in.rdbuf();
    return from_string(ss.str(), file.string());
}

Policy Policy::from_string(const std::string& text, const std::string& source) {
    std::vector<std::string> problems;
    auto issue = [&](const toml::node* n, const std::string& key, const std::string& msg) {
        problems.push_back(source + ":" + std::to_string(n ? n->source().begin.line : 0) + ": " + key + ": " + msg);
    };
    toml::table root;
    try {
        root = toml::parse(text, source);
    } catch (const toml::parse_error& e) {
        throw std::runtime_error(source + ":" + std::to_string(e.source().begin.line) + ": TOML syntax: " +
                                 std::string(e.description()));
    }
    Policy p;
    for (auto&& [k, v] : root)
        if (k.str() != "rule") issue(&v, std::string(k.str()), "unknown key (only [[rule]] tables)");
    if (auto* rules = root.get("rule")) {
        auto* arr = rules->as_array();
        if (!arr) issue(rules, "rule", "must be an array of tables: [[rule]]");
        for (size_t i = 0; arr && i < arr->size(); ++i) {
            auto* t = (*arr)[i].as_table();
            std::string prefix = "rule[" + std::to_string(i) + "].";
            if (!t) {
                issue(&(*arr)[i], prefix, "must be a table");
                continue;
            }
            Rule r;
            r.where = source + ":" + std::to_string(t->source().begin.line);
            for (auto&& [k, v] : *t) {
                std::string key(k.str());
                if (key == "sender" || key == "type" || key == "purpose" || key == "comment") {
                    auto s = v.value<std::string>();
                    if (!s || s->empty()) {
                        issue(&v, prefix + key, "must be a non-empty string");
                        continue;
                    }
                    (key == "sender" ? r.sender : key == "type" ? r.type : key == "purpose" ? r.purpose : r.comment) = *s;
                } else if (key == "deny") {
                    if (auto b = v.value<bool>())
                        r.deny = *b;
                    else
                        issue(&v, prefix + key, "must be true or false");
                } else if (key == "conditions") {
                    auto* sets = v.as_array();
                    bool ok = sets && !sets->empty();
                    for (size_t j = 0; ok && j < sets->size(); ++j) {
                        auto* set = (*sets)[j].as_array();
                        if (!set || set->empty()) {
                            ok = false;
                            break;
                        }
                        std::vector<std::string> names;
                        for (auto& c : *set) {
                            auto s = c.value<std::string>();
                            if (!s) ok = false;
                            else names.push_back(*s);
                        }
                        r.conditions.push_back(std::move(names));
                    }
                    if (!ok) issue(&v, prefix + key, "must be a non-empty array of non-empty arrays of condition names");
                } else {
                    issue(&v, prefix + key, "unknown key (a typo must not silently widen or narrow access)");
                }
            }
            for (auto [name, value] : {std::pair{"sender", &r.sender}, {"type", &r.type}, {"purpose", &r.purpose}})
                if (value->empty()) issue(t, prefix + name, "required key is missing");
            if (!r.sender.empty() && r.sender != "*" && r.sender.rfind("kind:", 0) != 0 && !node_id_problem(r.sender).empty())
                issue(t->get("sender"), prefix + "sender", node_id_problem(r.sender));
            p.rules_.push_back(std::move(r));
        }
    }
    if (!problems.empty()) {
        std::string all = "invalid policy:";
        for (auto& s : problems) all += "\n  " + s;
        throw std::runtime_error(all);
    }
    return p;
}

PolicyDecision Policy::check(const std::string& sender, const std::string& type, const std::string& purpose,
                             const std::vector<std::string>& conditions) const {
    const Rule* allow = nullptr;
    bool conditions_refused = false;
    const Rule* refused_by = nullptr;
    for (auto& r : rules_) {
        if (!sender_matches(r.sender, sender) || !type_matches(r.type, type) || !purpose_matches(r.purpose, purpose))
            continue;
        if (r.deny) return {false, r.where, "denied by rule " + r.where + (r.comment.empty() ? "" : " (" + r.comment + ")")};
        if (!conditions_ok(r.conditions, conditions)) {
            conditions_refused = true;
            refused_by = &r;
            continue;
        }
        if (!allow) allow = &r;
    }
    if (allow) return {true, allow->where, "allowed by rule " + allow->where};
    if (conditions_refused)
        return {false, refused_by->where, "query conditions " + join(conditions) + " are not allowed by rule " +
                                              refused_by->where + " for " + type};
    return {false, "", "no rule allows " + sender + " to send " + type + " for purpose '" + purpose +
                           "': denied by default"};
}

} // namespace renkei
