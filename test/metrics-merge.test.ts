import { describe, expect, it } from "bun:test";
import { renderFamilies } from "../src/observe/metric-families.ts";
import { createMetrics } from "../src/observe/metrics.ts";
import { mergeFamilies } from "../src/observe/metrics-merge.ts";
import { Counter, Registry } from "../src/observe/prometheus.ts";
import { promtool } from "./helpers/prometheus.ts";

// Workers hand their supervisor their registries' families as JSON; the supervisor renders one
// exposition of the whole process. Real registries, the IPC's JSON round trip, promtool's lint.

/** What crosses the IPC channel: plain JSON. */
const overIpc = <T>(v: T): T => JSON.parse(JSON.stringify(v));

function worker(requests: number, slow: number, streams: number, version: number) {
  const m = createMetrics();
  for (let i = 0; i < requests; i++) {
    m.httpRequests.inc(["up", "200", "0"]);
    m.httpLatency.observe(["up", "200", "0"], i < slow ? 0.3 : 0.002);
  }
  m.httpRequests.inc(["down", "502", "1"]);
  m.inflight.http = streams;
  m.configVersion.set([], version);
  return overIpc(m.registry.families());
}

function value(text: string, series: string): number | undefined {
  for (const line of text.split("\n")) if (line.startsWith(`${series} `)) return Number(line.slice(series.length + 1));
  return undefined;
}

describe("metrics merged across workers", () => {
  const supervisor = new Registry();
  const restarts = supervisor.add(new Counter("kedge_worker_restarts_total", "Workers restarted after they exited.", []));
  restarts.inc([]);
  const text = renderFamilies(
    mergeFamilies([
      { worker: "0", families: worker(120, 3, 2, 7) },
      { worker: "1", families: worker(80, 1, 5, 7) },
      { worker: "supervisor", families: supervisor.families() },
    ]),
  );

  it("sums counters label set by label set", () => {
    expect(value(text, 'kedge_http_requests_total{backend_name="up",code="200",route="0"}')).toBe(200);
    expect(value(text, 'kedge_http_requests_total{backend_name="down",code="502",route="1"}')).toBe(2);
  });

  it("sums histograms bucket by bucket, with their sums and counts", () => {
    const series = 'kedge_http_request_duration_seconds_bucket{backend_name="up",code="200",route="0"';
    expect(value(text, `${series},le="0.0025"}`)).toBe(196);
    expect(value(text, `${series},le="0.5"}`)).toBe(200);
    expect(value(text, `${series},le="+Inf"}`)).toBe(200);
    expect(value(text, 'kedge_http_request_duration_seconds_count{backend_name="up",code="200",route="0"}')).toBe(200);
    expect(value(text, 'kedge_http_request_duration_seconds_sum{backend_name="up",code="200",route="0"}')).toBeCloseTo(196 * 0.002 + 4 * 0.3, 6);
  });

  it("sums gauges that count things and labels the others by worker", () => {
    expect(value(text, 'kedge_active_streams{protocol="http"}')).toBe(7);
    expect(value(text, 'kedge_config_version{worker="0"}')).toBe(7);
    expect(value(text, 'kedge_config_version{worker="1"}')).toBe(7);
    expect(value(text, "kedge_config_version")).toBeUndefined();
    expect(value(text, 'process_resident_memory_bytes{worker="1"}')).toBeGreaterThan(0);
    expect(text).not.toMatch(/^process_resident_memory_bytes /m);
  });

  it("carries the supervisor's own series", () => {
    expect(value(text, "kedge_worker_restarts_total")).toBe(1);
  });

  it("writes each family's HELP and TYPE once", () => {
    expect(text.match(/^# TYPE kedge_http_requests_total counter$/gm)).toHaveLength(1);
    expect(text.match(/^# TYPE process_cpu_seconds_total counter$/gm)).toHaveLength(1);
  });

  it("passes promtool check metrics", async () => {
    const { code, out } = await promtool(text);
    expect(out).toBe("");
    expect(code).toBe(0);
  });

  it("leaves out a worker's family whose shape differs instead of mixing it in", () => {
    const a = new Registry();
    a.add(new Counter("t_total", "t", ["x"])).inc(["1"], 2);
    const b = new Registry();
    b.add(new Counter("t_total", "t", ["x", "y"])).inc(["1", "2"], 5);
    const merged = mergeFamilies([{ worker: "0", families: a.families() }, { worker: "1", families: b.families() }]);
    expect(renderFamilies(merged)).toBe('# HELP t_total t\n# TYPE t_total counter\nt_total{x="1"} 2\n');
  });
});
