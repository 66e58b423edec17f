/**
 * Failover under load (not part of CI): two kedge binaries on loopback, cluster-1's backends
 * failing over to cluster-2's kedge (mTLS and a bearer token, test/helpers/failover-clusters.ts).
 * A fixed-rate load runs through cluster-1's kedge: HTTP/1.1 requests over CONNS keep-alive
 * connections, or gRPC unary calls on one HTTP/2 connection. After WARM seconds cluster-1's
 * upstream is killed; HOLD seconds after the first answer from cluster-2 it is started again on
 * its port; the load goes on HOLD seconds after the first answer from cluster-1 again. Every
 * phase is bounded: a switch not seen within LIMIT seconds ends the round as failed.
 *
 * Reports per round: requests, failed ones and how many were in flight at the kill, the time from
 * the kill to the first answer from cluster-2 and from the restart to the first answer from
 * cluster-1, p50/p99 latency in each phase, and kedge-1's "backend tier changed" lines.
 *
 * Usage: bun bench/failover.ts       PROTOCOLS="http grpc" RATE=500 CONNS=16 WARM=3 HOLD=5 ROUNDS=3 LIMIT=40 WORKERS=1 CHECK=
 * (WORKERS: cluster-1's kedge's `workers`, a number or auto; each worker fails over on its own.
 * CHECK: a duration, e.g. 0.1s: cluster-1's HTTP backend gets an active health check of every
 * tier at that interval, thresholds 1, its kedge tier checked by echoHost; HTTP only.)
 * Runs dist/kedge (rebuilt if older than src/). Loopback only. Writes bench/results/failover.md.
 */
import * as grpc from "@grpc/grpc-js";
import http from "node:http";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureBinary, listeningPorts, runBinary, waitFor, type Running } from "../test/helpers/binary.ts";
import { makeTestPki } from "../test/helpers/certs.ts";
import { cluster1Config, cluster2Config, echoHost, kedgeTier } from "../test/helpers/failover-clusters.ts";
import { GreeterClient, startGreeter, type GreeterServer } from "../test/helpers/grpc.ts";
import { startUpstream, type Upstream } from "../test/helpers/upstream.ts";

const env = (name: string, fallback: number) => Number(process.env[name] ?? fallback);
const protocols = (process.env.PROTOCOLS ?? "http grpc").split(/\s+/).filter(Boolean) as Array<"http" | "grpc">;
const rate = env("RATE", 500);
const conns = env("CONNS", 16);
const warmS = env("WARM", 3);
const holdS = env("HOLD", 5);
const rounds = env("ROUNDS", 3);
const limitS = env("LIMIT", 40);
const workers = process.env.WORKERS ?? "1";
const checkInterval = process.env.CHECK ?? "";
ensureBinary();

const dir = mkdtempSync(join(tmpdir(), "kedge-bench-failover-"));
const pki = makeTestPki();
const tokenFile = join(dir, "token");
writeFileSync(tokenFile, "bench-failover-token\n");

interface Outcome {
  startedAt: number;
  endedAt: number;
  ok: boolean;
  cluster: string | undefined;
}

async function startKedge(name: string, config: object): Promise<{ run: Running; ports: Record<string, number> }> {
  const file = join(dir, `${name}.json`);
  writeFileSync(file, JSON.stringify(config));
  const run = runBinary(["--config", file], dir);
  let ports: Record<string, number> | undefined;
  await waitFor(() => (ports = listeningPorts(run.stdout())) !== undefined, `${name} to listen`, run);
  return { run, ports: ports! };
}

/** One request or call; resolves with which cluster answered, never throws. */
type Send = () => Promise<{ ok: boolean; cluster: string | undefined }>;

function httpSender(port: number): { send: Send; close(): void } {
  const agent = new http.Agent({ keepAlive: true, maxSockets: conns });
  const send: Send = () =>
    new Promise((resolve) => {
      const req = http.get({ host: "127.0.0.1", port, path: "/bench", headers: { host: echoHost }, agent }, (res) => {
        res.resume();
        res.on("end", () => resolve({ ok: res.statusCode === 200, cluster: res.headers["x-upstream"] as string | undefined }));
        res.on("error", () => resolve({ ok: false, cluster: undefined }));
      });
      req.setTimeout(10_000, () => req.destroy());
      req.on("error", () => resolve({ ok: false, cluster: undefined }));
    });
  return { send, close: () => agent.destroy() };
}

