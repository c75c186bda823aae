// The node configuration loader: what a valid file yields, and that every problem is reported
// with file, line and key, all of them at once.
#include "test_support.hpp"

#include <renkei/config.hpp>

#include <gtest/gtest.h>

#include <set>

#include <algorithm>
#include <string>
#include <vector>

using namespace renkei;
using namespace renkei::test;
namespace fs = std::filesystem;

namespace {

// A valid Z85 CURVE public key (the example server key from the ZeroMQ CURVE documentation).
const std::string kCurve = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7";
const std::string kHex64 = std::string(32, 'a') + std::string(32, '0');
const std::string kHex64b = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fs::path mock_echo() { return plugin_path("adapters/mock-echo", "mock_echo"); }

// Issues for `key` (there may be several, e.g. one per bad array element).
std::vector<ConfigIssue> issues_for(const std::vector<ConfigIssue>& all, const std::string& key) {
    std::vector<ConfigIssue> out;
    std::copy_if(all.begin(), all.end(), std::back_inserter(out), [&](auto& i) { return i.key == key; });
    return out;
}

std::string dump(const std::vector<ConfigIssue>& issues) {
    std::string s;
    for (auto& i : issues) s += i.to_string() + "\n";
    return s;
}

// Expects exactly one issue for `key`, at `line`, in `file`, whose message contains `text`.
void expect_issue(const std::vector<ConfigIssue>& all, const fs::path& file, const std::string& key,
                  int64_t line, const std::string& text) {
    auto found = issues_for(all, key);
    ASSERT_EQ(found.size(), 1u) << "key " << key << " in:\n" << dump(all);
    EXPECT_EQ(found[0].file, file.string()) << dump(all);
    EXPECT_EQ(found[0].line, line) << key << " in:\n" << dump(all);
    EXPECT_NE(found[0].message.find(text), std::string::npos)
        << key << ": '" << found[0].message << "' lacks '" << text << "'";
}

// Writes a config whose only problem is `body` after a valid [node] table (2 lines).
std::vector<ConfigIssue> check_with_node(const TempDir& tmp, const std::string& body,
                                         const std::string& name = "node.toml") {
    write_file(tmp / name, "[node]\nid = \"muni:131016\"\n" + body);
    return check_config(tmp / name);
}

} // namespace

TEST(Config, NodeIdRules) {
    for (const char* good : {"muni:131016", "muni:011002", "pref:01", "pref:13", "pref:47", "jlis:juki",
                             "ipn:core", "agency:nta", "vendor:acme-print_2", "wallet:x"})
        EXPECT_EQ(node_id_problem(good), "") << good;

    EXPECT_NE(node_id_problem("muni131016").find("must look like <kind>:<name>"), std::string::npos);
    EXPECT_NE(node_id_problem("").find("must look like <kind>:<name>"), std::string::npos);
    EXPECT_NE(node_id_problem("city:1").find("node kind 'city' is not one of"), std::string::npos);
    EXPECT_NE(node_id_problem("MUNI:131016").find("node kind 'MUNI'"), std::string::npos);
    // 131017: wrong check digit; 13101: too short.
    EXPECT_NE(node_id_problem("muni:131017").find("valid check digit, got '131017'"), std::string::npos);
    EXPECT_NE(node_id_problem("muni:13101").find("got '13101'"), std::string::npos);
    EXPECT_NE(node_id_problem("muni:abcdef").find("got 'abcdef'"), std::string::npos);
    for (const char* bad : {"pref:00", "pref:48", "pref:1", "pref:013", "pref:ab", "pref:"})
        EXPECT_NE(node_id_problem(bad).find("2-digit 都道府県コード 01-47"), std::string::npos) << bad;
    for (const char* bad : {"agency:", "agency:NTA", "vendor:a b", "wallet:x:y", "jlis:j.lis"})
        EXPECT_NE(node_id_problem(bad).find("must be 1-64 of [a-z0-9_-]"), std::string::npos) << bad;
    EXPECT_EQ(node_id_problem("vendor:" + std::string(64, 'v')), "");
    EXPECT_NE(node_id_problem("vendor:" + std::string(65, 'v')), "");
}

TEST(Config, NodeKind) {
    EXPECT_EQ(node_kind("muni:131016"), "muni");
    EXPECT_EQ(node_kind("jlis:juki"), "jlis");
    EXPECT_EQ(node_kind("agency:a:b"), "agency");
    EXPECT_EQ(node_kind(":x"), "");
    EXPECT_EQ(node_kind("nokind"), "");
}

