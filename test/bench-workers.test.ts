import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

// bench/ is not run by `npm test` (its numbers depend on the machine), but what it refuses before
// starting anything and how it turns measurements into the report's targets are checked here: a
// wrong divisor or a mislabelled worker count would make every later run's table mislead.

const root = resolve(import.meta.dir, "..");

function runHarness(env: Record<string, string>) {
  // run.sh checks its knobs before it installs, builds or starts anything.
  return Bun.spawnSync(["bash", join(root, "bench/run.sh")], {
    env: { ...process.env, ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
}

/** What wrk prints for a run of `requests` in 5 s. */
function wrkOutput(requests: number): string {
  return [
    "Running 5s test @ http://127.0.0.1:1/",
    "  1 threads and 50 connections",
    "  Thread Stats   Avg      Stdev     Max   +/- Stdev",
    "    Latency   800.00us  100.00us   5.00ms   90.00%",
    "  Latency Distribution",
    "     50%  700.00us",
    "     75%  900.00us",
    "     90%    1.00ms",
    "     99%    2.00ms",
    `  ${requests} requests in 5.00s, 1.00MB read`,
    `Requests/sec: ${(requests / 5).toFixed(2)}`,
    "Transfer/sec:      1.00MB",
  ].join("\n");
}

describe("bench harness with workers", () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "kedge-bench-report-"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("refuses a WORKERS list with a repeated or non-numeric count", () => {
    for (const workers of ["1 1", "two", "0"]) {
      const run = runHarness({ WORKERS: workers });
      expect(run.exitCode).toBe(2);
      expect(run.stderr.toString()).toContain("WORKERS");
    }
  });

  it("counts every worker count in the load guard and names a subset that fits", () => {
    // 5 workloads × (direct + 3 proxies × 2 counts) × 17 s = 595 s of load.
    const run = runHarness({ WORKERS: "1 2" });
    expect(run.exitCode).toBe(2);
    expect(run.stderr.toString()).toContain("595s of load > 400s");
    expect(run.stderr.toString()).toContain('WORKLOADS="http https grpc"');
  });

  it("reports 2-worker ratios, the 1 → 2 scaling against nginx's and CPU per request of all processes", () => {
    // One round of HTTP/1.1 at 1 and 2 workers. Ticks are already summed over a target's processes
    // by run.sh (supervisor/workers in cpu_split); at CLK_TCK 100 a tick is 10 ms.
    const rows: [string, string, number, number][] = [
      // target, workers, requests, cpu ticks
      ["direct", "-", 500_000, 100],
      ["kedge", "1", 200_000, 200],
      ["nginx", "1", 250_000, 200],
      ["haproxy", "1", 180_000, 200],
      ["kedge", "2", 330_000, 330],
      ["nginx", "2", 300_000, 240],
      ["haproxy", "2", 320_000, 320],
    ];
    const header = "workload\ttarget\tworkers\tround\tcpu_ticks\tupstream_ticks\trss_kb\talive\tupstream_conns\tload_file\tcpu_split";
    const lines = rows.map(([target, workers, requests, ticks]) => {
      const file = join(dir, `http-${target}${workers}-1.txt`);
      writeFileSync(file, wrkOutput(requests));
      const split = workers === "2" ? `2/${ticks / 2 - 1}/${ticks / 2 - 1}` : String(ticks);
      return ["http", target, workers, "1", ticks, 50, 40_000, "yes", 0, file, split].join("\t");
    });
    const raw = join(dir, "raw.tsv");
    writeFileSync(raw, [header, ...lines].join("\n") + "\n");

    const report = Bun.spawnSync(["bun", join(root, "bench/report.ts"), raw, "100", dir], { stdout: "pipe", stderr: "pipe" });
    expect(report.stderr.toString()).toBe("");
    const md = report.stdout.toString();

    // kedge 2 workers: 66,000 req/s against nginx's 60,000.
    expect(md).toContain("| 2 workers: HTTP/1.1 req/s ≥ 1.0× nginx | 1.10× (kedge 66000 vs 60000 req/s) | met |");
    // kedge scales 1.65×, nginx 1.2×: 1.375 of nginx's scaling.
    expect(md).toContain("| scaling 1 → 2 workers ≥ 0.9× nginx's (HTTP/1.1) | 1.38× (kedge 1.65×, nginx 1.20×) | met |");
    // 330 ticks × 10 ms over 330,000 requests: 10 µs each, whatever the number of processes.
    expect(md).toContain("| 2 workers: CPU/request ≤ 1.5× nginx (HTTP/1.1) | 1.25× (kedge 10.0 vs 8.0 CPU µs/req) | met |");
    expect(md).toContain("| 1 worker: HTTP/1.1 req/s ≥ 0.8× nginx | 0.80× (kedge 40000 vs 50000 req/s) | met |");
    // Targets for workloads this run did not measure are listed, not dropped.
    expect(md).toContain("| 2 workers: HTTPS h2 req/s ≥ 1.0× nginx | not run | not measured |");
    expect(md).toContain("## Scaling: 1 → 2 workers");
    // kedge's 40,000 req/s at 1 worker against direct's 100,000: 0.40×.
    expect(md).toContain("| HTTP/1.1 | 40,000 → 66,000 | 1.65× | 1.20× | 1.78× | 1.38× | 0.40× | 10.0 → 10.0 | 8.0 → 8.0 |");
    // Each count has its own section; direct's rounds appear under both.
    expect(md).toContain("### HTTP/1.1 (wrk), 1 worker");
    expect(md).toContain("### HTTP/1.1 (wrk), 2 workers");
    expect(md.match(/\| direct \(upstream nginx\) \| 100,000 \|/g)?.length).toBe(2);
    expect(md).toContain("| 2/164/164 |");
  });
});
