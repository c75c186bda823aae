// juki benchmarks (figures, not pass/fail):
//  1. 本人確認情報 updates through the three tiers: a municipality's 住民記録システム notifies its CS
//     in batches; CS -> prefecture -> J-LIS over CURVE links with signatures, policy, audit and
//     durable outboxes; each tier records and answers its 更新件数リスト. Records/s end to end
//     (until J-LIS's count list for the last batch reached the 住民記録システム).
//  2. National lookups by 個人番号 on a store of JUKI_BENCH_RECORDS residents (10 million by
//     default): one at a time on one connection, and in batches of 10,000 keys through the reader
//     pool J-LIS answers batch queries with (JUKI_BENCH_THREADS connections, one per core by
//     default); lookups/s and the process's memory. The same on PostgreSQL (J-LIS's backend for
//     the national file): the residents loaded with COPY (load rate printed), then the same lookups;
//     both figures side by side at the end. `lookup-sqlite` / `lookup-pg` run one backend only.
//  3. legacy-file import: a 住民記録システム's CSV file of JUKI_BENCH_IMPORT records (200,000)
//     through adapters/legacy-file, the CS, the prefecture and J-LIS (SQLite, and PostgreSQL
//     beside it); records/s until the CS recorded them and until J-LIS's answers are in the result
//     file. `import-sqlite` / `import-pg` run one backend only.
//  4. legacy-file load from media: the same file loaded at J-LIS with `renkei load` straight into
//     the national store (SQLite, and PostgreSQL beside it); records/s of the command end to end.
//     `load-sqlite` / `load-pg` run one backend only.
// Environment: JUKI_BENCH_CHAIN (records through the chain, 200,000), JUKI_BENCH_BATCH (records per
// notification, 5,000, as the import below sends them; at 1,000 each batch commits nearly a page
// per record in each random-keyed search index), JUKI_BENCH_RECORDS, JUKI_BENCH_LOOKUPS
// (1,000,000), JUKI_BENCH_DIR (where the big store goes; reused if it already holds enough
// residents), JUKI_BENCH_PG_DSN (a PostgreSQL server to use; without it a throw-away cluster of
// tests/support/pg_cluster.sh is started in JUKI_BENCH_DIR and removed afterwards),
// JUKI_BENCH_PG_SCHEMA (juki_bench).
#include "../tests/support/network.hpp"

#include <identity_store.hpp>
#include <numbers.hpp>
#include <pg_store.hpp>
#include <sql.hpp>

#include <juki.capnp.h>
#include <renkei/local_endpoint.hpp>
#include <renkei/log.hpp>
#include <renkei/validate.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <optional>
#include <random>
#include <thread>

#include <libpq-fe.h>
#include <sys/resource.h>
#include <unistd.h>

using namespace renkei;
using namespace renkei::test;
using Clock = std::chrono::steady_clock;

