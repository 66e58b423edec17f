/**
 * Turns bench/run.sh's raw measurements into Markdown: a summary against the issue's targets, the
 * resource measurements (start-up, idle RSS, 10k idle connections), the scaling from one worker
 * count to the next when the run had several, then one section per worker count and workload.
 *
 * Usage: bun bench/report.ts RAW_TSV CLK_TCK LAST_RUN_DIR
 *   RAW_TSV: one row per measured run (see run.sh), each naming its wrk / h2load / stream-client
 *   output file and the worker count of its target ("-" for direct, measured once per round and
 *   shown beside every count). LAST_RUN_DIR holds startup.txt, idle-conns.txt and *.stderr.
 *   Environment: BENCH_META, BENCH_LOAD_<workload>, BENCH_RESOURCES (descriptions),
 *   BENCH_STREAM_MSGS, BENCH_BODY_BYTES, BENCH_IDLE_CONNS, BENCH_TLS13_CIPHERS (the one cipher every
 *   HTTPS run must have negotiated).
 * MB here is 2^20 bytes.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

type Load = {
  /** Completed requests (calls for gRPC), the divisor of CPU per request. */
  requests: number;
  rps: number;
  p50ms: number;
  p99ms: number;
  meanMs: number;
  maxMs: number;
  errors: number;
  errorLines: string[];
  /** stream: messages/s of OK calls; body: request-body MB/s. */
  extra: number;
  /** stream: p50 ms to a call's first message. */
  firstMsgP50ms: number;
};

type Run = Load & {
  workload: string;
  target: string;
  /** kedge workers, nginx worker_processes, haproxy nbthread; NaN for direct. */
  workers: number;
  round: number;
  /** CPU ticks of each of the target's processes in the run, "/"-separated (supervisor or master first). */
  cpuSplit: string;
  cpuUsPerReq: number;
  upstreamCpuUsPerReq: number;
  rssKb: number;
  alive: boolean;
  upstreamConns: number;
};

const TARGETS = ["direct", "kedge", "nginx", "haproxy"] as const;
const MB = 1024 * 1024;
const streamMsgs = Number(process.env.BENCH_STREAM_MSGS ?? 100);
const bodyBytes = Number(process.env.BENCH_BODY_BYTES ?? MB);
const idleTarget = Number(process.env.BENCH_IDLE_CONNS ?? 10000);
const tlsCiphers = process.env.BENCH_TLS13_CIPHERS;

interface Workload {
  title: string;
  short: string;
  labels: Record<(typeof TARGETS)[number], string>;
  tool: string;
  /** Column for Load.extra, if any. */
  extra?: string;
  notes: string[];
}

const grpcLabels = {
  direct: "direct (gRPC upstream)",
  kedge: "kedge (h2c_port)",
  nginx: "nginx grpc_pass",
  haproxy: "haproxy (proto h2 both sides)",
};
const workloads: Record<string, Workload> = {
  http: {
    title: "HTTP/1.1 (wrk)",
    short: "HTTP/1.1",
    labels: { direct: "direct (upstream nginx)", kedge: "kedge (http_port)", nginx: "nginx proxy_pass", haproxy: "haproxy" },
    tool: "wrk",
    notes: [],
  },
  https: {
    title: "HTTPS with HTTP/2 (h2load over TLS)",
    short: "HTTPS h2",
    labels: {
      direct: "direct (upstream nginx, ssl http2)",
      kedge: "kedge (http_tls_port)",
      nginx: "nginx (ssl http2 → proxy_pass)",
      haproxy: "haproxy (ssl alpn h2 → HTTP/1.1)",
    },
    tool: "h2load",
    notes: [
      "Clients speak HTTP/2 over TLS to each target; the proxies speak plain HTTP/1.1 to the upstream nginx.",
      "p50/p99 from h2load's per-request log. errors: failed/errored/timed-out requests, non-2xx, short bodies, no h2.",
    ],
  },
  grpc: {
    title: "gRPC unary (h2load, h2c)",
    short: "gRPC unary",
    labels: grpcLabels,
    tool: "h2load",
    notes: [
      "h2load prints no latency percentiles: p50/p99 are computed from its per-request log (`--log-file`).",
      "errors: failed/errored/timed-out calls, non-2xx, and 2xx calls without the upstream's message.",
    ],
  },
  stream: {
    title: "gRPC server-streaming (bench/grpc-stream-client.ts, h2c)",
    short: "gRPC streaming",
    labels: grpcLabels,
    tool: "grpc-stream-client",
    extra: "msgs/s",
    notes: [
      `req/s is calls/s; each OK call brought exactly ${streamMsgs} messages and grpc-status 0 (anything else is an error).`,
      "p50/p99: whole call, request sent to trailers received. CPU µs/req is per call; per message divide by " +
        `${streamMsgs} (column CPU µs/msg).`,
    ],
  },
  body: {
    title: `${bodyBytes === MB ? "1 MB" : `${bodyBytes}-byte`} request body (wrk POST)`,
    short: "1 MB body",
    labels: {
      direct: "direct (upstream nginx)",
      kedge: "kedge (http_port)",
      nginx: "nginx proxy_pass (request buffering off)",
      haproxy: "haproxy",
    },
    tool: "wrk",
    extra: "body MB/s",
    notes: [
      "The upstream nginx reads the whole body (in memory), then answers 12 bytes; MB/s is request-body bytes.",
    ],
  },
};

