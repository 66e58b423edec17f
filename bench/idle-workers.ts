/**
 * Idle memory of kedge with workers, for bench/run.sh: starts KEDGE with CONFIG (which sets
 * `workers`), waits until PORT listens and every worker has started, then IDLE seconds more, and
 * reads VmRSS and PSS (smaps_rollup) of the supervisor and of each worker. RSS counts the binary's
 * pages each process has mapped, shared or not; PSS divides shared pages among the processes that
 * map them, so the PSS figures add up to the memory the whole kedge uses.
 * Usage: bun bench/idle-workers.ts KEDGE CONFIG PORT WORKERS IDLE
 * Prints one `bench-idle-workers: …` line (kB).
 */
import { readFileSync } from "node:fs";
import { listening as listeningOn } from "./listening.ts";

const [kedge, config, portArg, workersArg, idleArg] = process.argv.slice(2);
const port = Number(portArg);
const listening = () => listeningOn(port);
const workers = Number(workersArg);
const idle = Number(idleArg);
if (!kedge || !config || !(port > 0) || !(workers > 1) || !(idle >= 0)) {
  console.error("usage: bun bench/idle-workers.ts KEDGE CONFIG PORT WORKERS IDLE");
  process.exit(2);
}
const hardLimitMs = 10_000;

const statusKb = (pid: number, key: string) => Number(readFileSync(`/proc/${pid}/status`, "utf8").match(new RegExp(`^${key}:\\s+(\\d+)`, "m"))?.[1] ?? NaN);
const pssKb = (pid: number) => Number(readFileSync(`/proc/${pid}/smaps_rollup`, "utf8").match(/^Pss:\s+(\d+)/m)?.[1] ?? NaN);
const children = (pid: number) => {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
};
const proc = Bun.spawn([kedge, "--config", config], { stdin: "ignore", stdout: "ignore", stderr: "inherit" });
const t0 = performance.now();
// Every worker listens on the port; the supervisor is serving once it has them all.
while ((!listening() || children(proc.pid).length < workers) && proc.exitCode === null && performance.now() - t0 < hardLimitMs) await Bun.sleep(5);
const pids = children(proc.pid);
if (pids.length < workers || !listening()) {
  console.log(`bench-idle-workers: error=not-serving-after-${hardLimitMs}ms workers_seen=${pids.length} exit=${proc.exitCode}`);
} else {
  await Bun.sleep(idle * 1000);
  const wr = pids.map((p) => statusKb(p, "VmRSS"));
  const wp = pids.map(pssKb);
  const sr = statusKb(proc.pid, "VmRSS");
  const sp = pssKb(proc.pid);
  const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
  console.log(
    `bench-idle-workers: workers=${pids.length} settle_s=${idle} supervisor_rss_kb=${sr} supervisor_pss_kb=${sp} ` +
      `worker_rss_kb=${wr.join(",")} worker_pss_kb=${wp.join(",")} max_worker_rss_kb=${Math.max(...wr)} ` +
      `total_rss_kb=${sr + sum(wr)} total_pss_kb=${sp + sum(wp)}`,
  );
}
proc.kill("SIGKILL");
await proc.exited;
process.exit(0);