TEST(Config, IssueToString) {
    EXPECT_EQ((ConfigIssue{"/etc/n.toml", 7, "node.id", "bad"}).to_string(), "/etc/n.toml:7: node.id: bad");
    EXPECT_EQ((ConfigIssue{"/etc/n.toml", 0, "node.id", "bad"}).to_string(), "/etc/n.toml: node.id: bad");
    EXPECT_EQ((ConfigIssue{"/etc/n.toml", 3, "", "oops"}).to_string(), "/etc/n.toml:3: (file): oops");
}

TEST(Config, ValidFileLoadsEveryField) {
    TempDir tmp;
    // A bare plugin name is found below node.plugin_dirs (resolved against the file's folder),
    // also a few levels down; a name with a slash is a path relative to the file.
    fs::create_directories(tmp / "lib/vendor");
    fs::copy_file(mock_echo(), tmp / "lib/vendor/mock_echo.so");
    write_file(tmp / "policy.toml", "");
    write_file(tmp / "node.toml", R"(# a municipality node
[node]
id = "muni:131016"
data_dir = "state"
listen = "tcp://127.0.0.1:7001"
plugin_dirs = ["lib"]
policy = "policy.toml"

[admin]
listen = "127.0.0.1:9100"

[log]
level = "debug"

[[plugin]]
name = "echo"
path = "mock_echo"
[plugin.settings]
reply_prefix = "re: "
nested = { depth = 2 }

[[plugin]]
name = "echo-isolated"
path = "lib/vendor/mock_echo.so"
isolation = "process"

[[plugin]]
name = "echo_3"
path = "mock_echo"
isolation = "in-process"

[[peer]]
node = "pref:13"
endpoints = ["tcp://10.0.0.1:7001", "tcp://10.0.0.2:7001"]
curve_public = ")" + kCurve + R"("
sign_public = ")" + kHex64 + R"("
seal_public = ")" + kHex64b + R"("
reaches = ["jlis:*", "pref:13", "muni:011002"]

[[peer]]
node = "agency:nta"
curve_public = ")" + kCurve + R"("
reaches = ["*"]
)");
    auto issues = check_config(tmp / "node.toml");
    ASSERT_TRUE(issues.empty()) << dump(issues);
    HostConfig c = load_config(tmp / "node.toml");

    EXPECT_EQ(c.source, tmp / "node.toml");
    EXPECT_TRUE(c.source.is_absolute());
    EXPECT_EQ(c.node_id, "muni:131016");
    EXPECT_EQ(c.data_dir, tmp / "state");
    EXPECT_EQ(c.keys_dir, tmp / "state" / "keys"); // default: below data_dir
    EXPECT_EQ(c.listen, "tcp://127.0.0.1:7001");
    EXPECT_EQ(c.policy_file, tmp / "policy.toml");
    EXPECT_EQ(c.admin_listen, "127.0.0.1:9100");
    EXPECT_EQ(c.log_level, "debug");
    ASSERT_EQ(c.plugin_dirs.size(), 1u);
    EXPECT_EQ(c.plugin_dirs[0], tmp / "lib");

    ASSERT_EQ(c.plugins.size(), 3u);
    EXPECT_EQ(c.plugins[0].name, "echo");
    EXPECT_EQ(c.plugins[0].path, tmp / "lib/vendor/mock_echo.so");
    EXPECT_EQ(c.plugins[0].isolation, Isolation::in_process);
    EXPECT_EQ(c.plugins[0].settings["reply_prefix"].value_or(std::string()), "re: ");
    EXPECT_EQ(c.plugins[0].settings["nested"]["depth"].value_or(0), 2);
    EXPECT_EQ(c.plugins[1].name, "echo-isolated");
    EXPECT_EQ(c.plugins[1].path, tmp / "lib/vendor/mock_echo.so");
    EXPECT_EQ(c.plugins[1].isolation, Isolation::process);
    EXPECT_TRUE(c.plugins[1].settings.empty());
    EXPECT_EQ(c.plugins[2].isolation, Isolation::in_process);

    ASSERT_EQ(c.peers.size(), 2u);
    EXPECT_EQ(c.peers[0].node, "pref:13");
    EXPECT_EQ(c.peers[0].endpoints, (std::vector<std::string>{"tcp://10.0.0.1:7001", "tcp://10.0.0.2:7001"}));
    EXPECT_EQ(c.peers[0].curve_public, kCurve);
    EXPECT_EQ(c.peers[0].sign_public, kHex64);
    EXPECT_EQ(c.peers[0].seal_public, kHex64b);
    EXPECT_EQ(c.peers[0].reaches, (std::vector<std::string>{"jlis:*", "pref:13", "muni:011002"}));
    EXPECT_EQ(c.peers[1].node, "agency:nta");
    EXPECT_TRUE(c.peers[1].endpoints.empty()); // it dials us
    EXPECT_TRUE(c.peers[1].sign_public.empty());
    EXPECT_EQ(c.peers[1].reaches, (std::vector<std::string>{"*"}));
}