// wrk and h2load print durations as e.g. "812.00us", "1.23ms", "2.01s", "1.00m".
function toMs(value: string, unit: string): number {
  const scale: Record<string, number> = { us: 1e-3, ms: 1, s: 1e3, m: 60e3, h: 3600e3 };
  return Number(value) * (scale[unit] ?? NaN);
}

function parseWrk(text: string): Load {
  const num = (re: RegExp) => Number(text.match(re)?.[1] ?? NaN);
  const pct = (p: string) => {
    const m = text.match(new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s|m|h)\\s*$`, "m"));
    return m ? toMs(m[1], m[2]) : NaN;
  };
  const stat = text.match(/^\s+Latency\s+([\d.]+)(us|ms|s|m|h)\s+[\d.]+\w+\s+([\d.]+)(us|ms|s|m|h)/m);
  // Only these lines signal failures; wrk omits them when the count is zero.
  const errorLines = text.split("\n").map((l) => l.trim()).filter((l) => /^(Socket errors|Non-2xx)/.test(l));
  const socket = text.match(/Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/);
  const socketErrors = socket ? socket.slice(1).reduce((a, b) => a + Number(b), 0) : 0;
  const rps = num(/Requests\/sec:\s+([\d.]+)/);
  const body = Number(text.match(/^bench: request body bytes (\d+)/m)?.[1] ?? NaN);
  return {
    requests: num(/(\d+) requests in/),
    rps,
    p50ms: pct("50"),
    p99ms: pct("99"),
    meanMs: stat ? toMs(stat[1], stat[2]) : NaN,
    maxMs: stat ? toMs(stat[3], stat[4]) : NaN,
    errors: socketErrors + (num(/Non-2xx or 3xx responses: (\d+)/) || 0),
    errorLines,
    extra: (rps * body) / MB,
    firstMsgP50ms: NaN,
  };
}

/**
 * h2load's own summary plus the lines run.sh appends: percentiles from --log-file and the number
 * of DATA bytes one OK response carries. h2load cannot see grpc-status (it is in the trailers), but a
 * non-OK answer from a proxy is trailers-only or lacks the upstream's message, so a DATA total
 * below 2xx × message size means some calls did not get the upstream's OK answer.
 */
function parseH2load(text: string, tls: boolean): Load {
  const ints = (re: RegExp) => text.match(re)?.slice(1).map(Number);
  const req = ints(/requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/);
  const codes = ints(/status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/);
  const dataBytes = Number(text.match(/\((\d+)\) data/)?.[1] ?? NaN);
  const expectedBytes = Number(text.match(/bench: expected response data bytes (\d+)/)?.[1] ?? NaN);
  const lat = ints(/bench: latency us n=(\d+) p50=(\d+) p90=(\d+) p99=(\d+) max=(\d+)/);
  const t = text.match(/time for request:\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)/);
  const errorLines: string[] = [];
  let errors = 0;
  if (tls && !/^Application protocol: h2$/m.test(text)) {
    errorLines.push(`not HTTP/2 over TLS (${text.match(/^Application protocol: .*$/m)?.[0] ?? "no ALPN line"})`);
    errors += 1;
  }
  const cipher = text.match(/^Cipher: (.*)$/m)?.[1];
  if (tls && tlsCiphers && cipher !== tlsCiphers) {
    errorLines.push(`negotiated cipher ${cipher ?? "unknown"}, not ${tlsCiphers}`);
    errors += 1;
  }
  if (req && codes) {
    const [, , done, succeeded, failed, errored, timeout] = req;
    const [, n3xx, n4xx, n5xx] = codes;
    if (failed + errored + timeout > 0) errorLines.push(`h2load: ${failed} failed, ${errored} errored, ${timeout} timeout`);
    // Status codes are counted when headers arrive, so they may include calls still in flight when
    // the duration ended; the other counters are completed calls only.
    if (n3xx + n4xx + n5xx > 0) errorLines.push(`status codes: ${n3xx} 3xx, ${n4xx} 4xx, ${n5xx} 5xx`);
    // failed counts 4xx/5xx and stream errors; 3xx counts as succeeded in h2load.
    errors += failed + timeout + n3xx;
    // Each succeeded request must have brought the upstream's body. Requests cut off at the end of
    // the duration may add DATA bytes but never take any away, so only a shortfall is an error.
    if (Number.isFinite(expectedBytes) && Number.isFinite(dataBytes) && dataBytes < succeeded * expectedBytes) {
      const missing = Math.ceil((succeeded * expectedBytes - dataBytes) / expectedBytes);
      errorLines.push(
        `DATA bytes ${dataBytes} < ${succeeded} succeeded × ${expectedBytes}: at least ${missing} responses without the upstream's body (non-OK grpc-status?)`,
      );
      errors += missing;
    }
    const logRows = [...(text.match(/^bench: log statuses(.*)$/m)?.[1] ?? "").matchAll(/=(\d+)/g)].reduce((a, m) => a + Number(m[1]), 0);
    if (logRows !== done) errorLines.push(`per-request log has ${logRows} rows, h2load reports ${done} done`);
    if (done === 0) errorLines.push("no request completed");
  }
  return {
    requests: req ? req[2] : NaN,
    rps: Number(text.match(/finished in [\d.]+s, ([\d.]+) req\/s/)?.[1] ?? NaN),
    p50ms: lat ? lat[1] / 1e3 : NaN,
    p99ms: lat ? lat[3] / 1e3 : NaN,
    meanMs: t ? toMs(t[5], t[6]) : NaN,
    maxMs: t ? toMs(t[3], t[4]) : NaN,
    errors,
    errorLines,
    extra: NaN,
    firstMsgP50ms: NaN,
  };
}

