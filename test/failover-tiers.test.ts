import { afterEach, describe, expect, it } from "bun:test";
import { create } from "@bufbuild/protobuf";
import { mkdtempSync, renameSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Attempts, maxEndpointAttempts } from "../src/backend/attempts.ts";
import { HttpBackend } from "../src/backend/http-backend.ts";
import { checkHops, hopCount, KedgeHop } from "../src/backend/kedge-tier.ts";
import { HttpBackendSchema } from "../src/gen/kedge/config/v1/backend_pb.ts";
import { setLogLevel } from "../src/observe/log.ts";
import { renderFamilies } from "../src/observe/metric-families.ts";
import { createMetrics } from "../src/observe/metrics.ts";
import { mergeFamilies } from "../src/observe/metrics-merge.ts";
import { Gauge } from "../src/observe/prometheus.ts";

// In-process: how a backend with failover tiers picks, on real backends whose static endpoints are
// never dialled; the hop marker's arithmetic; the active tier gauge merged across workers.

const made: HttpBackend[] = [];

const addresses = (ports: number[]) => ports.map((p) => `127.0.0.1:${p}`);

/** A backend on `own` ports failing over to each list of `tiers` ports in turn. */
function backend(own: number[], ...tiers: number[][]): HttpBackend {
  const b = new HttpBackend(
    create(HttpBackendSchema, {
      name: "tiered",
      resolver: { case: "static", value: { addresses: addresses(own) } },
      failover: tiers.map((ports) => ({ resolver: { case: "static" as const, value: { addresses: addresses(ports) } } })),
    }),
  );
  b.start();
  made.push(b);
  return b;
}

function attemptsAt(b: HttpBackend): Attempts<HttpBackend> {
  const a = new Attempts<HttpBackend>();
  a.backend = b;
  return a;
}

/** Backs off every endpoint of the backend's `tier`, as dial failures would. */
function backOff(b: HttpBackend, tier: number): void {
  for (const e of b.tiers[tier].endpoints) e.markFailed(60_000, 60_000);
}

/** kedge's log lines (JSON on stderr) until stopped. */
function captureLog() {
  const lines: Array<Record<string, unknown>> = [];
  const write = process.stderr.write;
  process.stderr.write = ((chunk: string | Uint8Array) => {
    for (const line of String(chunk).split("\n")) if (line.startsWith("{")) lines.push(JSON.parse(line));
    return true;
  }) as typeof process.stderr.write;
  return {
    /** Restores stderr (again is harmless) and returns the lines. */
    stop() {
      process.stderr.write = write;
      return lines;
    },
  };
}

/** Clean-ups that must run even when a test fails. */
const afterDone: Array<() => void> = [];

afterEach(() => {
  for (const done of afterDone.splice(0)) done();
  for (const b of made.splice(0)) b.close();
});

