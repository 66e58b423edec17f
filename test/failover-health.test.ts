import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { runAdmin } from "../src/cli/admin.ts";
import { AdminService } from "../src/gen/kedge/admin/v1/admin_pb.ts";
import { makeTestPki } from "./helpers/certs.ts";
import { debugEndpoints } from "./helpers/debug-backends.ts";
import { cluster2Config, echoHost, greeterService, kedgeTier } from "./helpers/failover-clusters.ts";
import { startFlakyUpstream, type FlakyUpstream } from "./helpers/flaky-upstream.ts";
import { ServingStatus, startHealthServer, type HealthServer } from "./helpers/grpc-health.ts";
import { plainServer, startTestKedge, type TestKedge } from "./helpers/kedge.ts";
import { seriesTotal } from "./helpers/prometheus.ts";
import { startUpstream, type Upstream } from "./helpers/upstream.ts";
import { until } from "./helpers/wait.ts";

// Endpoint health and retries on a backend with failover tiers, with real sockets: active checks
// of every tier (a kedge tier's through cluster-2's kedge, with the hop marker and the token) that
// keep requests off a dead tier-0 endpoint and bring traffic back at the first passing check;
// outlier detection ejecting a whole tier 0; a route's retry sent on to the failover tier.

const token = "failover-health-token";
const check = { http: { path: "/healthz" }, interval: "0.05s", healthy_threshold: 1, unhealthy_threshold: 1 };

let kedge1: TestKedge;
let kedge2: TestKedge;
let cluster2: Upstream;
/** Tier 0 of `checked` (a 30 s dial backoff) and of `probed` (20 ms). */
let checkedOwn: Upstream;
let probedOwn: Upstream;
let flaky: FlakyUpstream;
let single: FlakyUpstream;
let backup: FlakyUpstream;
/** The gRPC backend's own endpoint, and the one behind cluster-2's kedge that its checks reach. */
let grpcOwn: HealthServer;
let grpcRemote: HealthServer;

const at = (u: { port: number }) => `127.0.0.1:${u.port}`;

beforeAll(async () => {
  const pki = makeTestPki();
  const tokenFile = join(mkdtempSync(join(tmpdir(), "kedge-failover-health-")), "token");
  writeFileSync(tokenFile, `${token}\n`);
  [cluster2, checkedOwn, probedOwn] = await Promise.all([startUpstream("cluster-2"), startUpstream("checked-own"), startUpstream("probed-own")]);
  [flaky, single, backup] = await Promise.all([startFlakyUpstream("flaky"), startFlakyUpstream("single"), startFlakyUpstream("backup")]);
  [grpcOwn, grpcRemote] = await Promise.all([startHealthServer("grpc-own"), startHealthServer("grpc-remote")]);
  // A named service: grpc-js under Bun answers an empty request message (service "") UNIMPLEMENTED.
  for (const g of [grpcOwn, grpcRemote]) g.statuses.set(greeterService, ServingStatus.SERVING);
  kedge2 = await startTestKedge({
    ...cluster2Config(pki, tokenFile, cluster2.port, 1),
    grpc: { backends: [{ name: "health", static: { addresses: [at(grpcRemote)] } }], routes: [{ backend_name: "health", service_name_matcher: "grpc.health.v1.Health" }] },
  });
  const toKedge2 = kedgeTier(pki, tokenFile, `https://localhost:${kedge2.ports.tls}`);
  toKedge2.kedge = { ...toKedge2.kedge, health_check_host: echoHost } as typeof toKedge2.kedge;
  const backends = {
    checked: { static: { addresses: [at(checkedOwn)] }, failure_backoff: "30s", health_check: check, failover: [toKedge2] },
    probed: { static: { addresses: [at(probedOwn)] }, failure_backoff: "0.02s", health_check: check, failover: [toKedge2] },
    // No health_check_host: its kedge tier is not checked.
    unchecked: { static: { addresses: [at(probedOwn)] }, health_check: check, failover: [kedgeTier(pki, tokenFile, `https://localhost:${kedge2.ports.tls}`)] },
    ejecting: { static: { addresses: [at(flaky)] }, outlier_detection: { consecutive_failures: 3, base_ejection_time: "0.5s", max_ejection_percent: 100 }, failover: [{ static: { addresses: [at(backup)] } }] },
    retrying: { static: { addresses: [at(single)] }, failover: [{ static: { addresses: [at(backup)] } }] },
  };
  kedge1 = await startTestKedge({
    server: plainServer,
    http: {
      backends: Object.entries(backends).map(([name, b]) => ({ name, ...b })),
      // cluster-2's kedge routes the requests sent on to it (and the checks) by echoHost.
      routes: Object.keys(backends).map((name) => ({
        backend_name: name,
        host_matcher: echoHost,
        path_rules: [`/${name}/*`],
        ...(name === "retrying" ? { retry: { attempts: 2, on: [503] } } : {}),
      })),
    },
    grpc: {
      backends: [{ name: "greeter", static: { addresses: [at(grpcOwn)] }, health_check: { ...check, http: undefined, grpc: { service: greeterService } }, failover: [toKedge2] }],
      routes: [{ backend_name: "greeter" }],
    },
  });
});