function grpcSender(port: number): { send: Send; close(): void } {
  const client = new GreeterClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const send: Send = () =>
    new Promise((resolve) => {
      (client as any).sayHello({ name: "bench" }, new grpc.Metadata(), { deadline: Date.now() + 10_000 }, (e: grpc.ServiceError | null, r: { server?: string }) =>
        resolve({ ok: !e, cluster: e ? undefined : r.server }),
      );
    });
  return { send, close: () => client.close() };
}

/** `rate` sends a second, in 10 ms ticks, until stopped. */
function fixedRate(send: Send) {
  const outcomes: Outcome[] = [];
  const pending = new Set<Promise<void>>();
  const perTick = rate / 100;
  let owed = 0;
  const tick = setInterval(() => {
    owed += perTick;
    for (; owed >= 1; owed--) {
      const startedAt = performance.now();
      const p: Promise<void> = send().then(({ ok, cluster }) => {
        outcomes.push({ startedAt, endedAt: performance.now(), ok, cluster });
        pending.delete(p);
      });
      pending.add(p);
    }
  }, 10);
  return {
    outcomes,
    async stop() {
      clearInterval(tick);
      await Promise.all(pending);
    },
  };
}

async function until(what: string, check: () => boolean): Promise<void> {
  const end = performance.now() + limitS * 1000;
  while (!check()) {
    if (performance.now() > end) throw new Error(`no ${what} within ${limitS} s`);
    await Bun.sleep(5);
  }
}