TEST(Config, DefaultsForAMinimalFile) {
    TempDir tmp;
    write_file(tmp / "conf/node.toml", "[node]\nid = \"pref:13\"\n");
    HostConfig c = load_config(tmp / "conf/node.toml");
    EXPECT_EQ(c.node_id, "pref:13");
    EXPECT_EQ(c.data_dir, tmp / "conf/var/pref:13");
    EXPECT_EQ(c.keys_dir, tmp / "conf/var/pref:13/keys");
    EXPECT_EQ(c.listen, "");
    EXPECT_EQ(c.admin_listen, "");
    EXPECT_EQ(c.policy_file, fs::path());
    EXPECT_EQ(c.log_level, "info");
    EXPECT_TRUE(c.plugins.empty());
    EXPECT_TRUE(c.peers.empty());
}

TEST(Config, ExplicitDirsAreResolvedAgainstTheFile) {
    TempDir tmp;
    write_file(tmp / "etc/node.toml",
               "[node]\nid = \"jlis:juki\"\ndata_dir = \"../data\"\nkeys_dir = \"/abs/keys\"\n");
    HostConfig c = load_config(tmp / "etc/node.toml");
    EXPECT_EQ(c.data_dir, tmp / "data");
    EXPECT_EQ(c.keys_dir, fs::path("/abs/keys"));
}

TEST(Config, ExtraPluginDirsAreSearchedAfterTheFilesOwn) {
    TempDir tmp;
    fs::create_directories(tmp / "own");
    fs::create_directories(tmp / "extra");
    fs::copy_file(mock_echo(), tmp / "extra/mock_echo.so");
    write_file(tmp / "node.toml", "[node]\nid = \"muni:131016\"\nplugin_dirs = [\"own\"]\n"
                                  "[[plugin]]\nname = \"echo\"\npath = \"mock_echo\"\n");

    // Without the extra dir the plugin is not found ...
    auto issues = check_config(tmp / "node.toml");
    expect_issue(issues, tmp / "node.toml", "plugin[0].path", 6,
                 "plugin 'mock_echo.so' not found in node.plugin_dirs or --plugin-dir");
    // ... with it, it is; and the file's own dirs come first.
    HostConfig c = load_config(tmp / "node.toml", {tmp / "extra"});
    ASSERT_EQ(c.plugins.size(), 1u);
    EXPECT_EQ(c.plugins[0].path, tmp / "extra/mock_echo.so");
    ASSERT_EQ(c.plugin_dirs.size(), 2u);
    EXPECT_EQ(c.plugin_dirs[0], tmp / "own");
    EXPECT_EQ(c.plugin_dirs[1], tmp / "extra");

    fs::copy_file(mock_echo(), tmp / "own/mock_echo.so");
    c = load_config(tmp / "node.toml", {tmp / "extra"});
    EXPECT_EQ(c.plugins[0].path, tmp / "own/mock_echo.so");
}

TEST(Config, IsolationSpellings) {
    TempDir tmp;
    write_file(tmp / "node.toml",
               "[node]\nid = \"muni:131016\"\n"
               "[[plugin]]\nname = \"a\"\npath = \"" + mock_echo().string() + "\"\nisolation = \"none\"\n"
               "[[plugin]]\nname = \"b\"\npath = \"" + mock_echo().string() + "\"\nisolation = \"process\"\n"
               "[[plugin]]\nname = \"c\"\npath = \"" + mock_echo().string() + "\"\nisolation = \"thread\"\n");
    auto issues = check_config(tmp / "node.toml");
    expect_issue(issues, tmp / "node.toml", "plugin[2].isolation", 14,
                 "must be \"in-process\" (default) or \"process\"");
    EXPECT_EQ(issues.size(), 1u) << dump(issues);
}

