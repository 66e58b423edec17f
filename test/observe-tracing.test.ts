import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import * as grpc from "@grpc/grpc-js";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { parseTraceparent } from "../src/observe/trace-context.ts";
import { GreeterClient, greeterService, unary } from "./helpers/grpc.ts";
import { plainServer, startTestKedge, type TestKedge } from "./helpers/kedge.ts";
import { json, startUpstream, type Upstream } from "./helpers/upstream.ts";
import { until } from "./helpers/wait.ts";

// W3C traceparent propagation (HTTP and gRPC) and OTLP/HTTP JSON export of kedge's spans, checked
// against a collector started here: the span kedge exports is the parent the backend saw.

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  startTimeUnixNano: string;
  endTimeUnixNano: string;
  attributes: Array<{ key: string; value: { stringValue?: string; intValue?: string } }>;
  status: { code: number };
}

interface Export {
  path: string;
  headers: http.IncomingHttpHeaders;
  body: any;
}

let up: Upstream;
let grpcBackend: grpc.Server;
let grpcPort: number;
let collector: http.Server;
const exports: Export[] = [];
let traced: TestKedge;
let untraced: TestKedge;

/** A gRPC backend that answers SayHello with the traceparent it received. */
async function startTraceEcho(): Promise<void> {
  grpcBackend = new grpc.Server();
  grpcBackend.addService({ sayHello: greeterService.sayHello }, {
    sayHello: (call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => cb(null, { traceparent: call.metadata.get("traceparent")[0] ?? null }),
  });
  grpcPort = await new Promise<number>((resolve, reject) =>
    grpcBackend.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port))),
  );
}

const spans = (): OtlpSpan[] => exports.flatMap((e) => e.body.resourceSpans.flatMap((r: any) => r.scopeSpans.flatMap((s: any) => s.spans)));

async function spanWithId(spanId: string): Promise<OtlpSpan> {
  let found: OtlpSpan | undefined;
  await until(`span ${spanId} at the collector`, () => (found = spans().find((s) => s.spanId === spanId)) !== undefined);
  return found!;
}

const attribute = (span: OtlpSpan, key: string) => {
  const v = span.attributes.find((a) => a.key === key)?.value;
  return v?.stringValue ?? v?.intValue;
};

function routes(upPort: number) {
  return {
    http: { backends: [{ name: "up", static: { addresses: [`127.0.0.1:${upPort}`] } }], routes: [{ backend_name: "up" }] },
    grpc: { backends: [{ name: "echo", static: { addresses: [`127.0.0.1:${grpcPort}`] } }], routes: [{ backend_name: "echo" }] },
  };
}

beforeAll(async () => {
  up = await startUpstream("up");
  await startTraceEcho();
  collector = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      exports.push({ path: req.url ?? "", headers: req.headers, body: JSON.parse(Buffer.concat(chunks).toString()) });
      res.writeHead(200, { "content-type": "application/json" });
      res.end("{}");
    });
  });
  await new Promise<void>((r) => collector.listen(0, "127.0.0.1", r));
  const collectorPort = (collector.address() as AddressInfo).port;
  traced = await startTestKedge({
    server: { ...plainServer, h2c_port: 0 },
    ...routes(up.port),
    observability: {
      tracing: {
        enabled: true,
        otlp: { endpoint: `http://127.0.0.1:${collectorPort}`, headers: { "x-api-key": "collector-key" }, flush_interval: "0.05s", service_name: "edge-test" },
      },
    },
  });
  untraced = await startTestKedge({ server: { ...plainServer, h2c_port: 0 }, ...routes(up.port) });
});

afterAll(async () => {
  await Promise.all([traced?.shutdown(), untraced?.shutdown()]);
  await up?.close();
  grpcBackend?.forceShutdown();
  collector?.close();
});

/** The traceparent the HTTP backend received for a request through `kedge`. */
async function backendSawHttp(kedge: TestKedge, traceparent?: string): Promise<string | undefined> {
  const res = await fetch(kedge.url("/traced"), { headers: traceparent ? { traceparent } : {} });
  return (await json(res)).headers.traceparent;
}

async function backendSawGrpc(kedge: TestKedge, traceparent?: string): Promise<string | undefined> {
  const client = new GreeterClient(`127.0.0.1:${kedge.ports.h2c}`, grpc.credentials.createInsecure());
  const md = new grpc.Metadata();
  if (traceparent) md.set("traceparent", traceparent);
  const r = await unary(client, "sayHello", { name: "t" }, md);
  client.close();
  expect(r.error).toBeUndefined();
  return r.response.traceparent ?? undefined;
}

