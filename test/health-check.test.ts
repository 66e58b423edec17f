import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { AdminService } from "../src/gen/kedge/admin/v1/admin_pb.ts";
import { runAdmin } from "../src/cli/admin.ts";
import { makeTestPki, type TestPki } from "./helpers/certs.ts";
import { debugEndpoints, type DebugEndpoint } from "./helpers/debug-backends.ts";
import { startFlakyUpstream, type FlakyUpstream } from "./helpers/flaky-upstream.ts";
import { ServingStatus, startHealthServer, type HealthServer } from "./helpers/grpc-health.ts";
import { plainServer, startTestKedge, type TestKedge } from "./helpers/kedge.ts";
import { seriesTotal } from "./helpers/prometheus.ts";
import { until } from "./helpers/wait.ts";

// Active health checks: one timer per backend probes every endpoint (HTTP GET of a path over the
// backend's TLS settings, or grpc.health.v1.Health/Check); thresholds move endpoints down and up,
// traffic follows, and a reload that replaces the backend stops its checks.

let pki: TestPki;
let kedge: TestKedge;
let checked: FlakyUpstream;
let other: FlakyUpstream;
let lone: FlakyUpstream;
let secure: FlakyUpstream;
let grpcUp: HealthServer;

const at = (u: { port: number }) => `127.0.0.1:${u.port}`;
const fastChecks = { interval: "0.05s", timeout: "1s", healthy_threshold: 2, unhealthy_threshold: 2 };

function config(httpCheck: object | undefined) {
  return {
    server: { ...plainServer, h2c_port: 0 },
    http: {
      backends: [
        { name: "checked", static: { addresses: [at(checked), at(other)] }, health_check: httpCheck },
        { name: "lone", static: { addresses: [at(lone)] }, health_check: { http: { path: "/healthz" }, ...fastChecks } },
        {
          name: "secure",
          static: { addresses: [at(secure)] },
          security: { ca_files: [pki.caFile], server_name: "localhost" },
          health_check: { http: { path: "/healthz" }, ...fastChecks },
        },
      ],
      routes: ["checked", "lone", "secure"].map((name) => ({ backend_name: name, host_matcher: `${name}.test` })),
    },
    grpc: {
      backends: [{ name: "greeter", static: { addresses: [at(grpcUp)] }, health_check: { grpc: { service: "e2e.helloworld.Greeter" }, ...fastChecks } }],
      routes: [{ backend_name: "greeter" }],
    },
  };
}

beforeAll(async () => {
  pki = makeTestPki();
  [checked, other, lone] = await Promise.all(["checked", "other", "lone"].map((n) => startFlakyUpstream(n)));
  secure = await startFlakyUpstream("secure", { cert: pki.serverCert, key: pki.serverKey });
  grpcUp = await startHealthServer("greeter");
  grpcUp.statuses.set("e2e.helloworld.Greeter", ServingStatus.SERVING);
  kedge = await startTestKedge(config({ http: { path: "/healthz" }, ...fastChecks }));
});

afterAll(async () => {
  await kedge?.shutdown();
  await Promise.all([checked, other, lone, secure].map((u) => u?.close()));
  grpcUp?.kill();
});

async function get(host: string): Promise<{ status: number; upstream: string | null }> {
  const res = await fetch(kedge.url("/"), { headers: { host } });
  await res.arrayBuffer();
  return { status: res.status, upstream: res.headers.get("x-upstream") };
}

async function endpoint(kind: "http" | "grpc", backend: string, u: { port: number }): Promise<DebugEndpoint> {
  return (await debugEndpoints(kedge.ports.admin, kind, backend)).find((e) => e.address === at(u))!;
}

const checkState = async (kind: "http" | "grpc", backend: string, u: { port: number }) => (await endpoint(kind, backend, u)).healthCheck;