afterAll(async () => {
  await Promise.all([kedge1?.shutdown(), kedge2?.shutdown()]);
  await Promise.all([cluster2, checkedOwn, probedOwn, flaky, single, backup].map((u) => u?.close()));
  for (const g of [grpcOwn, grpcRemote]) g?.kill();
});

interface Outcome {
  startedAt: number;
  endedAt: number;
  status: number;
  upstream: string | undefined;
}

/** Two loops sending one request after another to `path` on cluster-1's kedge until stopped. */
function steadyLoad(path: string) {
  const outcomes: Outcome[] = [];
  let running = true;
  const loops = Array.from({ length: 2 }, async () => {
    while (running) {
      const startedAt = performance.now();
      let status = 0;
      let upstream: string | undefined;
      try {
        const res = await fetch(kedge1.url(path), { headers: { host: echoHost } });
        await res.arrayBuffer();
        status = res.status;
        upstream = res.headers.get("x-upstream") ?? undefined;
      } catch {
        status = 0;
      }
      outcomes.push({ startedAt, endedAt: performance.now(), status, upstream });
    }
  });
  return {
    outcomes,
    answeredBy: (name: string, after: number) => outcomes.some((o) => o.upstream === name && o.startedAt > after),
    async stop() {
      running = false;
      await Promise.all(loops);
    },
  };
}

const metrics = () => kedge1.registry.render();
const dialRetries = (backend: string) => seriesTotal(metrics(), "kedge_retries_total", `backend_name="${backend}",reason="connect-failure"`);
const activeTier = (backend: string) => seriesTotal(metrics(), "kedge_backend_active_tier", `backend_name="${backend}"`);
const checkOf = async (backend: string, tier: number, kind: "http" | "grpc" = "http") => (await debugEndpoints(kedge1.ports.admin, kind, backend)).find((e) => (e.tier ?? 0) === tier)?.healthCheck;

/** Kills `own` under load on `backend`, waits for its check to fail, then for `between` while traffic stays on cluster-2, and restarts it. */
async function outage(backend: string, own: Upstream, between: (load: ReturnType<typeof steadyLoad>) => Promise<void>) {
  const load = steadyLoad(`/${backend}/steady`);
  await until(`${own.name} answering`, () => load.outcomes.filter((o) => o.upstream === own.name).length >= 20);
  const port = own.port;
  const killStart = performance.now();
  await own.close();
  const killEnd = performance.now();
  await until("cluster-2 answering", () => load.answeredBy("cluster-2", killEnd));
  await until("the own endpoint failing its checks", async () => (await checkOf(backend, 0)) === "failing");
  // A request that picked the endpoint before its check failed may still be dialling it: the count
  // is taken once requests begun after the check failed have been answered.
  const failingAt = performance.now();
  await until("answers to requests begun since", () => load.outcomes.filter((o) => o.startedAt > failingAt).length >= 5);
  const retriesWhileDown = dialRetries(backend);
  await between(load);
  const restartAt = performance.now();
  const restarted = await startUpstream(own.name, { port });
  await until(`traffic back on ${own.name}`, () => load.answeredBy(own.name, restartAt));
  await load.stop();
  const inFlightAtKill = load.outcomes.filter((o) => o.startedAt < killEnd && o.endedAt > killStart);
  for (const failed of load.outcomes.filter((o) => o.status !== 200)) expect(inFlightAtKill).toContain(failed);
  // No request tried the dead endpoint once its checks failed: its return came from a check.
  expect(dialRetries(backend)).toBe(retriesWhileDown);
  await until("the active tier back at 0", () => activeTier(backend) === 0);
  return restarted;
}

