import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { binary, ensureBinary, waitFor } from "./helpers/binary.ts";
import { promtool, seriesTotal } from "./helpers/prometheus.ts";
import { startUpstream, type Upstream } from "./helpers/upstream.ts";

// One view of kedge with workers: dist/kedge with `workers: 2` on real ports, load from h2load over
// many connections (the kernel spreads them across both workers' SO_REUSEPORT sockets), and the
// supervisor's admin port answering for the whole process: /metrics merged (and promtool's lint),
// /debug/*, `kedge admin`, and every worker's access lines whole on the supervisor's stdout, read
// by a slow reader so the pipe fills as it does in front of a busy log shipper.

const dir = mkdtempSync(join(tmpdir(), "kedge-workers-admin-"));
let up: Upstream;
let configFile: string;
const kedgeConfig = (routes: object[]) => ({
  server: { bind_address: "127.0.0.1", http_port: 0, admin_port: 0, log_level: "error", workers: 2 },
  http: { backends: [{ name: "up", static: { addresses: [`127.0.0.1:${up.port}`] } }], routes },
  observability: { access_log: { enabled: true } },
});
let kedge: { proc: ReturnType<typeof Bun.spawn>; stdout: () => string; stderr: () => string };
let ports: Record<string, number>;
let supervisorPid = 0;

/** Paths long enough that a turn's batch of access lines passes PIPE_BUF many times over. */
const longPath = `/${"segment-".repeat(220)}`;

beforeAll(async () => {
  ensureBinary();
  up = await startUpstream("up");
  const config = (configFile = join(dir, "kedge.json"));
  writeFileSync(config, JSON.stringify(kedgeConfig([{ backend_name: "up" }])));
  const reader = new URL("./fixtures/workers/slow-reader.ts", import.meta.url).pathname;
  const proc = Bun.spawn(["sh", "-c", '"$0" --config "$1" | "$2" "$3"', binary, config, process.execPath, reader], {
    stdout: "pipe",
    stderr: "pipe",
    env: { PATH: "/usr/bin:/bin", HOME: dir },
  });
  let out = "";
  let err = "";
  const dec = new TextDecoder();
  void (async () => {
    for await (const c of proc.stdout) out += dec.decode(c, { stream: true });
  })();
  void (async () => {
    for await (const c of proc.stderr) err += dec.decode(c, { stream: true });
  })();
  kedge = { proc, stdout: () => out, stderr: () => err };
  await waitFor(() => /listening: .*\n/.test(kedge.stdout()), "kedge to listen", kedge);
  const line = /listening: (.*)\n/.exec(kedge.stdout())![1];
  ports = Object.fromEntries(line.split(" ").map((kv) => kv.split("=")).map(([k, v]) => [k, Number(v)]));
  supervisorPid = ((await (await admin("/debug/workers")).json()) as { supervisor: { pid: number } }).supervisor.pid;
});

afterAll(async () => {
  if (supervisorPid) process.kill(supervisorPid, "SIGTERM");
  await kedge?.proc.exited;
  await up?.close();
});

/**
 * The lines on stdout that ended, from the one holding offset `from` on. An offset taken while
 * earlier tests' lines are still arriving falls inside a line, and the last line may not have ended
 * yet: neither piece is a torn line.
 */
function wholeLinesSince(from: number): string[] {
  const out = kedge.stdout();
  const start = out.lastIndexOf("\n", from - 1) + 1;
  const end = out.lastIndexOf("\n");
  return end < start ? [] : out.slice(start, end).split("\n");
}

const admin = (path: string) => fetch(`http://127.0.0.1:${ports.admin}${path}`);

async function h2load(args: string[]): Promise<string> {
  const p = Bun.spawn(["h2load", ...args], { stdout: "pipe", stderr: "pipe" });
  const out = await new Response(p.stdout).text();
  expect(await p.exited).toBe(0);
  return out;
}

