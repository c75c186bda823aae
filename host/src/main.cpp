// The renkei command line.
#include <renkei/audit_log.hpp>
#include <renkei/config.hpp>
#include <renkei/deadletter_cli.hpp>
#include <renkei/demo.hpp>

#include "../demo/juki_demo.hpp"
#include <renkei/host.hpp>
#include <renkei/import_cli.hpp>
#include <renkei/legacy_file/load.hpp>
#include <renkei/isolated_plugin.hpp>
#include <renkei/keys.hpp>
#include <renkei/log.hpp>
#include <renkei/media.hpp>
#include <renkei/plugin_check.hpp>
#include <renkei/trust_store.hpp>

#include <CLI/CLI.hpp>

#include <chrono>
#include <csignal>
#include <iostream>

#include <unistd.h>

namespace {

// Blocks the shutdown signals in every thread (call before starting any) and waits for one.
int wait_for_signal() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    int sig = 0;
    sigwait(&set, &sig);
    return sig;
}

void block_signals() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

} // namespace

int main(int argc, char** argv) {
    CLI::App app{"renkei: integration middleware for the resident-registry and My Number network"};
    app.require_subcommand(1);
    std::string log_level = "info";
    app.add_option("--log-level", log_level, "trace, debug, info, warn, error, off");

    auto* version = app.add_subcommand("version", "print the version and ABI");

    std::string config_file;
    std::vector<std::string> plugin_dirs;
    auto* host_cmd = app.add_subcommand("host", "run a node");
    host_cmd->add_option("--config", config_file, "node configuration (TOML)")->required();
    host_cmd->add_option("--plugin-dir", plugin_dirs, "extra directories to find plugins in");

    auto* config_cmd = app.add_subcommand("config", "configuration tools");
    config_cmd->require_subcommand(1);
    auto* config_check = config_cmd->add_subcommand("check", "validate a configuration file");
    config_check->add_option("file", config_file)->required();
    config_check->add_option("--plugin-dir", plugin_dirs, "extra directories to find plugins in");

    std::string plugin_file;
    auto* plugin_cmd = app.add_subcommand("plugin", "plugin tools");
    plugin_cmd->require_subcommand(1);
    auto* plugin_check_cmd = plugin_cmd->add_subcommand("check", "load a plugin and run a smoke handshake");
    plugin_check_cmd->add_option("file", plugin_file)->required();

    std::string endpoint;
    auto* runner = app.add_subcommand("plugin-runner", "internal: serve one isolated plugin");
    runner->group(""); // hidden
    runner->add_option("--plugin", plugin_file)->required();
    runner->add_option("--endpoint", endpoint)->required();

    std::string keys_dir, node_id;
    bool force = false;
    auto* keygen = app.add_subcommand("keygen", "write a node's CURVE, signing and sealing key pairs");
    keygen->add_option("--dir", keys_dir, "directory for the key files (created 0700)")->required();
    keygen->add_option("--node", node_id, "node id, e.g. muni:131016")->required();
    keygen->add_flag("--force", force, "overwrite existing key files");

    std::string audit_dir;
    auto* audit_cmd = app.add_subcommand("audit", "audit trail tools");
    audit_cmd->require_subcommand(1);
    auto* audit_verify = audit_cmd->add_subcommand("verify", "check the hash chain of an audit directory");
    audit_verify->add_option("dir", audit_dir, "e.g. <data_dir>/audit")->required();

    std::string trust_file, root_key_file, root_public;
    auto* trust_cmd = app.add_subcommand("trust", "the network trust store (signed by the root key)");
    trust_cmd->require_subcommand(1);
    auto* trust_keygen = trust_cmd->add_subcommand("keygen", "write the network root key pair (root.key 0600, root.pub)");
    trust_keygen->add_option("--dir", keys_dir, "directory for root.key and root.pub")->required();
    trust_keygen->add_flag("--force", force, "overwrite existing key files");
    auto* trust_sign = trust_cmd->add_subcommand("sign", "sign a trust store with the root key (writes FILE.sig)");
    trust_sign->add_option("file", trust_file)->required();
    trust_sign->add_option("--key", root_key_file, "root.key")->required();
    auto* trust_verify = trust_cmd->add_subcommand("verify", "check a trust store's signature, contents and expiry");
    trust_verify->add_option("file", trust_file)->required();
    trust_verify->add_option("--root", root_public, "the root public key (hex)")->required();

    renkei::DeadLetterCliOptions dl;
    std::vector<std::string> dl_plugin_dirs;
    auto* dl_cmd = app.add_subcommand("deadletter", "inspect, replay or drop the outbox's dead letters");
    dl_cmd->require_subcommand(1);
    auto add_store = [&](CLI::App* cmd) {
        auto* dir = cmd->add_option("--data-dir", dl.data_dir, "the node's data directory (holds outbox.db)");
        auto* cfg = cmd->add_option("--config", dl.config_file, "node configuration (TOML) to take data_dir from");
        dir->excludes(cfg);
        cmd->add_option("--plugin-dir", dl_plugin_dirs, "extra directories to find plugins in (with --config)")
            ->needs(cfg);
    };
    auto* dl_list = dl_cmd->add_subcommand("list", "list dead letters (never their content)");
    add_store(dl_list);
    dl_list->add_option("--limit", dl.limit, "show at most N (default 100)")
        ->check(CLI::Range(size_t{1}, size_t{1'000'000}));
    dl_list->add_option("--offset", dl.offset, "skip the first N (oldest first)")
        ->check(CLI::Range(size_t{0}, size_t{1'000'000'000'000}));
    dl_list->add_flag("--json", dl.json, "one JSON document instead of lines");
    auto* dl_replay = dl_cmd->add_subcommand("replay", "put dead letters back into the outbox for a fresh try");
    add_store(dl_replay);
    auto* replay_id = dl_replay->add_option("--id", dl.id, "message id (hex)");
    auto* replay_all = dl_replay->add_flag("--all", dl.all, "every dead letter");
    replay_id->excludes(replay_all);
    dl_replay->add_option("--operator", dl.operator_id, "who does it (required; into the audit trail)");
    auto* dl_drop = dl_cmd->add_subcommand("drop", "discard one dead letter for good");
    add_store(dl_drop);
    dl_drop->add_option("--id", dl.id, "message id (hex)")->required();
    dl_drop->add_option("--operator", dl.operator_id, "who does it (required; into the audit trail)");

    renkei::ImportCliOptions import_opts;
    std::string import_wait = "complete";
    auto* import_cmd = app.add_subcommand(
        "import", "hand a record file to a CS's legacy-file adapter and follow it: progress, then a summary");
    import_cmd->add_option("file", import_opts.file, "the file from the 住民記録システム")->required();
    import_cmd->add_option("--dir", import_opts.dir, "the adapter's `dir` setting (holds inbox/ and results/)")->required();
    import_cmd->add_option("--metrics", import_opts.metrics_file, "the adapter's metrics_file (default DIR/legacy-file.prom)");
    import_cmd->add_option("--name", import_opts.name, "its name in the inbox (default: the file's name)");
    import_cmd->add_option("--wait", import_wait, "complete (J-LIS answered, default) or recorded (the CS recorded it)")
        ->check(CLI::IsMember({"complete", "recorded"}));
    import_cmd->add_option("--timeout", import_opts.timeout_s, "stop following after this many seconds (default 3600)")
        ->check(CLI::Range(1.0, 30.0 * 86400));
    import_cmd->add_option("--interval", import_opts.interval_s, "seconds between progress lines when not on a terminal")
        ->check(CLI::Range(0.2, 3600.0));

    renkei::legacy_file::LoadOptions load;
    std::string load_config_file, load_profile, load_gaiji, load_file, load_result, load_metrics;
    std::vector<std::string> load_plugin_dirs;
    auto* load_cmd = app.add_subcommand(
        "load", "load a municipality's record file (from media) straight into this node's juki store: one "
                "transaction, a result file, audited");
    load_cmd->add_option("file", load_file, "the record file, as its vendor profile reads it")->required();
    load_cmd->add_option("--config", load_config_file, "node configuration (TOML): its juki plugin's store, its audit trail")
        ->required();
    load_cmd->add_option("--plugin", load.plugin, "the juki plugin instance whose store takes the records (default juki)");
    load_cmd->add_option("--plugin-dir", load_plugin_dirs, "where plugins named by bare name are");
    load_cmd->add_option("--operator", load.operator_id, "who loads it (into the audit trail)")->required();
    load_cmd->add_option("--purpose", load.purpose, "the legal basis of the load (into the audit trail)")->required();
    load_cmd->add_option("--profile", load_profile, "the vendor profile (.toml)")->required();
    load_cmd->add_option("--gaiji", load_gaiji, "the municipality's 外字 table (default: the profile's)");
    load_cmd->add_option("--municipality", load.municipality, "whose file it is (全国地方公共団体コード, 6 digits)")->required();
    load_cmd->add_option("--result", load_result, "the result file (default FILE.result; never overwritten)");
    load_cmd->add_flag("--dry-run", load.dry_run,
                       "check every record against the store and write the result (status checked), but record nothing");
    load_cmd->add_option("--metrics", load_metrics, "a Prometheus text file kept up to date with the progress");
    load_cmd->add_option("--max-bytes", load.max_bytes, "a bigger file is refused unread (default 1 GiB)");
    load_cmd->add_option("--index-rebuild-from", load.rebuild_from,
                         "build the search indexes after the rows for a file of at least this many lines that brings "
                         "at least as many residents as the store holds (default 10000)");

    renkei::MediaCliOptions media;
    std::vector<std::string> media_plugin_dirs, media_files;
    std::string media_config, media_in, media_out;
    auto* media_cmd = app.add_subcommand("media", "sealed bundles on media (電磁的記録媒体): export, import, inspect, copy, erase");
    media_cmd->require_subcommand(1);
    auto media_common = [&](CLI::App* cmd, bool config_required) {
        auto* cfg = cmd->add_option("--config", media_config, "node configuration (TOML): keys, trust store, audit trail");
        if (config_required) cfg->required();
        cmd->add_option("--operator", media.operator_id, "who does this (into the audit trail)");
        cmd->add_option("--purpose", media.purpose, "legal basis or purpose (into the audit trail)");
        cmd->add_option("--plugin-dir", media_plugin_dirs, "extra directories to find plugins in (for --config)");
    };
    auto* media_export = media_cmd->add_subcommand("export", "seal files into a bundle for one node");
    media_common(media_export, true);
    media_export->add_option("--to", media.to, "the recipient node, e.g. pref:13")->required();
    media_export->add_option("--out", media_out, "the bundle file to write (never overwritten)")->required();
    media_export->add_option("--count", media.count, "how records are counted: lines (default) or fixed:N");
    media_export->add_option("--chunk-size", media.chunk_bytes, "bytes per encrypted chunk (default 1 MiB)")
        ->check(CLI::Range(uint64_t{4096}, uint64_t{64} << 20));
    media_export->add_option("files", media_files, "the files to carry")->required();
    auto* media_import = media_cmd->add_subcommand("import", "verify, decrypt and reconcile a bundle into a directory");
    media_common(media_import, true);
    media_import->add_option("--in", media_in, "the bundle")->required();
    media_import->add_option("--out", media_out, "directory for the files (created; nothing is overwritten)")->required();
    media_import->add_flag("--reimport", media.reimport,
                           "import a bundle this node imported before (e.g. into a destination restored from a backup); "
                           "needs --purpose; audited as media.reimport");
    auto* media_inspect = media_cmd->add_subcommand("inspect", "show a bundle's header and manifest (no key needed)");
    media_common(media_inspect, false);
    media_inspect->add_option("--in", media_in, "the bundle")->required();
    auto* media_copy = media_cmd->add_subcommand("copy", "verify a bundle and copy it (e.g. onto the medium), reading the copy back");
    media_common(media_copy, true);
    media_copy->add_option("--in", media_in, "the bundle")->required();
    media_copy->add_option("--out", media_out, "where to put the copy (never overwritten)")->required();
    auto* media_erase = media_cmd->add_subcommand("erase", "overwrite files with random bytes, then remove them");
    media_common(media_erase, true);
    media_erase->add_option("files", media_files, "the files to erase")->required();

    std::string build_dir = "build", source_dir;
    auto* demo = app.add_subcommand("demo", "run the demo");
    demo->add_option("--build-dir", build_dir, "where the plugins were built");
    demo->add_option("--source-dir", source_dir, "the source tree (examples/)");

    CLI11_PARSE(app, argc, argv);
    renkei::init_logging(log_level);

    try {
        if (*version) {
            std::cout << "renkei " << RENKEI_VERSION << " (plugin ABI " << RENKEI_ABI_MAJOR << "."
                      << RENKEI_ABI_MINOR << ")\n";
            return 0;
        }
        std::vector<std::filesystem::path> dirs(plugin_dirs.begin(), plugin_dirs.end());
        if (*config_check) {
            auto issues = renkei::check_config(config_file, dirs);
            for (auto& i : issues) std::cout << i.to_string() << "\n";
            if (!issues.empty()) {
                std::cout << issues.size() << " problem(s)\n";
                return 1;
            }
            std::cout << config_file << ": ok\n";
            return 0;
        }
        if (*keygen) {
            auto card = renkei::generate_node_keys(keys_dir, node_id, force);
            std::cout << "wrote the keys of " << node_id << " to " << keys_dir
                      << " (private files 0600); public node card:\n\n"
                      << card.to_toml();
            return 0;
        }
        if (*trust_keygen) {
            auto pub = renkei::generate_root_key(keys_dir, force);
            std::cout << "wrote the network root key to " << keys_dir << "/root.key (0600); public key:\n" << pub << "\n";
            return 0;
        }
        if (*trust_sign) {
            auto sig = renkei::sign_trust_store(trust_file, renkei::load_signing_key(root_key_file));
            std::cout << "signed " << trust_file << " -> " << trust_file << ".sig\n";
            return 0;
        }
        if (*trust_verify) {
            auto ts = renkei::load_trust_store(trust_file, root_public,
                                               std::chrono::duration_cast<std::chrono::milliseconds>(
                                                   std::chrono::system_clock::now().time_since_epoch()).count());
            std::cout << trust_file << ": ok, network " << ts.network << ", serial " << ts.serial << ", "
                      << ts.nodes.size() << " nodes, " << ts.revoked.size() << " revoked keys, expires "
                      << renkei::format_utc_ms(ts.expires_ms) << "\n";
            return 0;
        }
        if (*audit_verify) {
            auto r = renkei::verify_audit(audit_dir);
            if (r.ok) {
                std::cout << audit_dir << ": ok, " << r.records << " records, chain intact\n";
                return 0;
            }
            std::cout << audit_dir << ": BROKEN after " << r.records << " good records: " << r.error << "\n";
            return 1;
        }
        if (*dl_cmd) {
            dl.action = *dl_replay ? renkei::DeadLetterAction::replay
                        : *dl_drop ? renkei::DeadLetterAction::drop
                                   : renkei::DeadLetterAction::list;
            dl.plugin_dirs.assign(dl_plugin_dirs.begin(), dl_plugin_dirs.end());
            return renkei::run_deadletter_command(dl, std::cout, std::cerr);
        }
        if (*media_cmd) {
            media.action = *media_export   ? renkei::MediaAction::export_
                           : *media_import ? renkei::MediaAction::import_
                           : *media_copy   ? renkei::MediaAction::copy
                           : *media_erase  ? renkei::MediaAction::erase
                                           : renkei::MediaAction::inspect;
            media.config_file = media_config;
            media.plugin_dirs.assign(media_plugin_dirs.begin(), media_plugin_dirs.end());
            media.in = media_in;
            media.out = media_out;
            media.files.assign(media_files.begin(), media_files.end());
            return renkei::run_media_command(media, std::cout, std::cerr);
        }
        if (*import_cmd) {
            import_opts.wait_for_jlis = import_wait == "complete";
            import_opts.terminal = ::isatty(STDOUT_FILENO) == 1;
            return renkei::run_import_command(import_opts, std::cout, std::cerr);
        }
        if (*load_cmd) {
            load.config_file = load_config_file;
            load.plugin_dirs.assign(load_plugin_dirs.begin(), load_plugin_dirs.end());
            load.profile = load_profile;
            load.gaiji_table = load_gaiji;
            load.file = load_file;
            load.result = load_result;
            load.metrics_file = load_metrics;
            return renkei::legacy_file::run_load(load, std::cout, std::cerr);
        }
        if (*plugin_check_cmd) return renkei::plugin_check(plugin_file, std::cout);
        if (*runner) return renkei::run_plugin_runner(plugin_file, endpoint);
        if (*demo) {
            std::filesystem::path src = source_dir.empty()
                                            ? std::filesystem::absolute(build_dir).parent_path()
                                            : std::filesystem::path(source_dir);
            return renkei::run_demo(std::filesystem::absolute(build_dir), src, &renkei::juki_network_demo);
        }
        if (*host_cmd) {
            block_signals();
            auto cfg = renkei::load_config(config_file, dirs);
            renkei::init_logging(log_level != "info" ? log_level : cfg.log_level);
            renkei::Host host(cfg);
            host.start();
            int sig;
            while ((sig = wait_for_signal()) == SIGHUP) { // logged and audited
                host.reload_trust(); // first: it may bring this node's new keys
                host.reload_keys();
            }

            renkei::logger("host")->info("signal {}: stopping", sig);
            host.stop();
            return 0;
        }
    } catch (const std::exception& e) {
        std::cerr << "renkei: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
