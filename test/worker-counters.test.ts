import { describe, expect, it } from "bun:test";
import { renderFamilies } from "../src/observe/metric-families.ts";
import { createMetrics } from "../src/observe/metrics.ts";
import { mergeFamilies } from "../src/observe/metrics-merge.ts";
import { WorkerCounters, type WorkerScrape } from "../src/observe/worker-counters.ts";
import { promtool } from "./helpers/prometheus.ts";

// A supervisor's /metrics across scrapes where a worker misses one or is restarted: real worker
// registries (createMetrics), their families as the IPC carries them (JSON), the merge and the
// renderer the admin port uses. A counter may lag, never go down: Prometheus reads a drop as a reset.

/** A worker process: its registry and the scrape the supervisor gets from it. */
function workerProcess(workerId: number, pid: number) {
  const m = createMetrics();
  return {
    serve(requests: number, inflight = 0) {
      for (let i = 0; i < requests; i++) {
        m.httpRequests.inc(["up", "200", "0"]);
        m.httpLatency.observe(["up", "200", "0"], 0.002);
      }
      m.inflight.http = inflight;
    },
    scrape: (): WorkerScrape => ({ workerId, instance: `${pid}@0`, families: JSON.parse(JSON.stringify(m.registry.families())) }),
  };
}

function scrapeText(counters: WorkerCounters, answered: WorkerScrape[]): string {
  return renderFamilies(mergeFamilies(counters.sources(answered)));
}

function value(text: string, series: string): number | undefined {
  for (const line of text.split("\n")) if (line.startsWith(`${series} `)) return Number(line.slice(series.length + 1));
  return undefined;
}

const requests = 'kedge_http_requests_total{backend_name="up",code="200",route="0"}';
const latencyCount = 'kedge_http_request_duration_seconds_count{backend_name="up",code="200",route="0"}';
const activeHttp = 'kedge_active_streams{protocol="http"}';

describe("worker counters across scrapes", () => {
  it("keeps a worker's counters in the sum while it misses a scrape, and only the answering workers' gauges", async () => {
    const counters = new WorkerCounters();
    const one = workerProcess(1, 101);
    const two = workerProcess(2, 102);
    one.serve(100, 3);
    two.serve(50, 4);
    const first = scrapeText(counters, [one.scrape(), two.scrape()]);
    expect(value(first, requests)).toBe(150);
    expect(value(first, activeHttp)).toBe(7);
    // Worker 2 is busy past the scrape's timeout: it counted 20 more meanwhile.
    one.serve(10, 3);
    two.serve(20, 4);
    const missed = scrapeText(counters, [one.scrape()]);
    expect(value(missed, requests)).toBe(160);
    expect(value(missed, latencyCount)).toBe(160);
    expect(value(missed, activeHttp)).toBe(3);
    const back = scrapeText(counters, [one.scrape(), two.scrape()]);
    expect(value(back, requests)).toBe(180);
    expect(await promtool(missed)).toEqual({ code: 0, out: "" });
  });

  it("carries a dead worker's last counters past its restart, whose new process counts from zero", async () => {
    const counters = new WorkerCounters();
    const one = workerProcess(1, 101);
    const two = workerProcess(2, 102);
    one.serve(100);
    two.serve(50);
    expect(value(scrapeText(counters, [one.scrape(), two.scrape()]), requests)).toBe(150);
    // Worker 2 dies: while it restarts only worker 1 answers.
    expect(value(scrapeText(counters, [one.scrape()]), requests)).toBe(150);
    const twoAgain = workerProcess(2, 202);
    twoAgain.serve(5);
    const restarted = scrapeText(counters, [one.scrape(), twoAgain.scrape()]);
    expect(value(restarted, requests)).toBe(155);
    expect(value(restarted, latencyCount)).toBe(155);
    // It dies again before any scrape saw the second process: its last counters (5) stay too.
    const twoThird = workerProcess(2, 302);
    twoThird.serve(1);
    expect(value(scrapeText(counters, [one.scrape(), twoThird.scrape()]), requests)).toBe(156);
    expect(await promtool(restarted)).toEqual({ code: 0, out: "" });
  });
});