TEST(Config, MissingNodeTableAndNodeId) {
    TempDir tmp;
    write_file(tmp / "a.toml", "[log]\nlevel = \"info\"\n");
    auto a = check_config(tmp / "a.toml");
    expect_issue(a, tmp / "a.toml", "node", 1, "required table [node] is missing");
    EXPECT_EQ(a.size(), 1u) << dump(a);

    // A required key that is absent is reported at its table's header.
    write_file(tmp / "b.toml", "# comment\n\n[node]\ndata_dir = \"d\"\n");
    auto b = check_config(tmp / "b.toml");
    expect_issue(b, tmp / "b.toml", "node.id", 3, "required key is missing");
    EXPECT_EQ(b.size(), 1u) << dump(b);
}

TEST(Config, NodeValueErrors) {
    TempDir tmp;
    write_file(tmp / "node.toml", "[node]\n"
                                  "id = \"city:1\"\n"
                                  "listen = \"udp://0.0.0.0:1\"\n"
                                  "policy = \"missing-policy.toml\"\n"
                                  "plugin_dirs = \"lib\"\n"
                                  "data_dir = 5\n"
                                  "idd = \"x\"\n");
    auto issues = check_config(tmp / "node.toml");
    auto f = tmp / "node.toml";
    expect_issue(issues, f, "node.id", 2, "node kind 'city' is not one of muni, pref, jlis, ipn, agency, vendor, wallet");
    expect_issue(issues, f, "node.listen", 3, "must be a tcp:// endpoint");
    expect_issue(issues, f, "node.policy", 4, "no such file: " + (tmp / "missing-policy.toml").string());
    expect_issue(issues, f, "node.plugin_dirs", 5, "must be an array of strings");
    expect_issue(issues, f, "node.data_dir", 6, "must be a string");
    expect_issue(issues, f, "node.idd", 7, "unknown key");
    EXPECT_EQ(issues.size(), 6u) << dump(issues);
}

TEST(Config, WrongValueTypes) {
    TempDir tmp;
    auto issues = check_with_node(tmp, "listen = 7001\n"                   // 3 (in [node])
                                       "plugin_dirs = [\"lib\", 3]\n"      // 4
                                       "[log]\n"                           // 5
                                       "level = true\n"                    // 6
                                       "[[plugin]]\n"                      // 7
                                       "name = 1\n"                        // 8
                                       "path = [\"x\"]\n"                  // 9
                                       "settings = \"verbose\"\n"          // 10
                                       "[[peer]]\n"                        // 11
                                       "node = \"pref:13\"\n"              // 12
                                       "curve_public = \"" + kCurve + "\"\n" // 13
                                       "endpoints = \"tcp://a:1\"\n"       // 14
                                       "reaches = [1]\n");                 // 15
    auto f = tmp / "node.toml";
    expect_issue(issues, f, "node.listen", 3, "must be a string");
    expect_issue(issues, f, "node.plugin_dirs", 4, "must be an array of strings");
    expect_issue(issues, f, "log.level", 6, "must be a string");
    expect_issue(issues, f, "plugin[0].name", 8, "must be a string");
    expect_issue(issues, f, "plugin[0].path", 9, "must be a string");
    expect_issue(issues, f, "plugin[0].settings", 10, "must be a table");
    expect_issue(issues, f, "peer[0].endpoints", 14, "must be an array of strings");
    expect_issue(issues, f, "peer[0].reaches", 15, "must be an array of strings");
    EXPECT_EQ(issues.size(), 8u) << dump(issues);
}

TEST(Config, PluginAndPeerMustBeArraysOfTables) {
    TempDir tmp;
    // Top-level keys must come before the first table header.
    write_file(tmp / "node.toml", "plugin = \"echo\"\npeer = [1]\n[node]\nid = \"muni:131016\"\n");
    auto issues = check_config(tmp / "node.toml");
    expect_issue(issues, tmp / "node.toml", "plugin", 1, "must be an array of tables: [[plugin]]");
    expect_issue(issues, tmp / "node.toml", "peer[0].", 2, "must be a table");
    EXPECT_EQ(issues.size(), 2u) << dump(issues);
}