/** `key=value` pairs of the first line starting with prefix. */
function keyValues(text: string, prefix: string): Record<string, string> | undefined {
  const line = text.split("\n").find((l) => l.startsWith(prefix));
  if (!line) return undefined;
  return Object.fromEntries([...line.slice(prefix.length).matchAll(/(\w+)=(\S*)/g)].map((m) => [m[1], m[2]]));
}

function parseStream(text: string): Load {
  const kv = keyValues(text, "bench-stream:");
  const n = (k: string) => Number(kv?.[k] ?? NaN);
  const errorLines = text
    .split("\n")
    .filter((l) => l.startsWith("bench-stream-error:") || (l.startsWith("bench-stream:") && !l.includes("calls=")))
    .map((l) => l.replace(/^bench-stream(-error)?: /, ""));
  return {
    requests: n("calls"),
    rps: n("calls_per_s"),
    p50ms: n("p50_ms"),
    p99ms: n("p99_ms"),
    meanMs: n("mean_ms"),
    maxMs: n("max_ms"),
    errors: kv ? n("errors") : 1,
    errorLines: kv ? errorLines : [...errorLines, text.trim().split("\n").slice(-3).join(" / ") || "no output"],
    extra: n("msgs_per_s"),
    firstMsgP50ms: n("first_msg_p50_ms"),
  };
}

function median(xs: number[]): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

const fmt = (x: number, digits = 2) => (Number.isFinite(x) ? x.toFixed(digits) : "n/a");
const fmtInt = (x: number) => (Number.isFinite(x) ? Math.round(x).toLocaleString("en-US") : "n/a");
const ratioOf = (a: number, b: number) => a / b;
const fmtRatio = (x: number) => (Number.isFinite(x) ? `${x.toFixed(2)}×` : "n/a");

const [rawPath, clkTckArg, runDir] = process.argv.slice(2);
if (!rawPath || !clkTckArg || !runDir) {
  console.error("usage: bun bench/report.ts RAW_TSV CLK_TCK LAST_RUN_DIR");
  process.exit(2);
}
const usPerTick = 1e6 / Number(clkTckArg);
const readIf = (path: string) => (existsSync(path) ? readFileSync(path, "utf8") : "");

