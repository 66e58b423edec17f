import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import * as grpc from "@grpc/grpc-js";
import { proxyMetrics } from "../src/observe/metrics.ts";
import { Registry } from "../src/observe/prometheus.ts";
import { curl } from "./helpers/curl.ts";
import { GreeterClient, startGreeter, unary, type GreeterServer } from "./helpers/grpc.ts";
import { plainServer, startTestKedge, type TestKedge } from "./helpers/kedge.ts";
import { startUpstream, type Upstream } from "./helpers/upstream.ts";
import { until } from "./helpers/wait.ts";

// Prometheus /metrics on the admin port: request counters and latency histograms with the route
// label, in-flight gauges, upstream pool gauges, config change counters and process metrics,
// read by a real scrape while real clients talk to real backends through kedge.

let up: Upstream;
let greeter: GreeterServer;
let kedge: TestKedge;
let client: grpc.Client;

const config = (overrides: { downAddress?: string; extraBackend?: boolean; spareGrpc?: boolean } = {}) => ({
  server: { ...plainServer, h2c_port: 0 },
  http: {
    backends: [
      { name: "up", static: { addresses: [`127.0.0.1:${up.port}`] } },
      { name: "down", static: { addresses: [overrides.downAddress ?? "127.0.0.1:1"] } },
      ...(overrides.extraBackend ? [{ name: "extra", static: { addresses: [`127.0.0.1:${up.port}`] } }] : []),
    ],
    routes: [
      { backend_name: "down", host_matcher: "down.test" },
      { backend_name: "up" },
    ],
  },
  grpc: {
    backends: [
      { name: "greeter", static: { addresses: [`127.0.0.1:${greeter.port}`] } },
      ...(overrides.spareGrpc !== false ? [{ name: "spare", static: { addresses: [`127.0.0.1:${greeter.port}`] } }] : []),
    ],
    routes: [{ backend_name: "greeter", service_name_matcher: "e2e.helloworld.Greeter" }],
  },
});

beforeAll(async () => {
  up = await startUpstream("up");
  greeter = await startGreeter("greeter");
  kedge = await startTestKedge(config());
  client = new GreeterClient(`127.0.0.1:${kedge.ports.h2c}`, grpc.credentials.createInsecure());
});

afterAll(async () => {
  client.close();
  await kedge.shutdown();
  await up.close();
  await greeter.close();
});

