/**
 * Start-up time and idle memory for bench/run.sh. Runs the kedge binary with CONFIG several times:
 *
 * - idle: one start with nothing sent to it. Waits until PORT is listening (read from
 *   /proc/net/tcp, so not even a connection reaches kedge; the time from spawn is reported as
 *   listen_ms), then IDLE seconds more, and reads VmRSS and VmHWM from /proc/PID/status.
 * - ready: STARTS starts, each timed from just before spawn to the first proxied request answered
 *   `HTTP/1.1 200` on 127.0.0.1:PORT. The poller connects, sends `GET /` and, on a refused or
 *   failed attempt, retries 1 ms later.
 *
 * Each kedge is killed (SIGKILL) and reaped before the next starts. Its stderr goes to ours.
 * Usage: bun bench/startup.ts KEDGE CONFIG PORT STARTS IDLE
 * Prints `bench-idle: …` and `bench-ready: …` lines.
 */
import { readFileSync } from "node:fs";
import net from "node:net";
import { listening as listeningOn } from "./listening.ts";

const [kedge, config, portArg, startsArg, idleArg] = process.argv.slice(2);
const port = Number(portArg);
const listening = () => listeningOn(port);
const starts = Number(startsArg);
const idle = Number(idleArg);
if (!kedge || !config || !(port > 0) || !(starts > 0) || !(idle >= 0)) {
  console.error("usage: bun bench/startup.ts KEDGE CONFIG PORT STARTS IDLE");
  process.exit(2);
}
const hardLimitMs = 10_000; // per start: a kedge that is not ready by then counts as failed
const request = Buffer.from("GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n");

function spawn() {
  return Bun.spawn([kedge, "--config", config], { stdin: "ignore", stdout: "ignore", stderr: "inherit" });
}

async function stop(proc: ReturnType<typeof spawn>) {
  proc.kill("SIGKILL");
  await proc.exited;
}

/** One attempt: true if a GET is answered with a 200 status line. */
function attempt(): Promise<boolean> {
  return new Promise((resolve) => {
    let got = "";
    let settled = false;
    const done = (ok: boolean) => {
      if (settled) return;
      settled = true;
      socket.destroy();
      resolve(ok);
    };
    const socket = net.connect({ port, host: "127.0.0.1" }, () => socket.write(request));
    socket.setTimeout(1000, () => done(false));
    socket.on("data", (chunk: Buffer) => {
      got += chunk.toString("latin1");
      if (got.includes("\r\n")) done(got.startsWith("HTTP/1.1 200"));
    });
    socket.on("error", () => done(false));
    socket.on("close", () => done(false));
  });
}

const statusKb = (pid: number) => {
  const s = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (k: string) => Number(s.match(new RegExp(`^${k}:\\s+(\\d+)`, "m"))?.[1] ?? NaN);
  return { rss: kb("VmRSS"), hwm: kb("VmHWM") };
};

// --- idle RSS ---------------------------------------------------------------------------------
{
  if (listening()) {
    console.log(`bench-idle: error=port-${port}-already-in-use`);
    process.exit(1);
  }
  const proc = spawn();
  const t0 = performance.now();
  while (!listening() && proc.exitCode === null && performance.now() - t0 < hardLimitMs) await Bun.sleep(1);
  const listenMs = performance.now() - t0;
  if (!listening()) {
    console.log(`bench-idle: error=not-listening-after-${hardLimitMs}ms exit=${proc.exitCode}`);
  } else {
    await Bun.sleep(idle * 1000);
    const { rss, hwm } = statusKb(proc.pid);
    console.log(`bench-idle: listen_ms=${listenMs.toFixed(1)} settle_s=${idle} rss_kb=${rss} hwm_kb=${hwm}`);
  }
  await stop(proc);
}

// --- ready time -------------------------------------------------------------------------------
const times: number[] = [];
let failed = 0;
for (let i = 0; i < starts; i++) {
  while (listening()) await Bun.sleep(5); // the previous one's listener must be gone
  const t0 = performance.now();
  const proc = spawn();
  let ready = NaN;
  while (performance.now() - t0 < hardLimitMs && proc.exitCode === null) {
    if (await attempt()) {
      ready = performance.now() - t0;
      break;
    }
    await Bun.sleep(1);
  }
  if (Number.isFinite(ready)) times.push(ready);
  else failed++;
  await stop(proc);
}
const sorted = [...times].sort((a, b) => a - b);
const median = sorted.length
  ? sorted.length % 2
    ? sorted[sorted.length >> 1]
    : (sorted[sorted.length / 2 - 1] + sorted[sorted.length / 2]) / 2
  : NaN;
console.log(
  `bench-ready: starts=${starts} failed=${failed} median_ms=${median.toFixed(1)} ` +
    `min_ms=${(sorted[0] ?? NaN).toFixed(1)} max_ms=${(sorted[sorted.length - 1] ?? NaN).toFixed(1)} ` +
    `all_ms=${times.map((t) => t.toFixed(1)).join(",")}`,
);
process.exit(0);