const runs: Run[] = readFileSync(rawPath, "utf8")
  .trim()
  .split("\n")
  .slice(1)
  .filter(Boolean)
  .map((line) => {
    const [workload, target, workers, round, ticks, upstreamTicks, rssKb, alive, upstreamConns, loadFile, cpuSplit] = line.split("\t");
    const text = readIf(loadFile);
    const load =
      workload === "stream"
        ? parseStream(text)
        : workload === "grpc" || workload === "https"
          ? parseH2load(text, workload === "https")
          : parseWrk(text);
    return {
      workload,
      target,
      workers: Number(workers),
      round: Number(round),
      cpuSplit: cpuSplit ?? "-",
      ...load,
      cpuUsPerReq: alive === "yes" ? (Number(ticks) * usPerTick) / load.requests : NaN,
      upstreamCpuUsPerReq: Number(upstreamTicks) >= 0 ? (Number(upstreamTicks) * usPerTick) / load.requests : NaN,
      rssKb: alive === "yes" ? Number(rssKb) : NaN,
      alive: alive === "yes",
      upstreamConns: Number(upstreamConns) >= 0 ? Number(upstreamConns) : NaN,
    };
  });

type Summary = {
  rps: number;
  extra: number;
  p50ms: number;
  p99ms: number;
  cpuUsPerReq: number;
  rssMb: number;
  upstreamConns: number;
  errors: number;
  died: boolean;
  rounds: number;
};
function summarize(rs: Run[]): Summary {
  const rss = rs.map((r) => r.rssKb).filter(Number.isFinite);
  return {
    rps: median(rs.map((r) => r.rps)),
    extra: median(rs.map((r) => r.extra)),
    p50ms: median(rs.map((r) => r.p50ms)),
    p99ms: median(rs.map((r) => r.p99ms)),
    cpuUsPerReq: median(rs.map((r) => r.cpuUsPerReq)),
    // VmHWM only grows, so the largest reading is the peak of the whole run.
    rssMb: rss.length ? Math.max(...rss) / 1024 : NaN,
    upstreamConns: median(rs.map((r) => r.upstreamConns)),
    errors: rs.reduce((a, r) => a + r.errors, 0),
    died: rs.some((r) => !r.alive),
    rounds: rs.length,
  };
}
/** The runs of a target at a worker count; direct's runs belong to every count. */
const runsOf = (w: string, t: string, n: number) =>
  runs.filter((r) => r.workload === w && r.target === t && (t === "direct" || r.workers === n));
const workerCounts = [...new Set(runs.map((r) => r.workers).filter(Number.isFinite))].sort((a, b) => a - b);
/** worker count → workload → target → summary */
const summaries = new Map<number, Map<string, Map<string, Summary>>>();
for (const n of workerCounts) {
  const byWorkload = new Map<string, Map<string, Summary>>();
  for (const w of Object.keys(workloads)) {
    if (!runs.some((r) => r.workload === w && r.workers === n)) continue;
    byWorkload.set(w, new Map(TARGETS.map((t) => [t, summarize(runsOf(w, t, n))])));
  }
  summaries.set(n, byWorkload);
}
const stat = (n: number, w: string, t: string) => summaries.get(n)?.get(w)?.get(t);
const workersLabel = (n: number) => `${n} worker${n === 1 ? "" : "s"}`;
/** The counts the issue's targets name: one worker, and the largest count above one (2 if none ran). */
const manyWorkers = workerCounts.filter((n) => n > 1).at(-1) ?? 2;

// --- resource measurements ------------------------------------------------------------------
const startupText = readIf(join(runDir, "startup.txt"));
const idle = keyValues(startupText, "bench-idle:");
const ready = keyValues(startupText, "bench-ready:");
const workersText = readIf(join(runDir, "idle-workers.txt"));
const idleWorkers = keyValues(workersText, "bench-idle-workers:");
const connsText = readIf(join(runDir, "idle-conns.txt"));
const conns = keyValues(connsText, "bench-idle-conns:");
const kb = (kv: Record<string, string> | undefined, k: string) => Number(kv?.[k] ?? NaN);
const idleRssMb = kb(idle, "rss_kb") / 1024;
const readyMs = kb(ready, "median_ms");
const connsHeldMb = Math.max(kb(conns, "rss_held_kb"), kb(conns, "rss_end_kb")) / 1024;
const connsAllOpen =
  conns !== undefined && kb(conns, "opened") === idleTarget && kb(conns, "still_open") === idleTarget;

