import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import * as grpc from "@grpc/grpc-js";
import { issueClientCert, makeTestPki, type ClientCert, type TestPki } from "./helpers/certs.ts";
import { curl } from "./helpers/curl.ts";
import { GreeterClient, startGreeter, unary, type GreeterServer } from "./helpers/grpc.ts";
import { plainServer, startTestKedge, type TestKedge } from "./helpers/kedge.ts";
import { startUpstream, type Upstream } from "./helpers/upstream.ts";
import { captureAccessLines, type AccessLine } from "./helpers/access-lines.ts";

// Access logs: one JSON line per request or call on stdout (captured here from the in-process
// kedge), with who/where/how long, never a credential; sampling and level; x-kedge-info-logs.

const proxyToken = "proxy-token-3f9a1c";
const secrets = [proxyToken, "backend-secret-77d2", "cookie-secret-51ab", "query-secret-9e0c", "wrong-token-c4d8"];

let pki: TestPki;
let alice: ClientCert;
let up: Upstream;
let greeter: GreeterServer;
let logged: TestKedge;
let sampled: TestKedge;
let capture: ReturnType<typeof captureAccessLines>;
const lineFor = (requestId: string) => capture.lineFor(requestId);
const loggedOnly = (requestId: string) => capture.linesOf(requestId);

beforeAll(async () => {
  capture = captureAccessLines();
  pki = makeTestPki();
  alice = issueClientCert(pki, "alice", "/CN=alice/O=Example");
  up = await startUpstream("up");
  greeter = await startGreeter("greeter");
  const grpcConfig = {
    backends: [{ name: "greeter", static: { addresses: [`127.0.0.1:${greeter.port}`] } }],
    routes: [{ backend_name: "greeter", service_name_matcher: "e2e.helloworld.Greeter" }],
  };
  logged = await startTestKedge({
    server: { ...plainServer, http_tls_port: 0, h2c_port: 0, tls_cert_file: pki.serverCertFile, tls_key_file: pki.serverKeyFile, tls_client_ca_files: [pki.caFile] },
    auth: { bearer_token: proxyToken },
    http: {
      backends: [{ name: "up", static: { addresses: [`127.0.0.1:${up.port}`] } }],
      routes: [{ backend_name: "up", host_matcher: "public.test", auth: { public: true } }, { backend_name: "up" }],
    },
    grpc: grpcConfig,
    observability: { access_log: { enabled: true } },
  });
  sampled = await startTestKedge(sampledConfig({ enabled: true, sample_rate: 0 }));
});

function sampledConfig(accessLog: Record<string, unknown>) {
  return {
    server: { ...plainServer, h2c_port: 0 },
    http: {
      backends: [
        { name: "up", static: { addresses: [`127.0.0.1:${up.port}`] } },
        { name: "down", static: { addresses: ["127.0.0.1:1"] } },
      ],
      routes: [{ backend_name: "down", path_rules: ["/down"] }, { backend_name: "up" }],
    },
    grpc: {
      backends: [{ name: "greeter", static: { addresses: [`127.0.0.1:${greeter.port}`] } }],
      routes: [{ backend_name: "greeter", service_name_matcher: "e2e.helloworld.Greeter" }],
    },
    observability: { access_log: accessLog },
  };
}

afterAll(async () => {
  await Promise.all([logged?.shutdown(), sampled?.shutdown()]);
  capture?.stop();
  await up?.close();
  await greeter?.close();
});

function expectNoSecrets(line: AccessLine) {
  for (const s of secrets) expect(line.raw).not.toContain(s);
  expect(line.raw.toLowerCase()).not.toContain("authorization");
  expect(line.raw.toLowerCase()).not.toContain("cookie");
}

const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";