TEST(Config, UnknownKeysAreRejectedEverywhere) {
    TempDir tmp;
    auto issues = check_with_node(tmp, "[nodes]\n"                      // 3
                                       "id = \"x\"\n"                   // 4
                                       "[admin]\n"                      // 5
                                       "port = 9100\n"                  // 6
                                       "[log]\n"                        // 7
                                       "file = \"x.log\"\n"             // 8
                                       "[[plugin]]\n"                   // 9
                                       "name = \"echo\"\n"              // 10
                                       "path = \"" + mock_echo().string() + "\"\n" // 11
                                       "isolaton = \"process\"\n"       // 12
                                       "[[peer]]\n"                     // 13
                                       "node = \"pref:13\"\n"           // 14
                                       "curve_public = \"" + kCurve + "\"\n" // 15
                                       "endpoint = \"tcp://a:1\"\n");   // 16
    auto f = tmp / "node.toml";
    expect_issue(issues, f, "nodes", 3, "unknown key");
    expect_issue(issues, f, "admin.port", 6, "unknown key");
    expect_issue(issues, f, "log.file", 8, "unknown key");
    expect_issue(issues, f, "plugin[0].isolaton", 12, "unknown key");
    expect_issue(issues, f, "peer[0].endpoint", 16, "unknown key");
    EXPECT_EQ(issues.size(), 5u) << dump(issues);
}

TEST(Config, AdminAndLogValues) {
    TempDir tmp;
    auto issues = check_with_node(tmp, "[admin]\nlisten = \"0.0.0.0:9100\"\n[log]\nlevel = \"verbose\"\n");
    expect_issue(issues, tmp / "node.toml", "admin.listen", 4, "must be a loopback address with a port");
    expect_issue(issues, tmp / "node.toml", "log.level", 6, "must be one of trace, debug, info, warn, error, off");
    EXPECT_EQ(issues.size(), 2u) << dump(issues);

    for (const char* bad : {"127.0.0.1", "127.0.0.1:", "127.0.0.1:http", "127.0.0.1:65536", "localhost:-1"}) {
        auto i = check_with_node(tmp, std::string("[admin]\nlisten = \"") + bad + "\"\n");
        expect_issue(i, tmp / "node.toml", "admin.listen", 4, "must be a loopback address");
    }
    for (const char* good : {"127.0.0.1:0", "localhost:9100", "[::1]:65535"}) {
        auto i = check_with_node(tmp, std::string("[admin]\nlisten = \"") + good + "\"\n");
        EXPECT_TRUE(i.empty()) << good << "\n" << dump(i);
    }
}

TEST(Config, HugeAdminPortIsAnIssueNotAnException) {
    TempDir tmp;
    std::vector<ConfigIssue> issues;
    ASSERT_NO_THROW(issues = check_with_node(tmp, "[admin]\nlisten = \"127.0.0.1:99999999999999999999999\"\n"));
    expect_issue(issues, tmp / "node.toml", "admin.listen", 4, "must be a loopback address with a port");
}

TEST(Config, PluginErrors) {
    TempDir tmp;
    const std::string echo = mock_echo().string();
    auto issues = check_with_node(tmp, "[[plugin]]\n"                       // 3
                                       "name = \"echo\"\n"                  // 4
                                       "path = \"" + echo + "\"\n"          // 5
                                       "[[plugin]]\n"                       // 6
                                       "name = \"echo\"\n"                  // 7
                                       "path = \"" + echo + "\"\n"          // 8
                                       "[[plugin]]\n"                       // 9
                                       "name = \"Echo!\"\n"                 // 10
                                       "path = \"./missing/none.so\"\n"     // 11
                                       "[[plugin]]\n"                       // 12
                                       "isolation = \"process\"\n"          // 13
                                       "[[plugin]]\n"                       // 14
                                       "name = \"e5\"\n"                    // 15
                                       "path = \"no_such_plugin\"\n");      // 16
    auto f = tmp / "node.toml";
    expect_issue(issues, f, "plugin[1].name", 7, "duplicate plugin name 'echo'");
    expect_issue(issues, f, "plugin[2].name", 10, "must be 1-64 of [a-z0-9_-]");
    expect_issue(issues, f, "plugin[2].path", 11, "no such file: " + (tmp / "missing/none.so").string());
    // Missing required keys are reported at the [[plugin]] header.
    auto missing = issues_for(issues, "plugin[3].name");
    ASSERT_EQ(missing.size(), 1u) << dump(issues);
    EXPECT_EQ(missing[0].line, 12);
    EXPECT_EQ(missing[0].message, "required key is missing");
    expect_issue(issues, f, "plugin[3].path", 12, "required key is missing");
    expect_issue(issues, f, "plugin[4].path", 16, "plugin 'no_such_plugin.so' not found in node.plugin_dirs or --plugin-dir");
    EXPECT_EQ(issues.size(), 6u) << dump(issues);
}