const callerTrace = "0af7651916cd43dd8448eb211c80319c";
const callerSpan = "b7ad6b7169203331";

describe("observe: W3C trace context", () => {
  it("parses traceparent as the spec says", () => {
    expect(parseTraceparent(`00-${callerTrace}-${callerSpan}-01`)).toEqual({ traceId: callerTrace, parentId: callerSpan, flags: "01", sampled: true });
    expect(parseTraceparent(`00-${callerTrace}-${callerSpan}-00`)?.sampled).toBe(false);
    // A later version may add fields; version 00 may not.
    expect(parseTraceparent(`01-${callerTrace}-${callerSpan}-01-extra`)?.traceId).toBe(callerTrace);
    for (const invalid of [
      `00-${callerTrace}-${callerSpan}-01-extra`,
      `00-${callerTrace.toUpperCase()}-${callerSpan}-01`,
      `00-${"0".repeat(32)}-${callerSpan}-01`,
      `00-${callerTrace}-${"0".repeat(16)}-01`,
      `ff-${callerTrace}-${callerSpan}-01`,
      `00-${callerTrace.slice(1)}-${callerSpan}-01`,
      "garbage",
    ]) {
      expect(parseTraceparent(invalid)).toBeUndefined();
    }
    expect(parseTraceparent([`00-${callerTrace}-${callerSpan}-01`, `00-${callerTrace}-${callerSpan}-01`])).toBeUndefined();
  });

  it("passes the caller's trace id to an HTTP backend with kedge's span as the parent, and exports that span", async () => {
    const seen = parseTraceparent(await backendSawHttp(traced, `00-${callerTrace}-${callerSpan}-01`));
    expect(seen).toBeDefined();
    expect(seen!.traceId).toBe(callerTrace);
    expect(seen!.parentId).not.toBe(callerSpan);
    expect(seen!.flags).toBe("01");

    const span = await spanWithId(seen!.parentId);
    expect(span).toMatchObject({ traceId: callerTrace, parentSpanId: callerSpan, kind: 2, name: "GET up", status: { code: 0 } });
    expect(attribute(span, "http.method")).toBe("GET");
    expect(attribute(span, "http.route")).toBe("0");
    expect(attribute(span, "http.status_code")).toBe("200");
    expect(attribute(span, "kedge.backend")).toBe("up");
    expect(attribute(span, "kedge.endpoint")).toBe(`127.0.0.1:${up.port}`);
    expect(BigInt(span.endTimeUnixNano)).toBeGreaterThanOrEqual(BigInt(span.startTimeUnixNano));
    expect(Number(BigInt(span.startTimeUnixNano) / 1_000_000n)).toBeLessThanOrEqual(Date.now());

    const exp = exports.find((e) => JSON.stringify(e.body).includes(seen!.parentId))!;
    expect(exp.path).toBe("/v1/traces");
    expect(exp.headers["content-type"]).toBe("application/json");
    expect(exp.headers["x-api-key"]).toBe("collector-key");
    const resource = exp.body.resourceSpans[0].resource.attributes;
    expect(resource).toContainEqual({ key: "service.name", value: { stringValue: "edge-test" } });
  });

  it("starts a new trace when the caller sent no traceparent or an invalid one", async () => {
    for (const incoming of [undefined, `00-${callerTrace.toUpperCase()}-${callerSpan}-01`, `00-${"0".repeat(32)}-${callerSpan}-01`, "nonsense"]) {
      const seen = parseTraceparent(await backendSawHttp(traced, incoming));
      expect(seen).toBeDefined();
      expect(seen!.traceId).not.toBe(callerTrace.toUpperCase());
      expect(seen!.traceId).not.toBe("0".repeat(32));
      expect(seen!.sampled).toBe(true);
      const span = await spanWithId(seen!.parentId);
      expect(span.traceId).toBe(seen!.traceId);
      expect(span.parentSpanId).toBeUndefined();
    }
  });

  it("keeps an unsampled caller's flag and exports no span for it", async () => {
    const unsampled = parseTraceparent(await backendSawHttp(traced, `00-${"1".repeat(32)}-${callerSpan}-00`));
    expect(unsampled).toMatchObject({ traceId: "1".repeat(32), flags: "00", sampled: false });
    expect(unsampled!.parentId).not.toBe(callerSpan);
    // Spans leave in order: once a later sampled one arrived, the unsampled one would have too.
    const later = parseTraceparent(await backendSawHttp(traced, `00-${"2".repeat(32)}-${callerSpan}-01`));
    await spanWithId(later!.parentId);
    expect(spans().filter((s) => s.traceId === "1".repeat(32))).toHaveLength(0);
  });

  it("passes the caller's trace id to a gRPC backend with kedge's span as the parent, and exports that span", async () => {
    const seen = parseTraceparent(await backendSawGrpc(traced, `00-${callerTrace}-${callerSpan}-01`));
    expect(seen).toBeDefined();
    expect(seen!.traceId).toBe(callerTrace);
    expect(seen!.parentId).not.toBe(callerSpan);
    const span = await spanWithId(seen!.parentId);
    expect(span).toMatchObject({ traceId: callerTrace, parentSpanId: callerSpan, kind: 2, name: "e2e.helloworld.Greeter/SayHello" });
    expect(attribute(span, "rpc.system")).toBe("grpc");
    expect(attribute(span, "rpc.service")).toBe("e2e.helloworld.Greeter");
    expect(attribute(span, "rpc.method")).toBe("SayHello");
    expect(attribute(span, "rpc.grpc.status_code")).toBe("0");
    expect(attribute(span, "kedge.backend")).toBe("echo");

    const fresh = parseTraceparent(await backendSawGrpc(traced));
    expect(fresh).toBeDefined();
    expect((await spanWithId(fresh!.parentId)).traceId).toBe(fresh!.traceId);
  });

  it("with tracing off, passes traceparent through untouched (HTTP and gRPC) and adds none", async () => {
    const incoming = `00-${callerTrace}-${callerSpan}-01`;
    expect(await backendSawHttp(untraced, incoming)).toBe(incoming);
    expect(await backendSawHttp(untraced, "nonsense")).toBe("nonsense");
    expect(await backendSawHttp(untraced)).toBeUndefined();
    expect(await backendSawGrpc(untraced, incoming)).toBe(incoming);
    expect(await backendSawGrpc(untraced)).toBeUndefined();
  });
});