async function scrape(): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${kedge.ports.admin}/metrics`);
  expect(res.headers.get("content-type")).toStartWith("text/plain; version=0.0.4");
  return res.text();
}

/** The value of one series, its labels written as kedge renders them; 0 when absent. */
async function value(series: string): Promise<number> {
  for (const line of (await scrape()).split("\n")) {
    if (line.startsWith(`${series} `)) return Number(line.slice(series.length + 1));
  }
  return 0;
}

const httpOk = 'kedge_http_requests_total{backend_name="up",code="200",route="1"}';
const grpcMethod = "/e2e.helloworld.Greeter/SayHello";

describe("observe: Prometheus metrics", () => {
  it("counts HTTP requests and their latency by backend, status code and route", async () => {
    const before = await value(httpOk);
    const latencyBefore = await value('kedge_http_request_duration_seconds_count{backend_name="up",code="200",route="1"}');
    for (let i = 0; i < 3; i++) expect((await fetch(kedge.url("/counted"))).status).toBe(200);
    expect((await fetch(kedge.url("/status/503"))).status).toBe(503);
    expect(await value(httpOk)).toBe(before + 3);
    expect(await value('kedge_http_request_duration_seconds_count{backend_name="up",code="200",route="1"}')).toBe(latencyBefore + 3);
    expect(await value('kedge_http_request_duration_seconds_bucket{backend_name="up",code="200",route="1",le="+Inf"}')).toBe(latencyBefore + 3);
    expect(await value('kedge_http_requests_total{backend_name="up",code="503",route="1"}')).toBe(1);
  });

  it("counts kedge's own errors with kedge Go's kedge_proxy_errors_total and the route they matched", async () => {
    const r = await curl(["-H", "host: down.test", kedge.url("/x")]);
    expect(r.status).toBe(502);
    expect(await value('kedge_proxy_errors_total{backend_name="down",type="no-connection-to-all-resolved-addresses"}')).toBe(1);
    expect(await value('kedge_http_requests_total{backend_name="down",code="502",route="0"}')).toBe(1);
  });

  it("counts gRPC calls and their latency by backend, method, grpc-status and route", async () => {
    const before = await value(`kedge_grpc_requests_total{backend_name="greeter",grpc_method="${grpcMethod}",grpc_code="0",route="0"}`);
    for (let i = 0; i < 2; i++) expect((await unary(client, "sayHello", { name: "metrics" })).error).toBeUndefined();
    expect((await unary(client, "sayHello", { name: "fail" })).error?.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(await value(`kedge_grpc_requests_total{backend_name="greeter",grpc_method="${grpcMethod}",grpc_code="0",route="0"}`)).toBe(before + 2);
    expect(await value(`kedge_grpc_requests_total{backend_name="greeter",grpc_method="${grpcMethod}",grpc_code="9",route="0"}`)).toBe(1);
    expect(await value(`kedge_grpc_request_duration_seconds_count{backend_name="greeter",grpc_code="0",grpc_method="${grpcMethod}",route="0"}`)).toBe(before + 2);
  });

  it("shows requests and calls in flight and open client connections", async () => {
    const abort = new AbortController();
    const hanging = fetch(kedge.url("/hang"), { signal: abort.signal }).catch(() => undefined);
    await until("the hanging request to be in flight", async () => (await value('kedge_active_streams{protocol="http"}')) === 1);
    expect(await value("kedge_active_connections")).toBeGreaterThanOrEqual(1);
    abort.abort();
    await hanging;
    await until("the aborted request to end", async () => (await value('kedge_active_streams{protocol="http"}')) === 0);

    const call = (client as any).sleep({ ms: 60_000 }, () => {});
    await until("the sleeping call to be in flight", async () => (await value('kedge_active_streams{protocol="grpc"}')) === 1);
    expect(await value('kedge_grpc_upstream_active_streams{backend_name="greeter"}')).toBe(1);
    call.cancel();
    await until("the cancelled call to end", async () => (await value('kedge_active_streams{protocol="grpc"}')) === 0);
    expect(await value(`kedge_grpc_requests_total{backend_name="greeter",grpc_method="/e2e.helloworld.Greeter/Sleep",grpc_code="cancelled",route="0"}`)).toBe(1);
  });

  it("shows the upstream pools: HTTP/1.1 connections open and idle, HTTP/2 sessions connected, per backend", async () => {
    await (await fetch(kedge.url("/warm"))).arrayBuffer();
    await until("the connection to go back to the pool", async () => (await value('kedge_http_upstream_connections_idle{backend_name="up"}')) >= 1);
    expect(await value('kedge_http_upstream_connections_open{backend_name="up"}')).toBeGreaterThanOrEqual(1);
    expect(await value('kedge_http_upstream_requests_waiting{backend_name="up"}')).toBe(0);
    expect(await value('kedge_http_upstream_connections_open{backend_name="down"}')).toBe(0);
    await until("the gRPC session to connect", async () => (await value('kedge_grpc_upstream_sessions_connected{backend_name="greeter"}')) === 1);
  });

  it("bounds the grpc_method label: past 500 distinct methods, calls count as \"other\"", () => {
    const metrics = proxyMetrics(new Registry(), "kedge");
    for (let i = 0; i < 500; i++) expect(metrics.methodLabel(`/made.Up/M${i}`)).toBe(`/made.Up/M${i}`);
    expect(metrics.methodLabel("/made.Up/M0")).toBe("/made.Up/M0");
    expect(metrics.methodLabel("/made.Up/OneTooMany")).toBe("other");
  });

  it("exports the process metrics every Prometheus client has", async () => {
    const text = await scrape();
    expect(text).toContain("# TYPE process_cpu_seconds_total counter");
    expect(await value("process_cpu_seconds_total")).toBeGreaterThan(0);
    expect(await value("process_resident_memory_bytes")).toBeGreaterThan(1024 * 1024);
    expect(await value("process_open_fds")).toBeGreaterThan(3);
    const start = await value("process_start_time_seconds");
    expect(start).toBeLessThanOrEqual(Date.now() / 1000);
    expect(start).toBeGreaterThan(Date.now() / 1000 - process.uptime() - 60);
  });

  it("counts backend configuration changes (kedge Go's names), reloads by result and the config version", async () => {
    expect(await value('kedge_http_backend_configuration_changes_total{backend_name="up",action="create"}')).toBe(1);
    expect(await value('kedge_grpc_backend_configuration_changes_total{backend_name="greeter",action="create"}')).toBe(1);
    expect(await value("kedge_config_version")).toBe(1);

    kedge.writeConfig(config({ downAddress: "127.0.0.1:2", extraBackend: true, spareGrpc: false }));
    expect(await kedge.reload()).toBeUndefined();
    expect(await value('kedge_config_reloads_total{result="success"}')).toBe(1);
    expect(await value("kedge_config_version")).toBe(2);
    expect(await value('kedge_http_backend_configuration_changes_total{backend_name="down",action="update"}')).toBe(1);
    expect(await value('kedge_http_backend_configuration_changes_total{backend_name="extra",action="create"}')).toBe(1);
    expect(await value('kedge_grpc_backend_configuration_changes_total{backend_name="spare",action="delete"}')).toBe(1);
    // An unchanged backend is carried over, not recreated.
    expect(await value('kedge_http_backend_configuration_changes_total{backend_name="up",action="update"}')).toBe(0);
    expect(await value('kedge_http_backend_configuration_changes_total{backend_name="up",action="create"}')).toBe(1);

    kedge.writeConfig({ ...config(), http: { backends: [], routes: [{ backend_name: "nowhere" }] } });
    expect(await kedge.reload()).toBeDefined();
    expect(await value('kedge_config_reloads_total{result="failure"}')).toBe(1);
    expect(await value("kedge_config_version")).toBe(2);
  });
});