// --- summary against the issue's targets -------------------------------------------------------
type Check = { target: string; measured: string; met: boolean | undefined };
const checks: Check[] = [];
const check = (target: string, value: number, ok: (v: number) => boolean, measured: string, extraOk = true) =>
  checks.push({ target, measured, met: Number.isFinite(value) ? ok(value) && extraOk : undefined });
const ratioCheck = (target: string, n: number, w: string, base: string, field: "rps" | "cpuUsPerReq", ok: (r: number) => boolean) => {
  const k = stat(n, w, "kedge");
  const b = stat(n, w, base);
  const r = k && b ? ratioOf(k[field], b[field]) : NaN;
  const unit = field === "rps" ? "req/s" : "CPU µs/req";
  const digits = field === "rps" ? 0 : 1;
  const measured = k && b ? `${fmtRatio(r)} (kedge ${fmt(k[field], digits)} vs ${fmt(b[field], digits)} ${unit})` : "not run";
  check(`${workersLabel(n)}: ${target}`, r, ok, measured);
};
const cpuChecks = (n: number) => {
  for (const w of Object.keys(workloads)) {
    if (summaries.get(n)?.has(w) || w === "http") {
      ratioCheck(`CPU/request ≤ 1.5× nginx (${workloads[w].short})`, n, w, "nginx", "cpuUsPerReq", (r) => r <= 1.5);
    }
  }
};
ratioCheck("HTTP/1.1 req/s ≥ 0.8× nginx", 1, "http", "nginx", "rps", (r) => r >= 0.8);
ratioCheck("HTTPS h2 CPU/request ≤ 1.1× nginx", 1, "https", "nginx", "cpuUsPerReq", (r) => r <= 1.1);
cpuChecks(1);
ratioCheck("gRPC unary req/s ≥ nginx grpc_pass", 1, "grpc", "nginx", "rps", (r) => r >= 1);
ratioCheck("gRPC unary req/s ≥ 0.7× haproxy", 1, "grpc", "haproxy", "rps", (r) => r >= 0.7);
ratioCheck("HTTP/1.1 req/s ≥ 1.0× nginx", manyWorkers, "http", "nginx", "rps", (r) => r >= 1);
ratioCheck("HTTPS h2 req/s ≥ 1.0× nginx", manyWorkers, "https", "nginx", "rps", (r) => r >= 1);
ratioCheck("gRPC unary req/s ≥ 1.0× haproxy", manyWorkers, "grpc", "haproxy", "rps", (r) => r >= 1);
if (summaries.has(manyWorkers)) cpuChecks(manyWorkers);

/** req/s at manyWorkers over req/s at one worker, of one proxy. */
const scaling = (w: string, t: string) => ratioOf(stat(manyWorkers, w, t)?.rps ?? NaN, stat(1, w, t)?.rps ?? NaN);
const scaled = summaries.has(1) && summaries.has(manyWorkers);
for (const w of Object.keys(workloads)) {
  if (!(summaries.get(1)?.has(w) && summaries.get(manyWorkers)?.has(w)) && (scaled || w !== "http")) continue;
  const k = scaling(w, "kedge");
  const x = scaling(w, "nginx");
  check(
    `scaling 1 → ${manyWorkers} workers ≥ 0.9× nginx's (${workloads[w].short})`,
    k / x,
    (r) => r >= 0.9,
    Number.isFinite(k / x) ? `${fmtRatio(k / x)} (kedge ${fmtRatio(k)}, nginx ${fmtRatio(x)})` : `not run (WORKERS="1 ${manyWorkers}")`,
  );
}
check("idle RSS ≤ 60 MB", idleRssMb, (v) => v <= 60, idle ? `${fmt(idleRssMb, 1)} MB` : "not measured");
const workerRssMb = kb(idleWorkers, "max_worker_rss_kb") / 1024;
check(
  "idle RSS per worker ≤ 50 MB (workers: 2)",
  workerRssMb,
  (v) => v <= 50,
  idleWorkers?.max_worker_rss_kb
    ? `${fmt(workerRssMb, 1)} MB (supervisor ${fmt(kb(idleWorkers, "supervisor_rss_kb") / 1024, 1)} MB; total RSS ` +
        `${fmt(kb(idleWorkers, "total_rss_kb") / 1024, 1)} MB, PSS ${fmt(kb(idleWorkers, "total_pss_kb") / 1024, 1)} MB)`
    : "not measured",
);
check(
  `${idleTarget.toLocaleString("en-US")} idle keep-alive connections: RSS ≤ 300 MB, all still open`,
  connsHeldMb,
  (v) => v <= 300,
  conns
    ? `${fmt(connsHeldMb, 1)} MB; ${kb(conns, "still_open")}/${idleTarget} open after ${kb(conns, "hold_s")} s, ` +
        `${kb(conns, "second_request_ok")} answered a second request`
    : "not measured",
  connsAllOpen,
);
check(
  "ready ≤ 100 ms after start (median)",
  readyMs,
  (v) => v <= 100,
  ready ? `${fmt(readyMs, 1)} ms (median of ${Number(ready.starts) - Number(ready.failed)} starts)` : "not measured",
  ready?.failed === "0",
);