namespace {

size_t env_or(const char* name, size_t def) {
    auto* v = std::getenv(name);
    return v ? std::stoull(v) : def;
}

std::string code_of(size_t n) {
    char b[24];
    std::snprintf(b, sizeof b, "%011llu", 10000000000ULL + n);
    return b;
}

std::string number_of(size_t n) { // a valid 個人番号 per n (for the lookup store)
    char b[24];
    std::snprintf(b, sizeof b, "%011llu", 20000000000ULL + n);
    return std::string(b) + char('0' + validate::compute_my_number_check_digit(b));
}

void fill(juki::IdentityRecord::Builder r, const std::string& code, const std::string& number,
          const std::string& municipality, size_t n) {
    auto p = r.initPerson();
    p.initName().setKanji("性能　測定" + std::to_string(n % 1000));
    p.getName().setKana("セイノウ　ソクテイ");
    auto d = p.initDateOfBirth();
    d.setYear(1950 + n % 70);
    d.setMonth(1 + n % 12);
    d.setDay(1 + n % 28);
    p.setSex(n % 2 ? schema::Sex::MALE : schema::Sex::FEMALE);
    p.initAddress().setText("東京都千代田区霞が関二丁目" + std::to_string(n % 100) + "番");
    p.getAddress().setLocalGovCode(municipality);
    p.setResidentCode(code);
    p.setMyNumber(number);
    r.setReason(juki::ChangeReason::BIRTH);
    auto c = r.initChangeDate();
    c.setYear(2026);
    c.setMonth(11);
    c.setDay(2);
}

// CPU seconds of this process (RUSAGE_SELF) or of its finished children (RUSAGE_CHILDREN).
double cpu_seconds(int who = RUSAGE_SELF) {
    rusage u{};
    getrusage(who, &u);
    return u.ru_utime.tv_sec + u.ru_stime.tv_sec + (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

long rss_kib(const char* key) {
    std::ifstream in("/proc/self/status");
    for (std::string line; std::getline(in, line);)
        if (line.rfind(key, 0) == 0) return std::stol(line.substr(std::strlen(key)));
    return -1;
}

// juki for `role` at `node`, its store a SQLite file in `tmp` (J-LIS's number secret there too).
PluginConfig juki_plugin(const std::filesystem::path& build_dir, const std::filesystem::path& tmp, const std::string& role,
                         const std::string& node) {
    PluginConfig p;
    p.name = "juki";
    p.path = build_dir / "plugins/juki/juki.so";
    p.settings.insert("role", role);
    p.settings.insert("store", (tmp / ("store-" + Network::safe(node)) / "juki.db").string());
    if (role == "national") p.settings.insert("number_secret_file", (tmp / "secret").string());
    if (role == "cs") {
        p.settings.insert("municipality", "131016");
        p.settings.insert("prefecture", "pref:13");
    }
    return p;
}

// J-LIS, the prefecture and the municipality's CS with the example policies; the CS and the
// prefecture sign in Merkle batches.
void start_tiers(Network& net, const PluginConfig& national, const std::vector<PluginConfig>& cs,
                 const std::filesystem::path& build_dir, const std::filesystem::path& tmp) {
    auto policy = [](const char* f) { return read_file(std::string(RENKEI_SOURCE_DIR) + "/examples/policy/" + f); };
    net.start({"jlis:juki", true, {national}, {{"pref:13", {"muni:13*"}}}, policy("juki-national.toml")});
    net.start({"pref:13", true, {juki_plugin(build_dir, tmp, "pref", "pref:13")}, {{"jlis:juki", {"jlis:*"}}, {"muni:131016", {}}},
               policy("juki-prefecture.toml"), true});
    net.start({"muni:131016", false, cs, {{"pref:13", {"*"}}}, policy("juki-municipality.toml"), true});
}

void chain(const std::filesystem::path& build_dir) {
    size_t total = env_or("JUKI_BENCH_CHAIN", 200000), batch = env_or("JUKI_BENCH_BATCH", 5000);
    TempDir tmp;
    Network net{tmp};
    write_file(tmp / "secret", std::string(64, 's'));
    // J-LIS generated the numbers beforehand (番号法8条); generate them straight into its registry.
    std::vector<std::string> numbers(total);
    {
        juki::NumberRegistry registry(tmp / "store-jlis_juki" / "juki.db.numbers",
                                      std::vector<uint8_t>(64, 's'));
        juki::sql::Tx tx(registry.db());
        for (size_t i = 0; i < total; ++i)
            numbers[i] = registry.assign("bench-" + std::to_string(i), code_of(i), false, "", 0).my_number;
        tx.commit();
    }
    start_tiers(net, juki_plugin(build_dir, tmp.path(), "national", "jlis:juki"), {juki_plugin(build_dir, tmp.path(), "cs", "muni:131016")},
                build_dir, tmp.path());
    auto& muni = net["muni:131016"];

    std::mutex m;
    std::condition_variable cv;
    size_t national_recorded = 0, national_lists = 0, refused = 0;
    auto legacy = std::make_shared<LocalEndpoint>(
        "legacy", std::vector<std::string>{"juki.UpdateResult", "juki.IdentityUpdate.Fault"},
        [&](const EnvelopeView& v, std::string&) {
            auto e = v.get();
            if (e.hasFault()) {
                std::fprintf(stderr, "fault: %s\n", e.getFault().getMessage().cStr());
                return RENKEI_OK;
            }
            auto p = e.getPayload();
            auto words = kj::heapArray<capnp::word>(p.size() / 8);
            memcpy(words.begin(), p.begin(), p.size());
            capnp::FlatArrayMessageReader r(words.asPtr());
            auto l = r.getRoot<juki::UpdateCountList>();
            if (l.getRecordedBy() == "jlis:juki") {
                std::lock_guard lock(m);
                national_recorded += l.getRecorded();
                refused += l.getRejected().size();
                ++national_lists;
                cv.notify_all();
            }
            return RENKEI_OK;
        });
    muni.add_endpoint(legacy);
    size_t batches = (total + batch - 1) / batch;
    std::fprintf(stderr, "chain: network up, sending %zu batches\n", batches); // a profiler can attach now
    double cpu0 = cpu_seconds();
    auto t0 = Clock::now();
    for (size_t b = 0; b < batches; ++b) {
        capnp::MallocMessageBuilder payload;
        auto u = payload.initRoot<juki::IdentityUpdate>();
        u.setBatchId("bench-" + std::to_string(b));
        u.setMunicipality("131016");
        size_t n = std::min(batch, total - b * batch);
        auto list = u.initRecords(static_cast<unsigned>(n));
        for (size_t i = 0; i < n; ++i) fill(list[i], code_of(b * batch + i), numbers[b * batch + i], "131016", b * batch + i);
        auto bytes = capnp::messageToFlatArray(payload);
        capnp::MallocMessageBuilder mb;
        auto e = mb.initRoot<schema::Envelope>();
        auto id = new_message_id();
        e.setId(kj::ArrayPtr<const kj::byte>(id.data(), id.size()));
        e.setType("juki.IdentityUpdate");
        e.setTo("muni:131016");
        e.setPurpose("juki-30-6");
        e.setPayload(bytes.asBytes());
        muni.submit("legacy", capnp::messageToFlatArray(mb).asBytes());
    }
    std::unique_lock lock(m);
    bool done = cv.wait_for(lock, std::chrono::minutes(10), [&] { return national_lists >= batches; });
    double s = std::chrono::duration<double>(Clock::now() - t0).count();
    double cpu = cpu_seconds() - cpu0;
    std::printf("juki update chain (CS -> pref -> J-LIS, %zu records in batches of %zu, CURVE + batch-signed + "
                "audited + durable at every hop)%s\n",
                total, batch, done ? "" : " [TIMED OUT]");
    std::printf("  recorded at J-LIS: %zu (refused %zu) in %.2f s = %.0f records/s end to end\n", national_recorded,
                refused, s, national_recorded / s);
    std::printf("  CPU (all three hosts and the generator) %.2f s = %.0f us per record, %.2f cores busy\n", cpu,
                national_recorded ? cpu * 1e6 / national_recorded : 0.0, cpu / s);
}

struct LookupFigures {
    double single = 0, batch = 0; // lookups/s
};

// One-at-a-time lookups on the store's own connection, then batches of 10,000 keys through a
// reader pool, as J-LIS answers an agency's batch query.
LookupFigures measure_lookups(juki::Store& store, juki::ReaderPool& pool, size_t records, size_t n,
                              const char* backend) {
    LookupFigures f;
    std::mt19937_64 rng(42);
    std::uniform_int_distribution<size_t> pick(0, records - 1);
    size_t found = 0;
    auto t0 = Clock::now();
    for (size_t i = 0; i < n / 4; ++i) found += store.by_number(number_of(pick(rng))).size();
    double s = std::chrono::duration<double>(Clock::now() - t0).count();
    f.single = (n / 4) / s;
    std::printf("national lookups by 個人番号 on %zu residents (%s, random keys)\n", records, backend);
    std::printf("  one at a time on the plugin's connection: %zu lookups (%zu found) in %.2f s = %.0f lookups/s\n", n / 4,
                found, s, f.single);
    found = 0;
    t0 = Clock::now();
    for (size_t done = 0; done < n; done += 10000) {
        std::vector<std::string> keys;
        for (size_t i = 0; i < 10000; ++i) keys.push_back(number_of(pick(rng)));
        for (auto& r : pool.by_numbers(keys)) found += r.size();
    }
    s = std::chrono::duration<double>(Clock::now() - t0).count();
    f.batch = n / s;
    std::printf("  batches of 10,000 keys over %zu reader connections: %zu lookups (%zu found) in %.2f s = %.0f lookups/s\n",
                pool.size(), n, found, s, f.batch);
    return f;
}

LookupFigures lookups(const std::filesystem::path& dir) {
    size_t records = env_or("JUKI_BENCH_RECORDS", 10000000), n = env_or("JUKI_BENCH_LOOKUPS", 1000000);
    std::filesystem::create_directories(dir);
    auto file = dir / "national-lookup.db";
    juki::IdentityStore store(file);
    auto have = store.count();
    if (have < records) {
        std::printf("building a national store of %zu residents in %s (once; reused afterwards)...\n", records,
                    file.c_str());
        auto t0 = Clock::now();
        for (size_t start = have; start < records; start += 100000) {
            auto tx = store.transaction();
            for (size_t i = start; i < std::min(records, start + 100000); ++i) {
                capnp::MallocMessageBuilder mb;
                auto r = mb.initRoot<juki::IdentityRecord>();
                fill(r, code_of(i), number_of(i), "131016", i);
                store.put(r.asReader(), juki::canonical_bytes(r.asReader()), false, 0, false);
            }
            tx.commit();
        }
        std::printf("  built in %.0f s\n", std::chrono::duration<double>(Clock::now() - t0).count());
    }
    long before = rss_kib("VmRSS:");
    size_t threads = env_or("JUKI_BENCH_THREADS", std::max(1u, std::thread::hardware_concurrency()));
    juki::ReaderPool pool(file, threads, juki::StoreOptions{true, 512 * 1024, 1LL << 30});
    auto f = measure_lookups(store, pool, records, n, "SQLite");
    std::printf("  RSS %ld MiB (was %ld MiB before the lookups), peak %ld MiB; store %.1f GiB on disk\n",
                rss_kib("VmRSS:") / 1024, before / 1024,
                rss_kib("VmHWM:") / 1024, std::filesystem::file_size(file) / 1073741824.0);
    return f;
}

// The PostgreSQL server of a benchmark: JUKI_BENCH_PG_DSN when set, otherwise a cluster of
// tests/support/pg_cluster.sh in `dir` (fsync on, as in production), removed at the end.
struct BenchCluster {
    std::filesystem::path dir, script = std::filesystem::path(RENKEI_SOURCE_DIR) / "tests/support/pg_cluster.sh";
    std::string dsn;
    bool started = false;
    explicit BenchCluster(std::filesystem::path d) : dir(std::move(d)) {
        if (auto* given = std::getenv("JUKI_BENCH_PG_DSN"); given && *given) {
            dsn = given;
            return;
        }
        std::string cmd = "PG_CLUSTER_FSYNC=on PG_CLUSTER_SHARED_BUFFERS=${PG_CLUSTER_SHARED_BUFFERS:-2GB} '" +
                          script.string() + "' start '" + dir.string() + "'";
        std::fflush(stdout);
        if (std::system(cmd.c_str()) != 0) throw std::runtime_error("could not start a PostgreSQL cluster: " + cmd);
        started = true;
        dsn = read_file(dir / "dsn");
        while (!dsn.empty() && dsn.back() == '\n') dsn.pop_back();
    }
    ~BenchCluster() {
        if (!started) return;
        std::fflush(stdout);
        (void)std::system(("'" + script.string() + "' stop '" + dir.string() + "'").c_str());
    }
    // Drops a scratch `schema` and everything in it (the server may be one the benchmark did not start).
    void drop_schema(const std::string& schema) const {
        PGconn* c = PQconnectdb(dsn.c_str());
        PQsetNoticeProcessor(c, [](void*, const char*) {}, nullptr); // "drop cascades to ..."
        PQclear(PQexec(c, ("DROP SCHEMA IF EXISTS " + schema + " CASCADE").c_str()));
        PQfinish(c);
    }
};

// The same on PostgreSQL: JUKI_BENCH_PG_DSN names a server (its schema JUKI_BENCH_PG_SCHEMA,
// juki_bench, is reused if it holds enough residents); without it a throw-away cluster is started
// in the bench directory and the residents are loaded with COPY.
LookupFigures pg_lookups(const std::filesystem::path& dir) {
    size_t records = env_or("JUKI_BENCH_RECORDS", 10000000), n = env_or("JUKI_BENCH_LOOKUPS", 1000000);
    BenchCluster server(dir / "pg-cluster");
    const std::string& dsn = server.dsn;
    std::string schema = std::getenv("JUKI_BENCH_PG_SCHEMA") ? std::getenv("JUKI_BENCH_PG_SCHEMA") : "juki_bench";
    juki::PgIdentityStore store(dsn, schema);
    auto have = store.count();
    if (have < records) {
        std::printf("loading %zu residents into PostgreSQL (%s) with COPY...\n", records - have, store.describe().c_str());
        auto t0 = Clock::now();
        const size_t chunk = 10000;
        for (size_t start = have; start < records; start += chunk) {
            capnp::MallocMessageBuilder mb;
            size_t m = std::min(records, start + chunk) - start;
            auto list = mb.initRoot<juki::IdentityUpdate>().initRecords(static_cast<unsigned>(m));
            for (size_t i = 0; i < m; ++i) fill(list[i], code_of(start + i), number_of(start + i), "131016", start + i);
            store.load(list.asReader(), 0);
        }
        double s = std::chrono::duration<double>(Clock::now() - t0).count();
        std::printf("  loaded in %.0f s = %.0f residents/s (COPY, primary key and search indexes maintained)\n", s,
                    (records - have) / s);
        store.scalar("ANALYZE residents");
    }
    size_t threads = env_or("JUKI_BENCH_THREADS", std::max(1u, std::thread::hardware_concurrency()));
    auto pool = store.readers(threads);
    auto f = measure_lookups(store, *pool, records, n, "PostgreSQL 15");
    std::printf("  client RSS %ld MiB; residents %.1f GiB on disk with its indexes (pg_total_relation_size)\n",
                rss_kib("VmRSS:") / 1024, store.scalar("SELECT pg_total_relation_size('residents')") / 1073741824.0);
    return f;
}

// A resident's 異動 as a line of the csv-utf8 profile (adapters/legacy-file/profiles).
std::string csv_line(size_t n, const std::string& number) {
    char birth[16];
    std::snprintf(birth, sizeof birth, "%04zu-%02zu-%02zu", 1950 + n % 70, 1 + n % 12, 1 + n % 28);
    return code_of(n) + "," + number + ",出生,2026-11-20,性能　測定" + std::to_string(n % 1000) + ",セイノウ　ソクテイ," +
           birth + "," + (n % 2 ? "男" : "女") + ",東京都千代田区霞が関二丁目" + std::to_string(n % 100) + "番,131016,,,,,,op-7\r\n";
}

// A csv-utf8 file of `total` residents at `file`, their 個人番号 generated into the SQLite registry
// `numbers` first (J-LIS generates them before the municipality records them, 番号法8条).
void import_file(const std::filesystem::path& file, const std::filesystem::path& numbers, size_t total) {
    juki::NumberRegistry registry(numbers, std::vector<uint8_t>(64, 's'));
    juki::sql::Tx tx(registry.db());
    std::string csv = "住民票コード,個人番号,異動事由,異動年月日,氏名,氏名フリガナ,生年月日,性別,住所,"
                      "地方公共団体コード,町字コード,旧氏,旧氏フリガナ,転出元コード,旧住民票コード,操作者ID\r\n";
    for (size_t i = 0; i < total; ++i)
        csv += csv_line(i, registry.assign("bench-" + std::to_string(i), code_of(i), false, "", 0).my_number);
    tx.commit();
    write_file(file, csv);
}

// 3. A municipality's 住民記録システム drops a file of JUKI_BENCH_IMPORT records (200,000, the
//    csv-utf8 profile's limit per file) into the legacy-file adapter's inbox at its CS; the
//    adapter parses and checks it, sends it in batches of JUKI_BENCH_IMPORT_BATCH (5,000) through
//    the CS, the prefecture and J-LIS, and writes the result file. Records/s from the drop until
//    the CS recorded every record, and until J-LIS's answers for every batch were in the result
//    (J-LIS's national store on SQLite, or on PostgreSQL with `import-pg`).
double import(const std::filesystem::path& build_dir, bool pg, const std::filesystem::path& data) {
    size_t total = env_or("JUKI_BENCH_IMPORT", 200000), batch = env_or("JUKI_BENCH_IMPORT_BATCH", 5000);
    TempDir tmp;
    std::optional<BenchCluster> server;
    if (pg) server.emplace(data / "pg-cluster-import");
    const std::string dsn = server ? server->dsn : "";
    std::string schema = "juki_import_" + std::to_string(::getpid());
    Network net{tmp};
    write_file(tmp / "secret", std::string(64, 's'));
    std::string file = "住民記録-移行.csv";
    import_file(tmp / ("." + file), tmp / "numbers.db", total);
    PluginConfig lf;
    lf.name = "legacy-file";
    lf.path = build_dir / "adapters/legacy-file/legacy_file.so";
    lf.settings = toml::table{{"profile", std::string(RENKEI_SOURCE_DIR) + "/adapters/legacy-file/profiles/csv-utf8.toml"},
                              {"dir", (tmp / "lf").string()},
                              {"batch", std::to_string(batch)},
                              {"window", "8"},
                              {"settle_ms", "0"},
                              {"scan_interval_ms", "20"},
                              {"progress_interval_ms", "1000"}};
    auto national = juki_plugin(build_dir, tmp.path(), "national", "jlis:juki");
    national.settings.insert("number_store", (tmp / "numbers.db").string());
    if (pg) {
        national.settings.insert_or_assign("store", dsn);
        national.settings.insert("store_schema", schema);
    }
    start_tiers(net, national, {juki_plugin(build_dir, tmp.path(), "cs", "muni:131016"), lf}, build_dir, tmp.path());

    auto result = tmp / "lf" / "results" / (file + ".result");
    auto status = [&] { // from the result's header: reading all of it every 20 ms would be the bench's own load
        std::ifstream in(result, std::ios::binary);
        if (!in) return std::string();
        std::string text(4096, '\0');
        in.read(text.data(), static_cast<std::streamsize>(text.size()));
        text.resize(static_cast<size_t>(in.gcount()));
        auto at = text.find("# status: ");
        return at == std::string::npos ? std::string() : text.substr(at + 10, text.find('\n', at) - at - 10);
    };
    std::fprintf(stderr, "import: network up, dropping %zu records\n", total);
    double cpu0 = cpu_seconds();
    auto t0 = Clock::now();
    std::filesystem::rename(tmp / ("." + file), tmp / "lf" / "inbox" / file);
    double cs_s = 0;
    std::string st;
    while ((st = status()) != "complete" && st != "failed" && Clock::now() - t0 < std::chrono::minutes(20)) {
        if (cs_s == 0 && st == "recorded") cs_s = std::chrono::duration<double>(Clock::now() - t0).count();
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    double s = std::chrono::duration<double>(Clock::now() - t0).count();
    if (cs_s == 0) cs_s = s;
    double cpu = cpu_seconds() - cpu0;
    auto text = read_file(result);
    auto at = text.find("# records: ");
    std::string counts = at == std::string::npos ? "?" : text.substr(at + 11, text.find('\n', at) - at - 11);
    std::printf("legacy-file import (csv-utf8 file of %zu records -> adapter -> CS -> prefecture -> J-LIS on %s, "
                "batches of %zu; CURVE + batch-signed + audited + durable at every hop)%s\n",
                total, pg ? "PostgreSQL 15" : "SQLite", batch, st == "complete" ? "" : " [NOT COMPLETE]");
    std::printf("  result: %s\n", counts.c_str());
    std::printf("  recorded by the CS after %.2f s = %.0f records/s; J-LIS's answers for all in the result after "
                "%.2f s = %.0f records/s end to end\n",
                cs_s, total / cs_s, s, total / s);
    std::printf("  CPU (all three hosts%s) %.2f s = %.0f us per record, %.2f cores busy\n",
                pg ? "; not the PostgreSQL server" : "", cpu, cpu * 1e6 / total, cpu / s);
    net.remove("muni:131016");
    net.remove("pref:13");
    net.remove("jlis:juki");
    if (server) server->drop_schema(schema);
    return total / s;
}

// 4. The same file on media, loaded at J-LIS straight into the national store with `renkei load`
//    (the renkei binary, as an operator runs it: configuration, profile, parse, the juki checks
//    with the 個人番号 registry, one transaction, the result file, the audit record). Records/s
//    from the command's start to its exit.
double load(const std::filesystem::path& build_dir, bool pg, const std::filesystem::path& data) {
    size_t total = env_or("JUKI_BENCH_IMPORT", 200000);
    TempDir tmp;
    std::optional<BenchCluster> server;
    if (pg) server.emplace(data / "pg-cluster-load");
    const std::string dsn = server ? server->dsn : "", schema = "juki_load_" + std::to_string(::getpid());
    auto file = tmp / "住民記録-移行.csv";
    import_file(file, tmp / "numbers.db", total);
    write_file(tmp / "secret", std::string(64, 's'));
    std::string store = pg ? "store = \"" + dsn + "\"\nstore_schema = \"" + schema + "\"\n"
                           : "store = \"" + (tmp / "national.db").string() + "\"\n";
    write_file(tmp / "node.toml", "[node]\nid = \"jlis:juki\"\ndata_dir = \"" + (tmp / "data").string() +
                                      "\"\n\n[[plugin]]\nname = \"juki\"\npath = \"" +
                                      (build_dir / "plugins/juki/juki.so").string() +
                                      "\"\n[plugin.settings]\nrole = \"national\"\n" + store +
                                      "number_secret_file = \"" + (tmp / "secret").string() + "\"\nnumber_store = \"" +
                                      (tmp / "numbers.db").string() + "\"\n");
    std::string cmd = "'" + (build_dir / "host/renkei").string() + "' load '" + file.string() + "' --config '" +
                      (tmp / "node.toml").string() + "' --operator bench --purpose juki-30-7 --profile '" +
                      RENKEI_SOURCE_DIR + "/adapters/legacy-file/profiles/csv-utf8.toml' --municipality 131016";
    std::fflush(stdout);
    double cpu0 = cpu_seconds(RUSAGE_CHILDREN);
    auto t0 = Clock::now();
    int rc = std::system(cmd.c_str());
    double s = std::chrono::duration<double>(Clock::now() - t0).count();
    double cpu = cpu_seconds(RUSAGE_CHILDREN) - cpu0;
    auto text = read_file(file.string() + ".result");
    auto at = text.find("# records: ");
    std::string counts = at == std::string::npos ? "?" : text.substr(at + 11, text.find('\n', at) - at - 11);
    std::printf("legacy-file load from media (renkei load: csv-utf8 file of %zu records -> J-LIS's national store on %s, "
                "one transaction, result file, audited)%s\n",
                total, pg ? "PostgreSQL 15" : "SQLite", rc == 0 ? "" : " [FAILED]");
    std::printf("  result: %s\n  %.2f s = %.0f records/s end to end; CPU %.2f s = %.1f us per record%s\n", counts.c_str(), s,
                total / s, cpu, cpu * 1e6 / total, pg ? " (not the PostgreSQL server)" : "");
    if (server) server->drop_schema(schema);
    return rc == 0 ? total / s : 0;
}

} // namespace

int main(int argc, char** argv) {
    init_logging("warn");
    std::filesystem::path build_dir = RENKEI_BUILD_DIR;
    std::string what = argc > 1 ? argv[1] : "all";
    if (what == "all" || what == "chain") chain(build_dir);
    std::filesystem::path data = std::getenv("JUKI_BENCH_DIR") ? std::getenv("JUKI_BENCH_DIR") : (build_dir / "bench-data").string();
    std::optional<double> import_sqlite, import_pg;
    if (what == "all" || what == "import" || what == "import-sqlite") import_sqlite = import(build_dir, false, data);
    if (what == "all" || what == "import" || what == "import-pg") import_pg = import(build_dir, true, data);
    std::optional<double> load_sqlite, load_pg;
    if (what == "all" || what == "load" || what == "load-sqlite") load_sqlite = load(build_dir, false, data);
    if (what == "all" || what == "load" || what == "load-pg") load_pg = load(build_dir, true, data);
    if (import_sqlite && import_pg)
        std::printf("legacy-file import end to end, records/s: J-LIS on SQLite %.0f, on PostgreSQL %.0f\n", *import_sqlite,
                    *import_pg);
    if (load_sqlite && load_pg)
        std::printf("legacy-file load from media, records/s: J-LIS on SQLite %.0f, on PostgreSQL %.0f\n", *load_sqlite,
                    *load_pg);
    std::optional<LookupFigures> sqlite, pg;
    if (what == "all" || what == "lookup" || what == "lookup-sqlite") sqlite = lookups(data);
    if (what == "all" || what == "lookup" || what == "lookup-pg") pg = pg_lookups(data);
    if (sqlite && pg)
        std::printf("national lookups/s, one at a time / batches of 10,000: SQLite %.0f / %.0f, PostgreSQL %.0f / %.0f\n",
                    sqlite->single, sqlite->batch, pg->single, pg->batch);
    return 0;
}