TEST(Config, PeerErrors) {
    TempDir tmp;
    auto issues = check_with_node(tmp, "[[peer]]\n"                                        // 3
                                       "node = \"pref:13\"\n"                              // 4
                                       "curve_public = \"tooshort\"\n"                     // 5
                                       "sign_public = \"" + std::string(64, 'A') + "\"\n"  // 6
                                       "seal_public = \"abcd\"\n"                          // 7
                                       "endpoints = [\"tcp://a:1\", \"udp://b:2\"]\n"      // 8
                                       "[[peer]]\n"                                        // 9
                                       "node = \"pref:13\"\n"                              // 10
                                       "curve_public = \"" + kCurve + "\"\n"               // 11
                                       "[[peer]]\n"                                        // 12
                                       "node = \"prefecture\"\n"                           // 13
                                       "[[peer]]\n"                                        // 14
                                       "curve_public = \"" + kCurve + "\"\n");             // 15
    auto f = tmp / "node.toml";
    expect_issue(issues, f, "peer[0].curve_public", 5, "must be a 40-character Z85 CURVE public key");
    expect_issue(issues, f, "peer[0].sign_public", 6, "must be 64 lowercase hex characters (Ed25519)");
    expect_issue(issues, f, "peer[0].seal_public", 7, "must be 64 lowercase hex characters (X25519)");
    expect_issue(issues, f, "peer[0].endpoints", 8, "'udp://b:2' is not a tcp:// endpoint");
    expect_issue(issues, f, "peer[1].node", 10, "duplicate peer 'pref:13'");
    expect_issue(issues, f, "peer[2].node", 13, "must look like <kind>:<name>");
    expect_issue(issues, f, "peer[2].curve_public", 12, "required key is missing");
    expect_issue(issues, f, "peer[3].node", 14, "required key is missing");
    EXPECT_EQ(issues.size(), 8u) << dump(issues);
}

TEST(Config, CurveKeyMustBeValidZ85) {
    // Right length, wrong alphabet: ZeroMQ cannot decode it, so the link could never come up.
    TempDir tmp;
    for (std::string bad : {kCurve.substr(0, 39) + "~", kCurve.substr(0, 39) + " ", std::string(40, '%'),
                            kCurve.substr(0, 39) + "_"}) {
        auto issues = check_with_node(tmp, "[[peer]]\nnode = \"pref:13\"\ncurve_public = \"" + bad + "\"\n");
        expect_issue(issues, tmp / "node.toml", "peer[0].curve_public", 5,
                     "must be a 40-character Z85 CURVE public key");
        EXPECT_EQ(issues.size(), 1u) << bad << "\n" << dump(issues);
    }
}

TEST(Config, ReachesPatterns) {
    TempDir tmp;
    auto issues = check_with_node(tmp, "[[peer]]\n"                                         // 3
                                       "node = \"pref:13\"\n"                               // 4
                                       "curve_public = \"" + kCurve + "\"\n"                // 5
                                       "reaches = [\"*\", \"muni:*\", \"muni:13*\", \"jlis:juki\", \"pref13\", \"city:*\", \"muni:1*3\"]\n"); // 6
    auto found = issues_for(issues, "peer[0].reaches");
    ASSERT_EQ(found.size(), 3u) << dump(issues);
    EXPECT_EQ(found[0].line, 6);
    EXPECT_NE(found[0].message.find("'pref13'"), std::string::npos) << found[0].message;
    EXPECT_NE(found[1].message.find("'city:*'"), std::string::npos) << found[1].message;
    EXPECT_NE(found[2].message.find("'muni:1*3'"), std::string::npos) << found[2].message;
    EXPECT_EQ(issues.size(), 3u) << dump(issues);
}

