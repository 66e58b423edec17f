import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import * as grpc from "@grpc/grpc-js";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { AdminService } from "../src/gen/kedge/admin/v1/admin_pb.ts";
import { runAdmin } from "../src/cli/admin.ts";
import { debugEndpoints, type DebugEndpoint } from "./helpers/debug-backends.ts";
import { startFlakyUpstream, type FlakyUpstream } from "./helpers/flaky-upstream.ts";
import { GreeterClient, unary } from "./helpers/grpc.ts";
import { startHealthServer, type HealthServer } from "./helpers/grpc-health.ts";
import { plainServer, startTestKedge, type TestKedge } from "./helpers/kedge.ts";
import { seriesTotal } from "./helpers/prometheus.ts";
import { startUpstream, type Upstream } from "./helpers/upstream.ts";
import { until } from "./helpers/wait.ts";

// Passive health on real traffic: endpoints answering 5xx, UNAVAILABLE, resets or refusing
// connections are ejected after consecutive_failures in a row, come back after their ejection,
// are ejected twice as long the next time, and never more than max_ejection_percent at once.

let kedge: TestKedge;
let flaky: FlakyUpstream;
let steady: FlakyUpstream;
let bad: FlakyUpstream[];
let single: FlakyUpstream;
let dialOk: FlakyUpstream;
let dying: Upstream;
let greeters: HealthServer[];
let client: grpc.Client;

const at = (u: { port: number }) => `127.0.0.1:${u.port}`;

beforeAll(async () => {
  [flaky, steady, single, dialOk, ...bad] = await Promise.all(["flaky", "steady", "single", "dial-ok", "bad-1", "bad-2"].map((n) => startFlakyUpstream(n)));
  dying = await startUpstream("dying");
  greeters = await Promise.all(["g-flaky", "g-steady"].map((n) => startHealthServer(n)));
  const http = {
    flaky: { static: { addresses: [at(flaky), at(steady)] }, outlier_detection: { consecutive_failures: 3, base_ejection_time: "3s" } },
    both_bad: { static: { addresses: bad.map(at) }, outlier_detection: { consecutive_failures: 2, base_ejection_time: "30s" } },
    single: { static: { addresses: [at(single)] }, outlier_detection: { consecutive_failures: 3, base_ejection_time: "30s", max_ejection_percent: 100 } },
    // tcpmux's port: nothing listens there.
    dial: { static: { addresses: ["127.0.0.1:1", at(dialOk)] }, failure_backoff: "0.001s", outlier_detection: { consecutive_failures: 2 } },
    resets: { static: { addresses: [at(dying)] }, outlier_detection: { consecutive_failures: 2, max_ejection_percent: 100 } },
    plain: { static: { addresses: [at(bad[0])] } },
  };
  kedge = await startTestKedge({
    server: { ...plainServer, h2c_port: 0 },
    http: {
      backends: Object.entries(http).map(([name, b]) => ({ name, ...b })),
      routes: Object.keys(http).map((name) => ({ backend_name: name, host_matcher: `${name.replace("_", "-")}.test` })),
    },
    grpc: {
      backends: [{ name: "greeter", static: { addresses: greeters.map(at) }, outlier_detection: { consecutive_failures: 3, base_ejection_time: "30s" } }],
      routes: [{ backend_name: "greeter" }],
    },
  });
  client = new GreeterClient(`127.0.0.1:${kedge.ports.h2c}`, grpc.credentials.createInsecure());
});

afterAll(async () => {
  client?.close();
  await kedge?.shutdown();
  await Promise.all([flaky, steady, single, dialOk, ...bad, dying].map((u) => u?.close()));
  for (const g of greeters ?? []) g.kill();
});

async function get(host: string, path = "/"): Promise<{ status: number; upstream: string | null }> {
  const res = await fetch(kedge.url(path), { headers: { host } });
  await res.arrayBuffer();
  return { status: res.status, upstream: res.headers.get("x-upstream") };
}

const endpoints = (kind: "http" | "grpc", backend: string) => debugEndpoints(kedge.ports.admin, kind, backend);

async function endpoint(kind: "http" | "grpc", backend: string, u: { port: number }): Promise<DebugEndpoint> {
  return (await endpoints(kind, backend)).find((e) => e.address === at(u))!;
}

const metrics = async () => (await fetch(`http://127.0.0.1:${kedge.ports.admin}/metrics`)).text();