const out: string[] = [];
out.push("# kedge benchmark", "", `${new Date().toISOString()} — ${process.env.BENCH_META ?? ""}`, "");
out.push("## Summary", "", "| target | measured | |", "|---|---|---|");
for (const c of checks) {
  out.push(`| ${c.target} | ${c.measured} | ${c.met === undefined ? "not measured" : c.met ? "met" : "**not met**"} |`);
}
out.push(
  "",
  "Ratios are kedge's median over the median of the other target; noisy on a shared machine, see the rounds below.",
);

// --- resources section -----------------------------------------------------------------------
out.push("", "## kedge start-up, idle RSS, idle connections", "");
if (process.env.BENCH_RESOURCES) out.push(`${process.env.BENCH_RESOURCES}.`, "");
if (!idle && !ready && !conns && !idleWorkers) out.push("Not measured (RESOURCES=0).");
else {
  out.push("| measurement | value |", "|---|--:|");
  if (idle?.rss_kb) {
    out.push(`| idle RSS (nothing sent, ${idle.settle_s}s after listening) | ${fmt(idleRssMb, 1)} MB |`);
    out.push(`| idle peak RSS (VmHWM) | ${fmt(kb(idle, "hwm_kb") / 1024, 1)} MB |`);
    if (idle.listen_ms) out.push(`| port listening after spawn (that start) | ${idle.listen_ms} ms |`);
  } else if (idle) out.push(`| idle RSS | failed: ${idle.error ?? "?"} |`);
  if (idleWorkers?.max_worker_rss_kb) {
    const mb = (list: string) => list.split(",").map((v) => fmt(Number(v) / 1024, 1)).join(" / ");
    out.push(`| ${idleWorkers.workers} workers, idle: RSS supervisor / each worker | ${mb(idleWorkers.supervisor_rss_kb)} / ${mb(idleWorkers.worker_rss_kb)} MB |`);
    out.push(`| ${idleWorkers.workers} workers, idle: PSS supervisor / each worker | ${mb(idleWorkers.supervisor_pss_kb)} / ${mb(idleWorkers.worker_pss_kb)} MB |`);
    out.push(`| ${idleWorkers.workers} workers, idle: total RSS / total PSS (memory used) | ${mb(idleWorkers.total_rss_kb)} / ${mb(idleWorkers.total_pss_kb)} MB |`);
  } else if (idleWorkers) out.push(`| ${idleWorkers.workers ?? 2} workers, idle RSS | failed: ${idleWorkers.error ?? "?"} |`);
  if (ready) {
    out.push(`| ready: spawn → first proxied 200, median | ${ready.median_ms} ms |`);
    out.push(`| ready: min / max | ${ready.min_ms} / ${ready.max_ms} ms |`);
    out.push(`| ready: every start (ms) | ${ready.all_ms.replaceAll(",", ", ")}${ready.failed !== "0" ? ` (${ready.failed} failed)` : ""} |`);
  }
  if (conns?.opened) {
    out.push(`| idle conns: opened (one keep-alive GET each) | ${conns.opened} / ${conns.target} in ${conns.open_ms} ms |`);
    out.push(`| idle conns: RSS before / all held (+1 s) / end of hold | ${fmt(kb(conns, "rss_before_kb") / 1024, 1)} / ${fmt(kb(conns, "rss_held_kb") / 1024, 1)} / ${fmt(kb(conns, "rss_end_kb") / 1024, 1)} MB |`);
    out.push(`| idle conns: peak RSS (VmHWM) | ${fmt(kb(conns, "hwm_kb") / 1024, 1)} MB |`);
    out.push(`| idle conns: still open after ${conns.hold_s} s / answered a second request | ${conns.still_open} / ${conns.second_request_ok} |`);
  } else if (conns) out.push(`| idle conns | failed: ${connsText.trim().split("\n").join("; ")} |`);
  const resErrors = [startupText, workersText, connsText].flatMap((t) => t.split("\n").filter((l) => /^bench-[\w-]+-error:/.test(l) || /error=/.test(l)));
  if (resErrors.length) out.push("", ...resErrors.map((l) => `- ${l}`));
}