TEST(Config, AllProblemsAreListedNotJustTheFirst) {
    TempDir tmp;
    write_file(tmp / "node.toml", "[node]\n"                        // 1
                                  "id = \"muni:131017\"\n"          // 2
                                  "\n"                              // 3
                                  "[[plugin]]\n"                    // 4
                                  "name = \"echo\"\n"               // 5
                                  "path = \"no_such_plugin\"\n"     // 6
                                  "isolaton = \"process\"\n"        // 7
                                  "[[peer]]\n"                      // 8
                                  "node = \"pref:99\"\n"            // 9
                                  "curve_public = \"x\"\n"          // 10
                                  "[log]\n"                         // 11
                                  "level = \"loud\"\n");            // 12
    auto f = tmp / "node.toml";
    auto issues = check_config(f);
    ASSERT_EQ(issues.size(), 6u) << dump(issues);
    // Every problem, each at its own line (sorted here: the loader checks [log] before the arrays).
    std::vector<std::pair<std::string, int64_t>> got;
    for (auto& i : issues) got.emplace_back(i.key, i.line);
    std::sort(got.begin(), got.end(), [](auto& a, auto& b) { return a.second < b.second; });
    EXPECT_EQ(got, (std::vector<std::pair<std::string, int64_t>>{{"node.id", 2},
                                                                  {"plugin[0].path", 6},
                                                                  {"plugin[0].isolaton", 7},
                                                                  {"peer[0].node", 9},
                                                                  {"peer[0].curve_public", 10},
                                                                  {"log.level", 12}}));

    // load_config throws the same list; its message carries every one as "file:line: key: message".
    try {
        load_config(f);
        FAIL() << "load_config accepted an invalid file";
    } catch (const ConfigError& e) {
        EXPECT_EQ(e.issues().size(), issues.size());
        std::string what = e.what();
        EXPECT_EQ(what.rfind("invalid configuration:", 0), 0u) << what;
        for (auto& i : issues) EXPECT_NE(what.find("\n  " + i.to_string()), std::string::npos) << what;
        EXPECT_NE(what.find(f.string() + ":2: node.id: muni:<code> needs a 6-digit"), std::string::npos) << what;
    }
}

TEST(Config, TomlSyntaxErrorGivesTheLine) {
    TempDir tmp;
    write_file(tmp / "node.toml", "[node]\nid = \"muni:131016\"\nlisten = \"tcp://127.0.0.1:1\n[log]\n");
    auto issues = check_config(tmp / "node.toml");
    ASSERT_EQ(issues.size(), 1u) << dump(issues);
    EXPECT_EQ(issues[0].file, (tmp / "node.toml").string());
    EXPECT_EQ(issues[0].line, 3);
    EXPECT_EQ(issues[0].key, "");
    EXPECT_EQ(issues[0].message.rfind("TOML syntax: ", 0), 0u) << issues[0].message;
    EXPECT_NE(issues[0].to_string().find(":3: (file): TOML syntax: "), std::string::npos) << issues[0].to_string();

    write_file(tmp / "dup.toml", "[node]\nid = \"muni:131016\"\n\n[node]\n");
    auto dup = check_config(tmp / "dup.toml");
    ASSERT_EQ(dup.size(), 1u) << dump(dup);
    EXPECT_EQ(dup[0].line, 4);
    EXPECT_NE(dup[0].message.find("TOML syntax"), std::string::npos);
}

TEST(Config, UnreadableFileIsAnIssue) {
    TempDir tmp;
    auto issues = check_config(tmp / "absent.toml");
    ASSERT_EQ(issues.size(), 1u) << dump(issues);
    EXPECT_EQ(issues[0].file, (tmp / "absent.toml").string());
    EXPECT_NE(issues[0].to_string().find("absent.toml"), std::string::npos);
    EXPECT_THROW(load_config(tmp / "absent.toml"), ConfigError);
}

