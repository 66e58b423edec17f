/**
 * Turns bench/run.sh's raw measurements (raw.tsv + one wrk or h2load output file per run) into
 * Markdown: one section per workload (HTTP/1.1 with wrk, gRPC unary with h2load).
 * Usage: bun bench/report.ts RAW_TSV CLK_TCK META HTTP_LOAD GRPC_LOAD [STDERR_FILE...]
 */
import { existsSync, readFileSync } from "node:fs";
import { basename } from "node:path";

type Load = {
  requests: number;
  rps: number;
  p50ms: number;
  p99ms: number;
  meanMs: number;
  maxMs: number;
  errors: number;
  errorLines: string[];
};

type Run = Load & {
  workload: string;
  target: string;
  round: number;
  cpuUsPerReq: number;
  upstreamCpuUsPerReq: number;
  rssKb: number;
  alive: boolean;
};

const workloads: Record<string, { title: string; labels: Record<string, string>; tool: string }> = {
  http: {
    title: "HTTP/1.1 (wrk)",
    labels: { direct: "direct (upstream nginx)", kedge: "kedge", nginx: "nginx proxy_pass" },
    tool: "wrk",
  },
  grpc: {
    title: "gRPC unary (h2load)",
    labels: { direct: "direct (gRPC upstream)", kedge: "kedge (h2c port)", nginx: "nginx grpc_pass" },
    tool: "h2load",
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
  return {
    requests: num(/(\d+) requests in/),
    rps: num(/Requests\/sec:\s+([\d.]+)/),
    p50ms: pct("50"),
    p99ms: pct("99"),
    meanMs: stat ? toMs(stat[1], stat[2]) : NaN,
    maxMs: stat ? toMs(stat[3], stat[4]) : NaN,
    errors: socketErrors + (num(/Non-2xx or 3xx responses: (\d+)/) || 0),
    errorLines,
  };
}

/**
 * h2load's own summary plus the lines run.sh appends: percentiles from --log-file and the number
 * of DATA bytes one OK call carries. h2load cannot see grpc-status (it is in the trailers), but a
 * non-OK answer from a proxy is trailers-only or lacks the upstream's message, so a DATA total
 * other than 2xx × message size means some calls did not get the upstream's OK answer.
 */
function parseH2load(text: string): Load {
  const ints = (re: RegExp) => text.match(re)?.slice(1).map(Number);
  const req = ints(/requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/);
  const codes = ints(/status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/);
  const dataBytes = Number(text.match(/\((\d+)\) data/)?.[1] ?? NaN);
  const expectedBytes = Number(text.match(/bench: expected response data bytes (\d+)/)?.[1] ?? NaN);
  const lat = ints(/bench: latency us n=(\d+) p50=(\d+) p90=(\d+) p99=(\d+) max=(\d+)/);
  const t = text.match(/time for request:\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)/);
  const errorLines: string[] = [];
  let errors = 0;
  if (req && codes) {
    const [, , done, succeeded, failed, errored, timeout] = req;
    const [, n3xx, n4xx, n5xx] = codes;
    if (failed + errored + timeout > 0) errorLines.push(`h2load: ${failed} failed, ${errored} errored, ${timeout} timeout`);
    // Status codes are counted when headers arrive, so they may include calls still in flight when
    // the duration ended; the other counters are completed calls only.
    if (n3xx + n4xx + n5xx > 0) errorLines.push(`status codes: ${n3xx} 3xx, ${n4xx} 4xx, ${n5xx} 5xx`);
    // failed counts 4xx/5xx and stream errors; 3xx counts as succeeded in h2load.
    errors += failed + timeout + n3xx;
    // Each succeeded call must have brought the upstream's message. Calls cut off at the end of the
    // duration may add DATA bytes but never take any away, so only a shortfall is an error.
    if (Number.isFinite(expectedBytes) && Number.isFinite(dataBytes) && dataBytes < succeeded * expectedBytes) {
      const missing = Math.ceil((succeeded * expectedBytes - dataBytes) / expectedBytes);
      errorLines.push(
        `DATA bytes ${dataBytes} < ${succeeded} succeeded × ${expectedBytes}: at least ${missing} calls without the upstream's message (non-OK grpc-status?)`,
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
const ratio = (a: number, b: number) => (Number.isFinite(a / b) ? `${(a / b).toFixed(2)}×` : "n/a");

const [rawPath, clkTckArg, meta = "", httpLoad = "", grpcLoad = "", ...stderrPaths] = process.argv.slice(2);
if (!rawPath || !clkTckArg) {
  console.error("usage: bun bench/report.ts RAW_TSV CLK_TCK META HTTP_LOAD GRPC_LOAD [STDERR_FILE...]");
  process.exit(2);
}
const loadDesc: Record<string, string> = { http: httpLoad, grpc: grpcLoad };
const usPerTick = 1e6 / Number(clkTckArg);

const runs: Run[] = readFileSync(rawPath, "utf8")
  .trim()
  .split("\n")
  .slice(1)
  .filter(Boolean)
  .map((line) => {
    const [workload, target, round, ticks, upstreamTicks, rssKb, alive, loadFile] = line.split("\t");
    const text = existsSync(loadFile) ? readFileSync(loadFile, "utf8") : "";
    const load = workload === "grpc" ? parseH2load(text) : parseWrk(text);
    return {
      workload,
      target,
      round: Number(round),
      ...load,
      cpuUsPerReq: alive === "yes" ? (Number(ticks) * usPerTick) / load.requests : NaN,
      upstreamCpuUsPerReq: Number(upstreamTicks) >= 0 ? (Number(upstreamTicks) * usPerTick) / load.requests : NaN,
      rssKb: alive === "yes" ? Number(rssKb) : NaN,
      alive: alive === "yes",
    };
  });

const label = (r: Run) => workloads[r.workload]?.labels[r.target] ?? r.target;

const out: string[] = [];
out.push("# kedge benchmark", "", `${new Date().toISOString()} — ${meta}`, "");
out.push("Median over rounds. CPU and RSS are the measured process only: the proxy for kedge and nginx,");
out.push("the upstream itself for direct (nginx worker for HTTP, the Bun gRPC server for gRPC).");

for (const [w, { title, labels, tool }] of Object.entries(workloads)) {
  const wruns = runs.filter((r) => r.workload === w);
  if (wruns.length === 0) continue;
  const targets = Object.keys(labels);
  const summary = new Map(
    targets.map((t) => {
      const rs = wruns.filter((r) => r.target === t);
      return [
        t,
        {
          rps: median(rs.map((r) => r.rps)),
          p50ms: median(rs.map((r) => r.p50ms)),
          p99ms: median(rs.map((r) => r.p99ms)),
          cpuUsPerReq: median(rs.map((r) => r.cpuUsPerReq)),
          // VmHWM only grows, so the largest reading is the peak of the whole run.
          rssMb: Math.max(...rs.map((r) => r.rssKb).filter(Number.isFinite)) / 1024,
          errors: rs.reduce((a, r) => a + r.errors, 0),
          died: rs.some((r) => !r.alive),
        },
      ];
    }),
  );

  out.push("", `## ${title}`, "", loadDesc[w] ? `${loadDesc[w]}.` : "");
  if (w === "grpc") {
    out.push(
      "h2load prints no latency percentiles: p50/p99 are computed from its per-request log (`--log-file`).",
      "errors: failed/errored/timed-out calls, non-2xx, and 2xx calls without the upstream's message.",
    );
  }
  out.push("", "| target | req/s | p50 ms | p99 ms | CPU µs/req | peak RSS MB | errors |");
  out.push("|---|--:|--:|--:|--:|--:|--:|");
  for (const t of targets) {
    const s = summary.get(t)!;
    const errors = `${s.errors}${s.died ? " (process died)" : ""}`;
    out.push(
      `| ${labels[t]} | ${fmtInt(s.rps)} | ${fmt(s.p50ms)} | ${fmt(s.p99ms)} | ${fmt(s.cpuUsPerReq, 1)} | ${fmt(s.rssMb, 1)} | ${errors} |`,
    );
  }

  const k = summary.get("kedge")!;
  out.push("", "| ratio | req/s | p50 | p99 | CPU µs/req |", "|---|--:|--:|--:|--:|");
  for (const [name, base] of [["kedge / direct", "direct"], ["kedge / nginx", "nginx"]] as const) {
    const b = summary.get(base)!;
    out.push(
      `| ${name} | ${ratio(k.rps, b.rps)} | ${ratio(k.p50ms, b.p50ms)} | ${ratio(k.p99ms, b.p99ms)} | ${ratio(k.cpuUsPerReq, b.cpuUsPerReq)} |`,
    );
  }

  out.push("", "<details><summary>every round</summary>", "");
  out.push(
    "| round | target | requests | req/s | p50 ms | p99 ms | mean ms | max ms | CPU µs/req | upstream CPU µs/req | errors |",
    "|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
  );
  for (const r of [...wruns].sort((a, b) => a.round - b.round)) {
    out.push(
      `| ${r.round} | ${label(r)} | ${fmtInt(r.requests)} | ${fmtInt(r.rps)} | ${fmt(r.p50ms)} | ${fmt(r.p99ms)} | ${fmt(r.meanMs)} | ${fmt(r.maxMs)} | ${fmt(r.cpuUsPerReq, 1)} | ${fmt(r.upstreamCpuUsPerReq, 1)} | ${r.errors} |`,
    );
  }
  out.push("", "</details>");

  const failing = wruns.filter((r) => r.errorLines.length > 0 || !r.alive || !Number.isFinite(r.requests));
  if (failing.length > 0) {
    out.push("", `### Errors reported (${title})`, "");
    for (const r of failing) {
      const what = [
        ...r.errorLines,
        ...(r.alive ? [] : ["process died"]),
        ...(Number.isFinite(r.requests) ? [] : [`no ${tool} result`]),
      ];
      out.push(`- round ${r.round} ${label(r)}: ${what.join("; ")}`);
    }
  }
}

for (const path of stderrPaths) {
  const text = existsSync(path) ? readFileSync(path, "utf8").trim() : "";
  if (!text) continue;
  const lines = text.split("\n");
  out.push("", `## ${basename(path)} (${lines.length} lines, first 20)`, "", "```", ...lines.slice(0, 20), "```");
}

console.log(out.join("\n"));