describe("observe: access logs", () => {
  for (const protocol of ["http1.1", "http2"] as const) {
    it(`logs an HTTP request over ${protocol} with identity, route, backend, endpoint, bytes and durations, and no secret`, async () => {
      const requestId = `log-${protocol}`;
      const r = await curl([
        `--${protocol}`, "--cacert", pki.caFile, "--cert", alice.certFile, "--key", alice.keyFile,
        "-H", `proxy-authorization: Bearer ${proxyToken}`,
        "-H", "authorization: Bearer backend-secret-77d2",
        "-H", "cookie: session=cookie-secret-51ab",
        "-H", `x-kedge-request-id: ${requestId}`,
        "-H", `traceparent: 00-${traceId}-00f067aa0ba902b7-01`,
        "--data-binary", "hello",
        logged.url("/some/path?api_key=query-secret-9e0c", "tls"),
      ]);
      expect(r.status).toBe(200);
      const line = await lineFor(requestId);
      expect(line).toMatchObject({
        level: "info",
        protocol: protocol === "http2" ? "h2" : "http/1.1",
        method: "POST",
        host: `localhost:${logged.ports.tls}`,
        path: "/some/path",
        route: "1",
        backend: "up",
        endpoint: `127.0.0.1:${up.port}`,
        status: 200,
        cert_subject: "CN=alice,O=Example",
        token_subject: "static-token",
        trace_id: traceId,
        bytes_in: 5,
        bytes_out: Buffer.byteLength(r.body),
      });
      expect(new Date(line.time as string).toString()).not.toBe("Invalid Date");
      expect(line.client).toMatch(/127\.0\.0\.1$/);
      expect(line.duration_ms).toBeGreaterThanOrEqual(0);
      expect(line.upstream_ttfb_ms).toBeGreaterThanOrEqual(0);
      expect(line.duration_ms as number).toBeGreaterThanOrEqual(line.upstream_ttfb_ms as number);
      expect(line.forced).toBeUndefined();
      expectNoSecrets(line);
    });
  }

  it("logs a refused request with its error type and the caller's wrong token nowhere", async () => {
    const r = await curl(["--cacert", pki.caFile, "-H", "proxy-authorization: Bearer wrong-token-c4d8", "-H", "x-kedge-request-id: log-refused", logged.url("/x", "tls")]);
    expect(r.status).toBe(401);
    const line = await lineFor("log-refused");
    expect(line).toMatchObject({ level: "warn", status: 401, error_type: "unauthorized", backend: "up", bytes_out: 0 });
    expect(line.token_subject).toBeUndefined();
    expect(line.cert_subject).toBeUndefined();
    expect(line.endpoint).toBeUndefined();
    expectNoSecrets(line);
  });

  it("logs a CONNECT tunnel when it closes, with its identity, endpoint and the bytes each way", async () => {
    const target = `up.test:${up.port}`;
    const r = await curl([
      "-p", "-x", `http://127.0.0.1:${logged.ports.http}`,
      "--proxy-header", `Proxy-Authorization: Bearer ${proxyToken}`,
      "--proxy-header", "x-kedge-request-id: log-connect",
      "-H", "authorization: Bearer backend-secret-77d2",
      `http://${target}/through-the-tunnel`,
    ]);
    expect(r.status).toBe(200);
    const line = await lineFor("log-connect");
    expect(line).toMatchObject({ level: "info", protocol: "http/1.1", method: "CONNECT", host: target, status: 200, backend: "up", endpoint: `127.0.0.1:${up.port}`, token_subject: "static-token" });
    // The tunnelled GET one way, its answer the other.
    expect(line.bytes_in).toBeGreaterThan(40);
    expect(line.bytes_out).toBeGreaterThan(r.body.length);
    expectNoSecrets(line);
    const refused = await curl(["-p", "-x", `http://127.0.0.1:${logged.ports.http}`, "--proxy-header", "x-kedge-request-id: log-connect-refused", `http://${target}/`]);
    expect(refused.exitCode).not.toBe(0);
    expect(await lineFor("log-connect-refused")).toMatchObject({ level: "warn", method: "CONNECT", status: 401, error_type: "unauthorized" });
  });

  it("logs gRPC calls with method, grpc-status, identity and bytes both ways", async () => {
    const client = new GreeterClient(`127.0.0.1:${logged.ports.h2c}`, grpc.credentials.createInsecure());
    const md = (id: string) => {
      const m = new grpc.Metadata();
      m.set("proxy-authorization", `Bearer ${proxyToken}`);
      m.set("authorization", "Bearer backend-secret-77d2");
      m.set("x-kedge-request-id", id);
      return m;
    };
    expect((await unary(client, "sayHello", { name: "logs" }, md("log-grpc-ok"))).error).toBeUndefined();
    expect((await unary(client, "sayHello", { name: "fail" }, md("log-grpc-fail"))).error?.code).toBe(grpc.status.FAILED_PRECONDITION);
    client.close();
    const ok = await lineFor("log-grpc-ok");
    expect(ok).toMatchObject({
      level: "info",
      protocol: "grpc",
      host: `127.0.0.1:${logged.ports.h2c}`,
      grpc_method: "/e2e.helloworld.Greeter/SayHello",
      grpc_status: 0,
      route: "0",
      backend: "greeter",
      endpoint: `127.0.0.1:${greeter.port}`,
      token_subject: "static-token",
    });
    expect(ok.bytes_in).toBeGreaterThan(5);
    expect(ok.bytes_out).toBeGreaterThan(5);
    expect(ok.client).toMatch(/127\.0\.0\.1$/);
    expectNoSecrets(ok);
    expect(await lineFor("log-grpc-fail")).toMatchObject({ level: "warn", grpc_status: 9 });
  });

  it("logs a request with x-kedge-info-logs: true even when sampling drops every other one", async () => {
    await (await fetch(sampled.url("/a"), { headers: { "x-kedge-request-id": "sampled-out" } })).text();
    await (await fetch(sampled.url("/b"), { headers: { "x-kedge-request-id": "forced-in", "x-kedge-info-logs": "true" } })).text();
    expect(await lineFor("forced-in")).toMatchObject({ forced: true, status: 200, path: "/b" });
    // Lines are written in order: the earlier, unforced request would be there by now.
    expect(loggedOnly("sampled-out")).toHaveLength(0);

    const client = new GreeterClient(`127.0.0.1:${sampled.ports.h2c}`, grpc.credentials.createInsecure());
    const m = new grpc.Metadata();
    m.set("x-kedge-info-logs", "true");
    m.set("x-kedge-request-id", "forced-grpc");
    expect((await unary(client, "sayHello", { name: "x" }, m)).error).toBeUndefined();
    client.close();
    expect(await lineFor("forced-grpc")).toMatchObject({ forced: true, grpc_status: 0 });
  });

  it("writes only lines at or above the configured level, and applies a reloaded config", async () => {
    sampled.writeConfig(sampledConfig({ enabled: true, level: "error" }));
    expect(await sampled.reload()).toBeUndefined();
    await (await fetch(sampled.url("/fine"), { headers: { "x-kedge-request-id": "level-info" } })).text();
    const down = await fetch(sampled.url("/down"), { headers: { "x-kedge-request-id": "level-error" } });
    expect(down.status).toBe(502);
    await down.text();
    expect(await lineFor("level-error")).toMatchObject({ level: "error", status: 502, error_type: "no-connection-to-all-resolved-addresses", backend: "down" });
    expect(loggedOnly("level-info")).toHaveLength(0);
    await (await fetch(sampled.url("/fine"), { headers: { "x-kedge-request-id": "level-forced", "x-kedge-info-logs": "true" } })).text();
    expect(await lineFor("level-forced")).toMatchObject({ level: "info", forced: true });
  });

  it("refuses an observability config with bad values, naming the field", async () => {
    await expect(startTestKedge(sampledConfig({ enabled: true, sample_rate: 1.5, level: "loud" }))).rejects.toMatchObject({
      problems: ["observability.access_log.sample_rate: must be between 0 and 1, got 1.5", 'observability.access_log.level: must be info, warn or error, got "loud"'],
    });
  });
});