// --- workloads ---------------------------------------------------------------------------------
// --- scaling -----------------------------------------------------------------------------------
if (scaled) {
  out.push("", `## Scaling: 1 → ${manyWorkers} workers`, "");
  out.push(`req/s with ${manyWorkers} workers (kedge workers, nginx worker_processes, haproxy nbthread) over req/s with 1,`);
  out.push("measured in the same rounds. The load generator and the upstream share the machine's cores, so the");
  out.push("yardstick is nginx's own scaling, not the worker count. kedge (1) / direct is how close one worker");
  out.push("already is to the upstream loaded with no proxy at all: near 1×, no worker count has much left to add.");
  out.push(
    "",
    `| workload | kedge req/s 1 → ${manyWorkers} | kedge | nginx | haproxy | kedge / nginx scaling | kedge (1) / direct | kedge CPU µs/req 1 → ${manyWorkers} | nginx CPU µs/req 1 → ${manyWorkers} |`,
    "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
  );
  for (const [w, def] of Object.entries(workloads)) {
    const one = summaries.get(1)?.get(w);
    const many = summaries.get(manyWorkers)?.get(w);
    if (!one || !many) continue;
    out.push(
      `| ${def.short} | ${fmtInt(one.get("kedge")!.rps)} → ${fmtInt(many.get("kedge")!.rps)} | ${fmtRatio(scaling(w, "kedge"))} | ` +
        `${fmtRatio(scaling(w, "nginx"))} | ${fmtRatio(scaling(w, "haproxy"))} | ${fmtRatio(scaling(w, "kedge") / scaling(w, "nginx"))} | ` +
        `${fmtRatio(ratioOf(one.get("kedge")!.rps, one.get("direct")?.rps ?? NaN))} | ` +
        `${fmt(one.get("kedge")!.cpuUsPerReq, 1)} → ${fmt(many.get("kedge")!.cpuUsPerReq, 1)} | ` +
        `${fmt(one.get("nginx")!.cpuUsPerReq, 1)} → ${fmt(many.get("nginx")!.cpuUsPerReq, 1)} |`,
    );
  }
}