describe("active health checks across tiers", () => {
  it("checks a kedge tier through that kedge, by health_check_host, with the hop marker and the token", async () => {
    const checks = () => cluster2.seen.filter((r) => r.url === "/healthz");
    await until("checks through cluster-2's kedge", () => checks().length >= 4);
    expect(await checkOf("checked", 1)).toBe("passing");
    const seen = checks().at(-1)!;
    expect(seen.headers).toMatchObject({ host: echoHost, "x-kedge-hops": "1", "user-agent": "kedge-health-check" });
    // cluster-2's kedge took the token (it refuses requests without one) and kept it to itself.
    expect(seen.headers["proxy-authorization"]).toBeUndefined();
  });

  it("checks a gRPC backend's kedge tier with grpc.health.v1 through that kedge", async () => {
    await until("gRPC checks through cluster-2's kedge", () => grpcRemote.checks >= 3);
    expect(await checkOf("greeter", 1, "grpc")).toBe("passing");
    grpcRemote.statuses.set(greeterService, ServingStatus.NOT_SERVING);
    await until("the kedge tier failing its checks", async () => (await checkOf("greeter", 1, "grpc")) === "failing");
    expect(await checkOf("greeter", 0, "grpc")).toBe("passing");
    grpcRemote.statuses.set(greeterService, ServingStatus.SERVING);
    await until("the kedge tier passing again", async () => (await checkOf("greeter", 1, "grpc")) === "passing");
  });

  it("leaves a kedge tier without health_check_host unchecked", async () => {
    await until("the own endpoint checked", async () => (await checkOf("unchecked", 0)) === "passing");
    const tier1 = (await debugEndpoints(kedge1.ports.admin, "http", "unchecked")).find((e) => e.tier === 1)!;
    expect(tier1.healthCheck).toBeUndefined();
    expect(tier1.healthy).toBe(true);
  });

  it("brings traffic back to tier 0 at its first passing check, long before its dial backoff ends", async () => {
    checkedOwn = await outage("checked", checkedOwn, async (load) => {
      const now = performance.now();
      await until("more answers from cluster-2", () => load.outcomes.filter((o) => o.startedAt > now && o.upstream === "cluster-2").length >= 20);
      expect(activeTier("checked")).toBe(1);
    });
  });

  it("sends no request to a tier-0 endpoint failing its checks when its dial backoff runs out", async () => {
    probedOwn = await outage("probed", probedOwn, async (load) => {
      // Many 20 ms backoffs, each a request's dial to the dead endpoint had the checks not kept it out.
      const from = load.outcomes.length;
      await until("300 more answers from cluster-2", () => load.outcomes.slice(from).filter((o) => o.upstream === "cluster-2").length >= 300, 15_000);
    });
  });
});

describe("outlier detection across tiers", () => {
  it("ejects a whole tier 0 answering 503 (max_ejection_percent 100), fails over, and comes back after the ejection", async () => {
    flaky.status = 503;
    const get = async () => {
      const res = await fetch(kedge1.url("/ejecting/x"), { headers: { host: echoHost } });
      await res.arrayBuffer();
      return [res.status, res.headers.get("x-upstream")];
    };
    for (let i = 0; i < 3; i++) expect(await get()).toEqual([503, "flaky"]);
    expect(await get()).toEqual([200, "backup"]);
    expect(activeTier("ejecting")).toBe(1);
    const endpoints = await debugEndpoints(kedge1.ports.admin, "http", "ejecting");
    expect(endpoints.map((e) => [e.tier ?? 0, e.ejected, e.healthy])).toEqual([
      [0, true, false],
      [1, false, true],
    ]);
    expect(seriesTotal(metrics(), "kedge_backend_endpoints", 'backend_name="ejecting",state="ejected"')).toBe(1);
    expect(seriesTotal(metrics(), "kedge_backend_endpoints", 'backend_name="ejecting",state="healthy"')).toBe(1);
    flaky.status = 200;
    await until("traffic back on the own endpoint after its ejection", async () => (await get())[1] === "flaky");
    expect(activeTier("ejecting")).toBe(0);
  });
});

describe("retries across tiers", () => {
  it("retries a 503 of the backend's only endpoint in its failover tier, and never a POST", async () => {
    single.status = 503;
    const before = seriesTotal(metrics(), "kedge_retries_total", 'backend_name="retrying",reason="503"');
    const get = await fetch(kedge1.url("/retrying/x"), { headers: { host: echoHost } });
    expect([get.status, get.headers.get("x-upstream")]).toEqual([200, "backup"]);
    expect(seriesTotal(metrics(), "kedge_retries_total", 'backend_name="retrying",reason="503"')).toBe(before + 1);
    // Its own endpoint is healthy: the retry's answer does not move the backend's traffic.
    expect(activeTier("retrying")).toBe(0);
    const post = await fetch(kedge1.url("/retrying/x"), { method: "POST", body: "x", headers: { host: echoHost } });
    expect([post.status, post.headers.get("x-upstream")]).toEqual([503, "single"]);
  });
});

describe("tiers in the admin views", () => {
  it("lists each endpoint's tier, the failover tiers and the active tier in the AdminService and `kedge admin backends`", async () => {
    const admin = `127.0.0.1:${kedge1.ports.admin}`;
    const { backends } = await createClient(AdminService, createConnectTransport({ baseUrl: `http://${admin}`, httpVersion: "1.1" })).listBackends({});
    const retrying = backends.find((b) => b.name === "retrying")!;
    expect(retrying.failover).toEqual([`static ${at(backup)}`]);
    expect(retrying.activeTier).toBe(0);
    expect(retrying.endpoints.map((e) => [e.address, e.tier])).toEqual([
      [at(single), 0],
      [at(backup), 1],
    ]);
    const lines = (await runAdmin("backends", admin)).split("\n");
    expect(lines.some((l) => l.startsWith("http") && l.includes("retrying") && l.includes(`static ${at(backup)} (tier 1)`) && l.includes(`${at(backup)}  `))).toBe(true);
  });
});