describe("outlier detection", () => {
  it("ejects an endpoint answering 503 after consecutive_failures, sends traffic to the other, and ejects it twice as long when it fails again", async () => {
    flaky.status = 503;
    // Round robin: every other request reaches the failing endpoint; its third 503 ejects it.
    for (let i = 0; i < 6; i++) await get("flaky.test");
    expect(await endpoint("http", "flaky", flaky)).toMatchObject({ healthy: false, ejected: true, ejections: 1, ejectionMs: 3000 });
    expect(seriesTotal(await metrics(), "kedge_backend_ejections_total", 'backend_name="flaky"')).toBe(1);
    expect(seriesTotal(await metrics(), "kedge_backend_endpoints", 'backend_name="flaky",state="ejected"')).toBe(1);
    const served = flaky.served;
    for (let i = 0; i < 10; i++) expect(await get("flaky.test")).toEqual({ status: 200, upstream: "steady" });
    expect(flaky.served).toBe(served);

    // The ejection ends: the endpoint gets requests again, fails them, and goes for twice as long.
    await until("the ejection to end", async () => !(await endpoint("http", "flaky", flaky)).ejected, 10_000);
    for (let i = 0; i < 6; i++) await get("flaky.test");
    expect(flaky.served).toBe(served + 3);
    expect(await endpoint("http", "flaky", flaky)).toMatchObject({ ejected: true, ejections: 2, ejectionMs: 6000 });
    expect(seriesTotal(await metrics(), "kedge_backend_ejections_total", 'backend_name="flaky"')).toBe(2);
  });

  it("never ejects more than max_ejection_percent: of two failing endpoints one stays", async () => {
    for (const u of bad) u.status = 502;
    for (let i = 0; i < 12; i++) await get("both-bad.test");
    const view = await endpoints("http", "both_bad");
    expect(view.filter((e) => e.ejected)).toHaveLength(1);
    // The one left takes every request, failing or not.
    const kept = bad.find((u) => view.some((e) => e.address === at(u) && !e.ejected))!;
    const before = kept.served;
    for (let i = 0; i < 4; i++) expect((await get("both-bad.test")).status).toBe(502);
    expect(kept.served).toBe(before + 4);
  });

  it("counts failures in a row only: a success ends the run", async () => {
    const answer = async (status: number) => {
      single.status = status;
      expect((await get("single.test")).status).toBe(status);
    };
    for (const status of [500, 503, 200, 504, 500]) await answer(status);
    expect((await endpoint("http", "single", single)).ejected).toBe(false);
    await answer(500);
    expect((await endpoint("http", "single", single)).ejected).toBe(true);
    // The AdminService and `kedge admin backends` say so too.
    const admin = `127.0.0.1:${kedge.ports.admin}`;
    const { backends } = await createClient(AdminService, createConnectTransport({ baseUrl: `http://${admin}`, httpVersion: "1.1" })).listBackends({});
    expect(backends.find((b) => b.name === "single")!.endpoints[0]).toMatchObject({ healthy: false, ejected: true, ejections: 1, ejectionMs: 30_000, healthCheck: "" });
    expect(await runAdmin("backends", admin)).toMatch(/^http\s+single\s.*\sno \(ejected\)\s/m);
    // Every endpoint out: the balancer still sends to it rather than fail outright.
    single.status = 200;
    expect(await get("single.test")).toEqual({ status: 200, upstream: "single" });
    expect(kedge.runtime().httpBackends.get("single")!.hasHealthyEndpoint()).toBe(false);
  });

  it("counts refused connections", async () => {
    // Requests until the dead endpoint's dial backoff lets it be tried (and fail) twice: each is served by the other.
    await until("the dead endpoint to be ejected", async () => {
      expect((await get("dial.test")).status).toBe(200);
      return (await endpoints("http", "dial")).find((e) => e.address === "127.0.0.1:1")!.ejected;
    });
    expect(dialOk.served).toBeGreaterThanOrEqual(2);
  });

  it("counts connections reset mid-response", async () => {
    for (let i = 0; i < 2; i++) await get("resets.test", "/die").catch(() => undefined);
    expect(await endpoint("http", "resets", dying)).toMatchObject({ ejected: true, ejections: 1 });
  });

  it("ejects nothing on a backend without outlier_detection", async () => {
    bad[0].status = 502;
    for (let i = 0; i < 10; i++) expect((await get("plain.test")).status).toBe(502);
    expect(await endpoint("http", "plain", bad[0])).toMatchObject({ healthy: true, ejected: false });
  });

  it("ejects a gRPC endpoint answering UNAVAILABLE and sends the calls to the other", async () => {
    const [failing, steadyGreeter] = greeters;
    failing.unavailable = true;
    for (let i = 0; i < 6; i++) await unary(client, "sayHello", { name: "x" });
    expect(await endpoint("grpc", "greeter", failing)).toMatchObject({ ejected: true, ejections: 1 });
    const calls = failing.calls;
    for (let i = 0; i < 6; i++) {
      const { response, error } = await unary(client, "sayHello", { name: "x" });
      expect(error).toBeUndefined();
      expect(response.server).toBe(steadyGreeter.name);
    }
    expect(failing.calls).toBe(calls);
  });
});