// --- workloads ---------------------------------------------------------------------------------
for (const n of workerCounts) {
  out.push("", workerCounts.length > 1 ? `## Load, ${workersLabel(n)}` : "## Load", "");
  out.push(`kedge \`workers: ${n}\`, nginx \`worker_processes ${n}\`, haproxy \`nbthread ${n}\`; direct is the same upstream at every count.`);
  out.push("Median over rounds (targets alternate within each round). CPU and RSS are every process of the target:");
  out.push("kedge (with workers, its supervisor and every worker), nginx's master and workers, the haproxy process;");
  out.push("for direct, the upstream itself (nginx master and worker, or the Bun gRPC server). CPU µs/req = (utime+stime");
  out.push("from /proc/<pid>/stat after − before the run, summed over the processes) ÷ requests completed. Peak RSS is the");
  out.push("sum of each process's VmHWM. upstream conns: connections the upstream accepted during a run (median); a proxy");
  out.push("that keeps its upstream connections alive opens none after the warm-up.");

  for (const [w, def] of Object.entries(workloads)) {
    const s = summaries.get(n)?.get(w);
    if (!s) continue;
    const wruns = runs.filter((r) => r.workload === w && (r.target === "direct" || r.workers === n));
    const perMsg = w === "stream";
    out.push("", `### ${def.title}${workerCounts.length > 1 ? `, ${workersLabel(n)}` : ""}`, "", `${process.env[`BENCH_LOAD_${w}`] ?? ""}.`, ...def.notes.map((n) => `${n}`));
    const extraHead = def.extra ? ` ${def.extra} |` : "";
    const extraSep = def.extra ? "--:|" : "";
    out.push(
      "",
      `| target | req/s |${extraHead} p50 ms | p99 ms | CPU µs/req |${perMsg ? " CPU µs/msg |" : ""} peak RSS MB | upstream conns | errors |`,
      `|---|--:|${extraSep}--:|--:|--:|${perMsg ? "--:|" : ""}--:|--:|--:|`,
    );
    for (const t of TARGETS) {
      const x = s.get(t)!;
      const errors = `${x.errors}${x.died ? " (process died)" : ""}${x.rounds === 0 ? " (not run)" : ""}`;
      const extra = def.extra ? ` ${w === "body" ? fmt(x.extra, 0) : fmtInt(x.extra)} |` : "";
      out.push(
        `| ${def.labels[t]} | ${fmtInt(x.rps)} |${extra} ${fmt(x.p50ms)} | ${fmt(x.p99ms)} | ${fmt(x.cpuUsPerReq, 1)} |` +
          `${perMsg ? ` ${fmt(x.cpuUsPerReq / streamMsgs, 2)} |` : ""} ${fmt(x.rssMb, 1)} | ${fmtInt(x.upstreamConns)} | ${errors} |`,
      );
    }
    const k = s.get("kedge")!;
    out.push("", "| ratio | req/s | p50 | p99 | CPU µs/req | peak RSS |", "|---|--:|--:|--:|--:|--:|");
    for (const base of ["direct", "nginx", "haproxy"] as const) {
      const b = s.get(base)!;
      out.push(
        `| kedge / ${base} | ${fmtRatio(k.rps / b.rps)} | ${fmtRatio(k.p50ms / b.p50ms)} | ${fmtRatio(k.p99ms / b.p99ms)} | ` +
          `${fmtRatio(k.cpuUsPerReq / b.cpuUsPerReq)} | ${fmtRatio(k.rssMb / b.rssMb)} |`,
      );
    }

    out.push("", "<details><summary>every round</summary>", "");
    const firstMsg = perMsg ? " first msg p50 ms |" : "";
    out.push(
      `| round | target | requests | req/s |${extraHead} p50 ms | p99 ms | mean ms | max ms |${firstMsg} CPU µs/req | CPU ticks per process | upstream CPU µs/req | upstream conns | errors |`,
      `|--:|---|--:|--:|${extraSep}--:|--:|--:|--:|${perMsg ? "--:|" : ""}--:|--:|--:|--:|--:|`,
    );
    for (const r of [...wruns].sort((a, b) => a.round - b.round)) {
      const extra = def.extra ? ` ${w === "body" ? fmt(r.extra, 0) : fmtInt(r.extra)} |` : "";
      out.push(
        `| ${r.round} | ${def.labels[r.target as (typeof TARGETS)[number]] ?? r.target} | ${fmtInt(r.requests)} | ${fmtInt(r.rps)} |${extra} ` +
          `${fmt(r.p50ms)} | ${fmt(r.p99ms)} | ${fmt(r.meanMs)} | ${fmt(r.maxMs)} |${perMsg ? ` ${fmt(r.firstMsgP50ms)} |` : ""} ` +
          `${fmt(r.cpuUsPerReq, 1)} | ${r.cpuSplit} | ${fmt(r.upstreamCpuUsPerReq, 1)} | ${fmtInt(r.upstreamConns)} | ${r.errors} |`,
      );
    }
    out.push("", "</details>");

    const failing = wruns.filter((r) => r.errorLines.length > 0 || !r.alive || !Number.isFinite(r.requests));
    if (failing.length > 0) {
      out.push("", `Errors reported (${def.short}):`, "");
      for (const r of failing) {
        const what = [
          ...r.errorLines,
          ...(r.alive ? [] : ["process died"]),
          ...(Number.isFinite(r.requests) ? [] : [`no ${def.tool} result`]),
        ];
        out.push(`- round ${r.round} ${def.labels[r.target as (typeof TARGETS)[number]] ?? r.target}: ${what.join("; ")}`);
      }
    }
  }
}

// kedge runs at log_level error, the others at warn: whatever they printed is shown.
const stderrFiles = existsSync(runDir) ? readdirSync(runDir).filter((f) => f.endsWith(".stderr")).sort() : [];
for (const f of stderrFiles) {
  const text = readIf(join(runDir, f)).trim();
  if (!text) continue;
  const lines = text.split("\n");
  out.push("", `## ${f} (${lines.length} lines, first 20)`, "", "```", ...lines.slice(0, 20), "```");
}

console.log(out.join("\n"));