describe("active health checks", () => {
  it("marks an endpoint down when its health path fails, sends traffic elsewhere, and brings it back after healthy_threshold passes", async () => {
    await until("the first checks", () => checked.healthChecks >= 2);
    expect(await checkState("http", "checked", checked)).toBe("passing");
    checked.healthStatus = 503;
    await until("the endpoint to fail its checks", async () => (await checkState("http", "checked", checked)) === "failing");
    expect(await endpoint("http", "checked", checked)).toMatchObject({ healthy: false });
    const metrics = await (await fetch(`http://127.0.0.1:${kedge.ports.admin}/metrics`)).text();
    expect(seriesTotal(metrics, "kedge_backend_endpoints", 'backend_name="checked",state="failing_checks"')).toBe(1);
    const served = checked.served;
    for (let i = 0; i < 6; i++) expect(await get("checked.test")).toEqual({ status: 200, upstream: "other" });
    expect(checked.served).toBe(served);

    checked.healthStatus = 200;
    const checksBefore = checked.healthChecks;
    await until("the endpoint to pass its checks again", async () => (await checkState("http", "checked", checked)) === "passing");
    expect(checked.healthChecks - checksBefore).toBeGreaterThanOrEqual(2);
    const upstreams = new Set<string | null>();
    for (let i = 0; i < 4; i++) upstreams.add((await get("checked.test")).upstream);
    expect(upstreams).toEqual(new Set(["checked", "other"]));
  });

  it("keeps sending to a backend whose every endpoint fails its checks, rather than fail outright", async () => {
    lone.healthStatus = 500;
    await until("the lone endpoint to fail its checks", async () => (await checkState("http", "lone", lone)) === "failing");
    expect(kedge.runtime().httpBackends.get("lone")!.hasHealthyEndpoint()).toBe(false);
    const admin = `127.0.0.1:${kedge.ports.admin}`;
    const { backends } = await createClient(AdminService, createConnectTransport({ baseUrl: `http://${admin}`, httpVersion: "1.1" })).listBackends({});
    expect(backends.find((b) => b.name === "lone")!.endpoints[0]).toMatchObject({ healthy: false, ejected: false, healthCheck: "failing" });
    expect(await runAdmin("backends", admin)).toMatch(/^http\s+lone\s.*\sno \(failing checks\)\s/m);
    expect(await get("lone.test")).toEqual({ status: 200, upstream: "lone" });
    lone.healthStatus = 200;
    await until("the lone endpoint to pass again", async () => (await checkState("http", "lone", lone)) === "passing");
    expect(kedge.runtime().httpBackends.get("lone")!.hasHealthyEndpoint()).toBe(true);
  });

  it("checks over the backend's TLS settings", async () => {
    await until("checks to reach the TLS backend", () => secure.healthChecks >= 3);
    expect(await checkState("http", "secure", secure)).toBe("passing");
  });

  it("asks a gRPC backend grpc.health.v1.Health/Check and follows its serving status", async () => {
    await until("the first gRPC checks", () => grpcUp.checks >= 2);
    expect(await checkState("grpc", "greeter", grpcUp)).toBe("passing");
    grpcUp.statuses.set("e2e.helloworld.Greeter", ServingStatus.NOT_SERVING);
    await until("NOT_SERVING to mark it down", async () => (await checkState("grpc", "greeter", grpcUp)) === "failing");
    expect(kedge.runtime().grpcBackends.get("greeter")!.hasHealthyEndpoint()).toBe(false);
    grpcUp.statuses.set("e2e.helloworld.Greeter", ServingStatus.SERVING);
    await until("SERVING to bring it back", async () => (await checkState("grpc", "greeter", grpcUp)) === "passing");
    // A service the server does not know (NOT_FOUND) fails too.
    grpcUp.statuses.delete("e2e.helloworld.Greeter");
    await until("NOT_FOUND to mark it down", async () => (await checkState("grpc", "greeter", grpcUp)) === "failing");
    grpcUp.statuses.set("e2e.helloworld.Greeter", ServingStatus.SERVING);
  });

  it("stops a backend's checks when a reload replaces it", async () => {
    kedge.writeConfig(config(undefined));
    expect(await kedge.reload()).toBeUndefined();
    expect((await endpoint("http", "checked", checked)).healthCheck).toBeUndefined();
    // The unchanged backends keep checking; the replaced one has stopped.
    const lonely = lone.healthChecks;
    await until("the unchanged backend's checks to go on", () => lone.healthChecks >= lonely + 3);
    const after = checked.healthChecks;
    const lonelyNow = lone.healthChecks;
    await until("a few more check rounds", () => lone.healthChecks >= lonelyNow + 3);
    expect(checked.healthChecks).toBe(after);
  });
});