describe("failover tiers", () => {
  it("sends to the backend's own endpoints while one of them is healthy", () => {
    const b = backend([1001, 1002], [2001]);
    backOff(b, 0);
    b.tiers[0].endpoints[1].markHealthy();
    for (let i = 0; i < 4; i++) expect(attemptsAt(b).next().endpoint.port).toBe(1002);
  });

  it("uses a tier only while every endpoint of the tiers before it is unhealthy", () => {
    const b = backend([1001], [2001], [3001]);
    backOff(b, 0);
    expect(attemptsAt(b).next().endpoint.port).toBe(2001);
    backOff(b, 1);
    expect(attemptsAt(b).next().endpoint.port).toBe(3001);
    b.tiers[0].endpoints[0].markHealthy();
    expect(attemptsAt(b).next().endpoint.port).toBe(1001);
  });

  it("tries the first tier that has endpoints when no tier has a healthy one", () => {
    const b = backend([1001], [2001]);
    backOff(b, 0);
    backOff(b, 1);
    expect(attemptsAt(b).next().endpoint.port).toBe(1001);
  });

  it("moves a request on to the next tier once it could reach none of its tier's endpoints, however many that tier has", () => {
    const b = backend([1001, 1002, 1003, 1004, 1005], [2001]);
    const a = attemptsAt(b);
    const tried: number[] = [];
    for (;;) {
      const { endpoint } = a.next();
      tried.push(endpoint.port);
      if (endpoint.tier === 1 || !a.retry("dial", true)) break;
    }
    expect(tried).toHaveLength(maxEndpointAttempts + 1);
    expect(tried.at(-1)).toBe(2001);
    expect(a.retry("dial", true)).toBe(false);
  });

  it("moves the active tier on answers where new requests go, not on failed probes or late answers, and logs each move", () => {
    setLogLevel("info"); // the level is process-wide: a kedge another test started may have left it at error
    const logged = captureLog();
    afterDone.push(() => logged.stop());
    const b = backend([1001], [2001]);
    const failingOver = attemptsAt(b);
    failingOver.next();
    expect(failingOver.retry("dial", true)).toBe(true);
    expect(failingOver.next().endpoint.tier).toBe(1);
    const late = attemptsAt(b);
    expect(late.next().endpoint.tier).toBe(1);
    failingOver.succeeded();
    expect(b.activeTier).toBe(1);
    // The own endpoint's backoff is over: a request probes it, fails again and is answered on tier 1.
    const own = b.tiers[0].endpoints[0];
    own.badUntil = 0;
    const failedProbe = attemptsAt(b);
    expect(failedProbe.next().endpoint.tier).toBe(0);
    expect(failedProbe.retry("dial", true)).toBe(true);
    expect(failedProbe.next().endpoint.tier).toBe(1);
    failedProbe.succeeded();
    expect(b.activeTier).toBe(1);
    // Over again, and this time the probe is answered; a request still out on tier 1 does not move it back.
    own.badUntil = 0;
    const probe = attemptsAt(b);
    expect(probe.next().endpoint.tier).toBe(0);
    probe.succeeded();
    expect(b.activeTier).toBe(0);
    late.succeeded();
    expect(b.activeTier).toBe(0);
    const changes = logged.stop().filter((l) => l.msg === "backend tier changed");
    expect(changes).toEqual([
      expect.objectContaining({ level: "warn", backend: "tiered", from: 0, to: 1, resolver: "static 127.0.0.1:2001" }),
      expect.objectContaining({ level: "info", backend: "tiered", from: 1, to: 0, resolver: "static 127.0.0.1:1001" }),
    ]);
  });

  it("backs a dead endpoint off once per try, not once per request that was under way", () => {
    const e = backend([1001], [2001]).tiers[0].endpoints[0];
    e.markFailed(1000, 30_000);
    const first = e.badUntil;
    for (let i = 0; i < 20; i++) e.markFailed(1000, 30_000);
    expect(e.badUntil).toBe(first);
    e.badUntil = performance.now() - 1; // that backoff ran out; the next try fails too
    e.markFailed(1000, 30_000);
    expect(e.badUntil - performance.now()).toBeGreaterThan(1500);
    expect(e.badUntil - performance.now()).toBeLessThanOrEqual(2000);
  });

  it("shows every tier's endpoints, with their tier", () => {
    const b = backend([1001], [2001, 2002]);
    expect(b.view().map((e) => [e.address, e.tier])).toEqual([["127.0.0.1:1001", 0], ["127.0.0.1:2001", 1], ["127.0.0.1:2002", 1]]);
    expect(b.tiers.map((t) => t.description)).toEqual(["static 127.0.0.1:1001", "static 127.0.0.1:2001,127.0.0.1:2002"]);
  });
});

describe("the hop marker", () => {
  it("counts the largest number x-kedge-hops lists, anything else as 0", () => {
    expect(hopCount(undefined)).toBe(0);
    expect(hopCount("2")).toBe(2);
    expect(hopCount("1, 3")).toBe(3);
    expect(hopCount(["1", "4"])).toBe(4);
    expect(hopCount("-5")).toBe(0);
    expect(hopCount("many")).toBe(0);
  });

  it("refuses at the limit with 508", () => {
    expect(() => checkHops("1", 2)).not.toThrow();
    expect(() => checkHops(undefined, 1)).not.toThrow();
    expect(() => checkHops("2", 2)).toThrow(expect.objectContaining({ type: "loop-detected", status: 508 }));
  });

  it("sends the hop count one up and the token of a file re-read when it is replaced", () => {
    const dir = mkdtempSync(join(tmpdir(), "kedge-hop-"));
    const file = join(dir, "token");
    writeFileSync(file, "first\n");
    const hop = new KedgeHop("https://kedge.cluster-2.example.com", file);
    expect(hop.fields(undefined, undefined)).toEqual({ "x-kedge-hops": "1", "proxy-authorization": "Bearer first" });
    writeFileSync(join(dir, "next"), "second-token-longer\n");
    renameSync(join(dir, "next"), file);
    expect(hop.fields("1", { "x-extra": "kept" })).toEqual({ "x-extra": "kept", "x-kedge-hops": "2", "proxy-authorization": "Bearer second-token-longer" });
    expect(new KedgeHop("https://k", "").fields("3", undefined)).toEqual({ "x-kedge-hops": "4" });
  });
});

describe("kedge_backend_active_tier across workers", () => {
  it("keeps the furthest tier any worker sends to", () => {
    const worker = (tier: number) => {
      const m = createMetrics();
      (m.activeTier as Gauge).set(["web"], tier);
      return JSON.parse(JSON.stringify(m.registry.families()));
    };
    const text = renderFamilies(mergeFamilies([{ worker: "1", families: worker(1) }, { worker: "2", families: worker(2) }, { worker: "3", families: worker(1) }]));
    expect(text).toContain('kedge_backend_active_tier{backend_name="web"} 2\n');
  });
});