describe("workers: one view for operators", () => {
  it("counts every request once in /metrics, though both workers served some", async () => {
    const before = await (await admin("/metrics")).text();
    // 200 requests, one per connection: both workers accept some.
    await h2load(["--h1", "-n", "200", "-c", "200", `http://127.0.0.1:${ports.http}/counted`]);
    const text = await (await admin("/metrics")).text();
    expect(seriesTotal(text, "kedge_http_requests_total", 'code="200"') - seriesTotal(before, "kedge_http_requests_total", 'code="200"')).toBe(200);
    expect(seriesTotal(text, "kedge_http_request_duration_seconds_count") - seriesTotal(before, "kedge_http_request_duration_seconds_count")).toBe(200);
    // Each worker keeps its own upstream connections: both have some, so both served.
    const backends = (await (await admin("/debug/backends")).json()) as any;
    const [endpoint] = backends.http[0].endpoints;
    expect(endpoint.workers.map((w: { worker: string }) => w.worker).sort()).toEqual(["1", "2"]);
    for (const w of endpoint.workers) expect(w.pool.open).toBeGreaterThan(0);
    expect(endpoint.pool.open).toBe(endpoint.workers[0].pool.open + endpoint.workers[1].pool.open);
  });

  it("labels per-process gauges by worker, the supervisor's too, and passes promtool check metrics", async () => {
    const text = await (await admin("/metrics")).text();
    for (const worker of ["1", "2", "supervisor"]) expect(seriesTotal(text, "process_resident_memory_bytes", `worker="${worker}"`)).toBeGreaterThan(0);
    expect(text).toContain("# TYPE kedge_worker_restarts_total counter");
    expect(await promtool(text)).toEqual({ code: 0, out: "" });
  });

  it("answers /debug/config and `kedge admin` for the whole process", async () => {
    // Requests over many connections: both workers open upstream connections, which `kedge admin backends` sums.
    await h2load(["--h1", "-n", "100", "-c", "100", `http://127.0.0.1:${ports.http}/admin-view`]);
    const config = (await (await admin("/debug/config")).json()) as any;
    expect(config.config.http.backends[0].name).toBe("up");
    const backends = Bun.spawnSync([binary, "admin", "backends", "--admin-address", `127.0.0.1:${ports.admin}`], { env: { PATH: "/usr/bin:/bin", HOME: dir } });
    expect(backends.stderr.toString()).toBe("");
    expect(backends.stdout.toString()).toMatch(new RegExp(`http\\s+up\\s+static 127\\.0\\.0\\.1:${up.port}\\s+127\\.0\\.0\\.1:${up.port}\\s+yes\\s+0\\s+[1-9]`));
    const routes = Bun.spawnSync([binary, "admin", "routes", "--admin-address", `127.0.0.1:${ports.admin}`], { env: { PATH: "/usr/bin:/bin", HOME: dir } });
    expect(routes.stdout.toString()).toMatch(/http\s+0\s+up/);
  });

  it("writes every worker's access lines whole on stdout, one JSON object a line", async () => {
    const before = kedge.stdout().length;
    await h2load(["--h1", "-n", "2000", "-c", "100", `http://127.0.0.1:${ports.http}${longPath}`]);
    // The slow reader is still handing lines over in pieces: wait for all 2000 to have ended.
    let lines = wholeLinesSince(before);
    for (let waited = 0; lines.filter((l) => l.includes(longPath)).length < 2000 && waited < 30_000; waited += 250) {
      await Bun.sleep(250);
      lines = wholeLinesSince(before);
    }
    let torn = 0;
    let access = 0;
    for (const line of lines) {
      try {
        const record = JSON.parse(line);
        if (record.msg === "access" && record.path === longPath) access++;
      } catch {
        torn++;
      }
    }
    expect(torn).toBe(0);
    expect(access).toBe(2000);
  });

  it("counts a config reload and its backend changes once, not once per worker", async () => {
    const value = async (series: string) => seriesTotal(await (await admin("/metrics")).text(), series);
    writeFileSync(configFile, JSON.stringify(kedgeConfig([{ backend_name: "up", host_matcher: "reloaded.test" }, { backend_name: "up" }])));
    await waitFor(async () => (await value('kedge_config_reloads_total{result="success"}')) > 0, "the reload", kedge);
    await Bun.sleep(200);
    expect(await value('kedge_config_reloads_total{result="success"}')).toBe(1);
    expect(await value('kedge_http_backend_configuration_changes_total{backend_name="up",action="create"}')).toBe(1);
    const text = await (await admin("/metrics")).text();
    for (const worker of ["1", "2", "supervisor"]) expect(seriesTotal(text, "kedge_config_version", `worker="${worker}"`)).toBe(2);
  });

  it("serves /metrics without waiting for a worker that does not answer, keeps its counters, and counts it", async () => {
    const { workers } = (await (await admin("/debug/workers")).json()) as { workers: Array<{ id: number; pid: number }> };
    const stalled = workers.find((w) => w.id === 2)!;
    // One request a connection: both workers count some, worker 2 among them.
    await h2load(["--h1", "-n", "100", "-c", "100", `http://127.0.0.1:${ports.http}/before-stall`]);
    const counted = seriesTotal(await (await admin("/metrics")).text(), "kedge_http_requests_total");
    expect(counted).toBeGreaterThanOrEqual(100);
    process.kill(stalled.pid, "SIGSTOP");
    try {
      const started = performance.now();
      const res = await admin("/metrics");
      expect(res.status).toBe(200);
      const text = await res.text();
      expect(performance.now() - started).toBeLessThan(5000);
      expect(seriesTotal(text, 'kedge_worker_scrape_errors_total{worker="2"}')).toBe(1);
      expect(seriesTotal(text, "process_resident_memory_bytes", 'worker="1"')).toBeGreaterThan(0);
      expect(seriesTotal(text, "process_resident_memory_bytes", 'worker="2"')).toBe(0);
      // Its counters as it last reported them stay in the sum: a total that dropped would read as a reset.
      expect(seriesTotal(text, "kedge_http_requests_total")).toBe(counted);
    } finally {
      process.kill(stalled.pid, "SIGCONT");
    }
  });
});