describe("observe: OTLP export limits", () => {
  async function metric(kedge: TestKedge, series: string): Promise<number> {
    const text = await (await fetch(`http://127.0.0.1:${kedge.ports.admin}/metrics`)).text();
    const line = text.split("\n").find((l) => l.startsWith(`${series} `));
    return line ? Number(line.slice(series.length + 1)) : 0;
  }

  it("drops spans beyond the queue bound and counts them", async () => {
    const collectorPort = (collector.address() as AddressInfo).port;
    const kedge = await startTestKedge({
      server: plainServer,
      ...routes(up.port),
      // No flush until shutdown: the queue holds two spans, the rest are dropped.
      observability: { tracing: { enabled: true, otlp: { endpoint: `http://127.0.0.1:${collectorPort}/v1/traces`, flush_interval: "3600s", max_queue_size: 2 } } },
    });
    const seen: string[] = [];
    for (let i = 0; i < 5; i++) seen.push(parseTraceparent(await backendSawHttp(kedge))!.traceId);
    expect(await metric(kedge, 'kedge_trace_spans_dropped_total{reason="queue_full"}')).toBe(3);
    await kedge.shutdown(); // flushes what was queued
    const exported = spans().filter((s) => seen.includes(s.traceId));
    expect(exported.map((s) => s.traceId)).toEqual(seen.slice(0, 2));
  });

  it("counts spans a collector refused as dropped, and the ones it took as exported", async () => {
    const kedge = await startTestKedge({
      server: plainServer,
      ...routes(up.port),
      observability: { tracing: { enabled: true, otlp: { endpoint: "http://127.0.0.1:1/v1/traces", flush_interval: "0.05s" } } },
    });
    await backendSawHttp(kedge);
    await until("the failed export to be counted", async () => (await metric(kedge, 'kedge_trace_spans_dropped_total{reason="export_failed"}')) === 1);
    expect(await metric(kedge, "kedge_trace_spans_exported_total")).toBe(0);
    await kedge.shutdown();
    expect(await metric(traced, "kedge_trace_spans_exported_total")).toBeGreaterThan(0);
  });

  it("refuses an OTLP endpoint that is not an http(s) URL", async () => {
    await expect(startTestKedge({ server: plainServer, observability: { tracing: { enabled: true, sample_rate: 2, otlp: { endpoint: "collector:4318" } } } })).rejects.toMatchObject({
      problems: ["observability.tracing.sample_rate: must be between 0 and 1, got 2", 'observability.tracing.otlp.endpoint: must be an http:// or https:// URL, got "collector:4318"'],
    });
  });
});
