/**
 * Turns bench/run.sh's raw measurements (raw.tsv + one wrk output file per run) into Markdown.
 * Usage: bun bench/report.ts RAW_TSV CLK_TCK META [KEDGE_STDERR]
 */
import { existsSync, readFileSync } from "node:fs";

type Run = {
  target: string;
  round: number;
  requests: number;
  rps: number;
  p50ms: number;
  p99ms: number;
  cpuUsPerReq: number;
  rssKb: number;
  errors: number;
  errorLines: string[];
  alive: boolean;
};

const labels: Record<string, string> = {
  direct: "direct (upstream nginx)",
  kedge: "kedge",
  nginx: "nginx proxy_pass",
};

// wrk prints durations as e.g. "812.00us", "1.23ms", "2.01s", "1.00m".
function toMs(value: string, unit: string): number {
  const scale: Record<string, number> = { us: 1e-3, ms: 1, s: 1e3, m: 60e3, h: 3600e3 };
  return Number(value) * (scale[unit] ?? NaN);
}

function parseWrk(text: string) {
  const num = (re: RegExp) => Number(text.match(re)?.[1] ?? NaN);
  const pct = (p: string) => {
    const m = text.match(new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s|m|h)\\s*$`, "m"));
    return m ? toMs(m[1], m[2]) : NaN;
  };
  // Only these lines signal failures; wrk omits them when the count is zero.
  const errorLines = text.split("\n").map((l) => l.trim()).filter((l) => /^(Socket errors|Non-2xx)/.test(l));
  const socket = text.match(/Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/);
  const socketErrors = socket ? socket.slice(1).reduce((a, b) => a + Number(b), 0) : 0;
  return {
    requests: num(/(\d+) requests in/),
    rps: num(/Requests\/sec:\s+([\d.]+)/),
    p50ms: pct("50"),
    p99ms: pct("99"),
    errors: socketErrors + (num(/Non-2xx or 3xx responses: (\d+)/) || 0),
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

const [rawPath, clkTckArg, meta = "", stderrPath] = process.argv.slice(2);
if (!rawPath || !clkTckArg) {
  console.error("usage: bun bench/report.ts RAW_TSV CLK_TCK META [KEDGE_STDERR]");
  process.exit(2);
}
const usPerTick = 1e6 / Number(clkTckArg);

const runs: Run[] = readFileSync(rawPath, "utf8")
  .trim()
  .split("\n")
  .slice(1)
  .filter(Boolean)
  .map((line) => {
    const [target, round, ticks, rssKb, alive, wrkFile] = line.split("\t");
    const wrk = parseWrk(existsSync(wrkFile) ? readFileSync(wrkFile, "utf8") : "");
    return {
      target,
      round: Number(round),
      ...wrk,
      cpuUsPerReq: alive === "yes" ? (Number(ticks) * usPerTick) / wrk.requests : NaN,
      rssKb: alive === "yes" ? Number(rssKb) : NaN,
      alive: alive === "yes",
    };
  });

const targets = Object.keys(labels);
const summary = new Map(
  targets.map((t) => {
    const rs = runs.filter((r) => r.target === t);
    return [
      t,
      {
        rounds: rs.length,
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

const out: string[] = [];
out.push("# kedge benchmark", "", `${new Date().toISOString()} — ${meta}`, "");
out.push("Median over rounds. CPU and RSS are the measured process only: the proxy for kedge and nginx");
out.push("proxy_pass, the upstream nginx worker for direct.", "");
out.push("| target | req/s | p50 ms | p99 ms | CPU µs/req | peak RSS MB | errors |");
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
out.push("| round | target | requests | req/s | p50 ms | p99 ms | CPU µs/req | errors |", "|--:|---|--:|--:|--:|--:|--:|--:|");
for (const r of [...runs].sort((a, b) => a.round - b.round)) {
  out.push(
    `| ${r.round} | ${labels[r.target] ?? r.target} | ${fmtInt(r.requests)} | ${fmtInt(r.rps)} | ${fmt(r.p50ms)} | ${fmt(r.p99ms)} | ${fmt(r.cpuUsPerReq, 1)} | ${r.errors} |`,
  );
}
out.push("", "</details>");

const failing = runs.filter((r) => r.errorLines.length > 0 || !r.alive || !Number.isFinite(r.requests));
if (failing.length > 0) {
  out.push("", "## Errors reported", "");
  for (const r of failing) {
    const what = [...r.errorLines, ...(r.alive ? [] : ["process died"]), ...(Number.isFinite(r.requests) ? [] : ["no wrk result"])];
    out.push(`- round ${r.round} ${labels[r.target] ?? r.target}: ${what.join("; ")}`);
  }
}
const stderr = stderrPath && existsSync(stderrPath) ? readFileSync(stderrPath, "utf8").trim() : "";
if (stderr) {
  const lines = stderr.split("\n");
  out.push("", `## kedge stderr (${lines.length} lines, first 20)`, "", "```", ...lines.slice(0, 20), "```");
}

console.log(out.join("\n"));