TEST(Config, CalendarHoursTrustSigningAndDeliverySettings) {
    TempDir tmp;
    write_file(tmp / "trust.toml", "");
    write_file(tmp / "node.toml",
               "[node]\nid = \"muni:131016\"\ntrust_store = \"trust.toml\"\ntrust_root = \"" + std::string(64, 'a') +
                   "\"\n"
                   "[calendar]\nutc_offset = \"+09:00\"\ndays = [\"mon\", \"wed\"]\nholidays = [\"2026-11-23\"]\n"
                   "open = \"09:00\"\nclose = \"17:00\"\n"
                   "[[hours]]\ntype = \"juki.*\"\n[[hours]]\ntype = \"juki.Query\"\noutside = \"refuse\"\n"
                   "[[peer]]\nnode = \"pref:13\"\nsigning = \"batch\"\ndelivery = \"memory\"\n"
                   "[[peer]]\nnode = \"pref:14\"\ndelivery = \"durable\"\n");
    auto cfg = load_config(tmp / "node.toml");
    EXPECT_EQ(cfg.trust_store, tmp / "trust.toml");
    EXPECT_EQ(cfg.calendar.utc_offset_minutes, 540);
    EXPECT_EQ(cfg.calendar.weekdays, (std::set<int>{1, 3}));
    EXPECT_EQ(cfg.calendar.holidays.count("2026-11-23"), 1u);
    EXPECT_EQ(cfg.calendar.open_minute, 540);
    EXPECT_EQ(cfg.calendar.close_minute, 1020);
    ASSERT_EQ(cfg.hours.size(), 2u);
    EXPECT_TRUE(cfg.hours[0].queue);
    EXPECT_FALSE(cfg.hours[1].queue);
    ASSERT_EQ(cfg.peers.size(), 2u); // no curve_public needed: the trust store has it
    EXPECT_TRUE(cfg.peers[0].batch_signing);
    EXPECT_TRUE(cfg.peers[0].memory_delivery);
    EXPECT_FALSE(cfg.peers[1].batch_signing);
    EXPECT_FALSE(cfg.peers[1].memory_delivery);

    auto issues = check_with_node(tmp, "[calendar]\nutc_offset = \"JST\"\ndays = [\"monday\"]\n"
                                       "holidays = [\"23/11/2026\"]\nopen = \"25:00\"\nclose = \"08:00\"\n"
                                       "[[hours]]\noutside = \"later\"\n"
                                       "[[peer]]\nnode = \"pref:13\"\ncurve_public = \"" + std::string(40, 'a') +
                                       "\"\nsigning = \"sometimes\"\ndelivery = \"fast\"\n");
    auto file = tmp / "node.toml";
    expect_issue(issues, file, "calendar.utc_offset", 4, "must be +HH:MM or -HH:MM");
    expect_issue(issues, file, "calendar.days", 5, "'monday' is not one of");
    expect_issue(issues, file, "calendar.holidays", 6, "'23/11/2026' is not a YYYY-MM-DD date");
    expect_issue(issues, file, "calendar.open", 7, "must be HH:MM");
    expect_issue(issues, file, "hours[0].type", 9, "required key is missing");
    expect_issue(issues, file, "hours[0].outside", 10, "must be \"queue\"");
    expect_issue(issues, file, "peer[0].signing", 14, "must be \"message\"");
    expect_issue(issues, file, "peer[0].delivery", 15, "must be \"durable\"");
    issues = check_with_node(tmp, "trust_store = \"nowhere.toml\"\n", "t.toml");
    EXPECT_EQ(issues_for(issues, "node.trust_store").size(), 1u) << dump(issues);
    EXPECT_EQ(issues_for(issues, "node.trust_root").size(), 1u) << dump(issues);
}

TEST(Config, LinksMemoryLimitsBundleSizeAndDedupRetention) {
    TempDir tmp;
    write_file(tmp / "node.toml", "[node]\nid = \"muni:131016\"\n");
    auto defaults = load_config(tmp / "node.toml");
    EXPECT_EQ(defaults.links.in_flight_messages, 65536u);
    EXPECT_EQ(defaults.links.in_flight_bytes, size_t(256) << 20);
    EXPECT_EQ(defaults.links.memory_dedup_ids, size_t(1) << 20);
    EXPECT_EQ(defaults.links.bundle_bytes, size_t(128) << 10);
    EXPECT_EQ(defaults.links.dedup_retention_ms, int64_t(30) * 86'400'000);
    write_file(tmp / "node.toml", "[node]\nid = \"muni:131016\"\n[links]\nin_flight_messages = 1000\nin_flight_mib = 8\n"
                                  "memory_dedup_ids = 5000\nbundle_kib = 0\ndedup_retention_days = 7\n");
    auto cfg = load_config(tmp / "node.toml");
    EXPECT_EQ(cfg.links.in_flight_messages, 1000u);
    EXPECT_EQ(cfg.links.in_flight_bytes, size_t(8) << 20);
    EXPECT_EQ(cfg.links.memory_dedup_ids, 5000u);
    EXPECT_EQ(cfg.links.bundle_bytes, 0u);
    EXPECT_EQ(cfg.links.dedup_retention_ms, int64_t(7) * 86'400'000);
    auto issues = check_with_node(tmp, "[links]\nin_flight_messages = 0\nin_flight_mib = \"lots\"\nmemory_dedup_ids = 1.5\n"
                                       "in_flight = 3\nbundle_kib = 16385\ndedup_retention_days = 0\n");
    const std::tuple<const char*, int, const char*> expected[] = {
        {"links.in_flight_messages", 4, "must be a whole number from 1 to 16777216"},
        {"links.in_flight_mib", 5, "must be a whole number from 1 to 65536"},
        {"links.memory_dedup_ids", 6, "must be a whole number from 1 to 268435456"},
        {"links.in_flight", 7, "unknown key"},
        {"links.bundle_kib", 8, "must be a whole number from 0 to 16384"},
        {"links.dedup_retention_days", 9, "must be a whole number from 1 to 3650"}};
    for (auto& [key, line, says] : expected) expect_issue(issues, tmp / "node.toml", key, line, says);
}