function percentile(sorted: number[], p: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

function latencies(outcomes: Outcome[], from: number, to: number): string {
  const ms = outcomes.filter((o) => o.startedAt >= from && o.startedAt < to && o.ok).map((o) => o.endedAt - o.startedAt).sort((a, b) => a - b);
  return `${percentile(ms, 50).toFixed(1)} / ${percentile(ms, 99).toFixed(1)}`;
}

interface RoundResult {
  protocol: string;
  requests: number;
  failed: number;
  inFlightAtKill: number;
  failedOutsideKill: number;
  switchMs: number;
  returnMs: number;
  phases: string[];
  tierLines: string[];
}

async function round(protocol: "http" | "grpc"): Promise<RoundResult> {
  const [http1, http2] = await Promise.all([startUpstream("cluster-1"), startUpstream("cluster-2")]);
  const [grpc1, grpc2] = await Promise.all([startGreeter("cluster-1"), startGreeter("cluster-2")]);
  let up1: Upstream | GreeterServer = protocol === "http" ? http1 : grpc1;
  const two = await startKedge("cluster-2", cluster2Config(pki, tokenFile, http2.port, grpc2.port, { workers: 1 }));
  const tier = kedgeTier(pki, tokenFile, `https://localhost:${two.ports.tls}`);
  const config1 = cluster1Config(http1.port, grpc1.port, tier, { server: { log_level: "info", workers: workers === "auto" ? "auto" : Number(workers) } });
  if (checkInterval) {
    const echo = config1.http.backends[0] as Record<string, unknown>;
    echo.health_check = { http: { path: "/healthz" }, interval: checkInterval, healthy_threshold: 1, unhealthy_threshold: 1 };
    echo.failover = [{ kedge: { ...tier.kedge, health_check_host: echoHost } }];
  }
  const one = await startKedge("cluster-1", config1);
  const sender = protocol === "http" ? httpSender(one.ports.http) : grpcSender(one.ports.h2c);
  try {
    const load = fixedRate(sender.send);
    const o = load.outcomes;
    const t0 = performance.now();
    await Bun.sleep(warmS * 1000);
    const port = up1.port;
    const killStart = performance.now();
    if (protocol === "http") await (up1 as Upstream).close();
    else (up1 as GreeterServer).kill();
    const killEnd = performance.now();
    await until("answer from cluster-2", () => o.some((x) => x.cluster === "cluster-2" && x.startedAt >= killStart));
    const switched = o.find((x) => x.cluster === "cluster-2" && x.startedAt >= killStart)!.endedAt;
    await Bun.sleep(holdS * 1000);
    const restartAt = performance.now();
    up1 = protocol === "http" ? await startUpstream("cluster-1", { port }) : await startGreeter("cluster-1", undefined, { port });
    await until("answer from cluster-1 again", () => o.some((x) => x.cluster === "cluster-1" && x.startedAt >= restartAt));
    const returned = o.find((x) => x.cluster === "cluster-1" && x.startedAt >= restartAt)!.endedAt;
    await Bun.sleep(holdS * 1000);
    const stopAt = performance.now();
    await load.stop();
    const failed = o.filter((x) => !x.ok);
    const inFlight = o.filter((x) => x.startedAt < killEnd && x.endedAt > killStart);
    const tierLines = one.run
      .stderr()
      .split("\n")
      .filter((l) => l.includes("backend tier changed"))
      .map((l) => {
        const j = JSON.parse(l);
        return `${j.worker ? `worker ${j.worker} ` : ""}${j.from} → ${j.to}`;
      });
    return {
      protocol,
      requests: o.length,
      failed: failed.length,
      inFlightAtKill: inFlight.length,
      failedOutsideKill: failed.filter((f) => !inFlight.includes(f)).length,
      switchMs: switched - killEnd,
      returnMs: returned - restartAt,
      phases: [latencies(o, t0, killStart), latencies(o, killEnd, restartAt), latencies(o, returned, stopAt)],
      tierLines,
    };
  } finally {
    sender.close();
    for (const k of [one, two]) k.run.proc.kill("SIGKILL");
    await Promise.all([one.run.proc.exited, two.run.proc.exited]);
    await Promise.all([up1.close(), http2.close(), grpc2.close(), protocol === "http" ? grpc1.close() : http1.close()]);
  }
}

// A round that never ends is a broken harness, not a figure.
setTimeout(() => {
  console.error("bench-failover: hard timeout");
  process.exit(1);
}, protocols.length * rounds * (warmS + 2 * holdS + 3 * limitS + 30) * 1000).unref();

const results: RoundResult[] = [];
for (const protocol of protocols) {
  for (let i = 0; i < rounds; i++) {
    const r = await round(protocol);
    results.push(r);
    console.log(`bench-failover: protocol=${r.protocol} requests=${r.requests} failed=${r.failed} in_flight_at_kill=${r.inFlightAtKill} failed_beyond_in_flight=${r.failedOutsideKill} switch_ms=${r.switchMs.toFixed(0)} return_ms=${r.returnMs.toFixed(0)} tiers="${r.tierLines.join("; ")}"`);
  }
}

const table = [
  `Failover under load: ${rate}/s${protocols.includes("http") ? `, HTTP/1.1 over ${conns} keep-alive connections` : ""}, ${warmS} s before the kill, ${holdS} s on cluster-2, ${holdS} s after the return; cluster-1's kedge with workers: ${workers}${checkInterval ? `, HTTP health checks every ${checkInterval}` : ""}.`,
  "",
  "| protocol | requests | failed | in flight at the kill | failed beyond those | kill → first cluster-2 answer | restart → first cluster-1 answer | p50 / p99 ms before · failed over · after | tier changes logged |",
  "|---|---|---|---|---|---|---|---|---|",
  ...results.map((r) => `| ${r.protocol} | ${r.requests} | ${r.failed} | ${r.inFlightAtKill} | ${r.failedOutsideKill} | ${r.switchMs.toFixed(0)} ms | ${r.returnMs.toFixed(0)} ms | ${r.phases.join(" · ")} | ${r.tierLines.join("; ")} |`),
  "",
].join("\n");
mkdirSync(join(import.meta.dir, "results"), { recursive: true });
writeFileSync(join(import.meta.dir, "results", "failover.md"), table);
console.log(`\n${table}`);
rmSync(dir, { recursive: true, force: true });
process.exit(0);
