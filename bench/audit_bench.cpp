// Audit log group commit: records/s appended from several router threads, durable (fdatasync per
// batch) and not, until flush() returns with every record on disk. The router writes 2-3 records
// per routed message, so this rate divided by 3 bounds the message rate the audit trail allows.
//
//   ./build/bench/audit_bench
#include "../tests/support/test_support.hpp"

#include <renkei/audit_log.hpp>

#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

using namespace renkei;

int main(int argc, char** argv) {
    const int n = argc > 1 ? std::atoi(argv[1]) : 400000;
    const int threads = 4;
    printf("audit_bench: %d records from %d threads, hash-chained, HMAC subjects, group commit\n", n, threads);
    for (bool durable : {true, false}) {
        test::TempDir tmp;
        AuditOptions o;
        o.durable = durable;
        AuditLog log(tmp / "audit", o);
        auto t0 = std::chrono::steady_clock::now();
        std::vector<std::thread> ts;
        for (int t = 0; t < threads; ++t)
            ts.emplace_back([&, t] {
                for (int i = 0; i < n / threads; ++i) {
                    AuditRecord r;
                    r.time_ms = 1795392000000 + i;
                    r.event = "delivered";
                    r.message_id = "00112233445566778899aabbccddeeff";
                    r.type = "juki.IdentityUpdate";
                    r.from = "muni:131016";
                    r.to = "pref:13";
                    r.purpose = "juki:30-6";
                    r.outcome = "ok";
                    r.detail = "juki";
                    r.subject = std::to_string(100000000000 + t * n + i);
                    log.append(std::move(r));
                }
            });
        for (auto& t : ts) t.join();
        log.flush();
        double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        printf("  %-9s %10.0f records/s  (%.2f s)\n", durable ? "durable" : "buffered", n / secs, secs);
        auto v = verify_audit(tmp / "audit");
        if (!v.ok || v.records != uint64_t(n / threads * threads)) {
            fprintf(stderr, "audit_bench: verification failed: %s\n", v.error.c_str());
            return 1;
        }
    }
    return 0;
}
