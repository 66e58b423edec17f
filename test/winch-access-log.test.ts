import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import * as grpc from "@grpc/grpc-js";
import { mkdtempSync, readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs, winchServerOverrides } from "../src/cli/args.ts";
import { loadWinchConfig } from "../src/winch/config.ts";
import { startWinch, type Winch } from "../src/winch/winch.ts";
import { makeTestPki, type TestPki } from "./helpers/certs.ts";
import { curl } from "./helpers/curl.ts";
import { GreeterClient, startGreeter, unary, type GreeterServer } from "./helpers/grpc.ts";
import { startTestKedge, type TestKedge } from "./helpers/kedge.ts";
import { startUpstream, type Upstream } from "./helpers/upstream.ts";
import { captureAccessLines } from "./helpers/access-lines.ts";
import { until } from "./helpers/wait.ts";

// winch's access log: one JSON line per request, CONNECT tunnel and gRPC call on stdout (captured
// here from the in-process winch), naming what the client asked for, the route, the kedge and the
// auth sources used (by name, never their tokens), and winch's error type when it refused.

const dir = mkdtempSync(join(tmpdir(), "winch-access-log-"));
const proxyToken = "kedge-proxy-secret-5be1";
const backendToken = "backend-secret-a93f";
const clientOwn = "client-own-secret-17c4";
let pki: TestPki;
let app: Upstream;
let greeter: GreeterServer;
let kedge: TestKedge;
let winch: Winch;
let capture: ReturnType<typeof captureAccessLines>;
const lineFor = (requestId: string) => capture.lineFor(requestId);

function winchConfig(server: Record<string, unknown> = {}) {
  const tls = `https://localhost:${kedge.ports.tls}`;
  return loadWinchConfig({
    embedded: {
      server: { http_port: 0, grpc_port: 0, ca_files: [pki.caFile], unknown_hosts: "REFUSE", ...server },
      routes: [
        { direct: { key: "app.internal.example.com", url: tls }, backend_auth: "backend", proxy_auth: "kedge" },
        { regexp: { exp: "^(?P<svc>[a-z]+)[.]grpc[.]example$", url: `https://localhost:${kedge.ports.grpc_tls}` }, backend_auth: "backend", proxy_auth: "kedge", protocol: "GRPC" },
        { direct: { key: "tunnel.internal.example.com:8443", url: tls }, backend_auth: "backend", proxy_auth: "kedge" },
      ],
      auth_sources: [
        { name: "kedge", token: { token: proxyToken } },
        { name: "backend", token: { token: backendToken } },
      ],
    },
  });
}

beforeAll(async () => {
  capture = captureAccessLines();
  pki = makeTestPki();
  app = await startUpstream("app");
  greeter = await startGreeter("greeter");
  kedge = await startTestKedge({
    server: { bind_address: "127.0.0.1", http_tls_port: 0, grpc_tls_port: 0, admin_port: 0, log_level: "error", tls_cert_file: pki.serverCertFile, tls_key_file: pki.serverKeyFile },
    auth: { bearer_token: proxyToken },
    http: {
      backends: [{ name: "app", static: { addresses: [`127.0.0.1:${app.port}`] } }],
      routes: [
        { backend_name: "app", host_matcher: "app.internal.example.com" },
        { backend_name: "app", host_matcher: "tunnel.internal.example.com", port_matcher: 8443 },
      ],
    },
    grpc: {
      backends: [{ name: "greeter", static: { addresses: [`127.0.0.1:${greeter.port}`] } }],
      routes: [{ backend_name: "greeter", service_name_matcher: "e2e.helloworld.Greeter" }],
    },
  });
  winch = await startWinch(winchConfig(), { home: dir });
});

afterAll(async () => {
  capture?.stop();
  await winch?.close();
  await kedge?.shutdown();
  await app?.close();
  await greeter?.close();
});

const proxy = () => `http://127.0.0.1:${winch.ports.http}`;
const kedgeOrigin = () => `https://localhost:${kedge.ports.tls}`;

async function sayHello(authority: string, metadata = new grpc.Metadata()) {
  const client = new GreeterClient(`127.0.0.1:${winch.ports.grpc}`, grpc.credentials.createInsecure(), { "grpc.default_authority": authority });
  try {
    return await unary(client, "sayHello", { name: "log" }, metadata);
  } finally {
    client.close();
  }
}

describe("winch's access log", () => {
  it("HTTP: one line with the host asked for, the route, the kedge, the auth source names, status, duration and bytes", async () => {
    const r = await curl(["-x", proxy(), "-H", "x-kedge-request-id: log-http-1", "-H", `Authorization: Bearer ${clientOwn}`, `http://app.internal.example.com/hello?token=${clientOwn}`]);
    expect(r.status).toBe(200);
    const line = await lineFor("log-http-1");
    expect(line).toMatchObject({
      msg: "access",
      protocol: "http",
      method: "GET",
      host: "app.internal.example.com",
      path: "/hello",
      route: "0",
      route_key: "app.internal.example.com",
      kedge: kedgeOrigin(),
      backend_auth: "backend",
      proxy_auth: "kedge",
      status: 200,
    });
    expect(line.time).toEqual(expect.any(String));
    expect(line.duration_ms).toEqual(expect.any(Number));
    expect(line.bytes_out as number).toBeGreaterThan(0);
    expect(line.error_type).toBeUndefined();
  });

  it("CONNECT: one line when the tunnel closes, with its bytes; backend_auth is not named, since it cannot enter a tunnel", async () => {
    const r = await curl(["-p", "-x", proxy(), "--proxy-header", "x-kedge-request-id: log-connect-1", "http://tunnel.internal.example.com:8443/inside"]);
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body).url).toBe("/inside");
    const line = await lineFor("log-connect-1");
    expect(line).toMatchObject({ protocol: "connect", method: "CONNECT", host: "tunnel.internal.example.com:8443", route: "2", route_key: "tunnel.internal.example.com:8443", kedge: kedgeOrigin(), proxy_auth: "kedge", status: 200 });
    expect(line.backend_auth).toBeUndefined();
    expect(line.bytes_in as number).toBeGreaterThan(0);
    expect(line.bytes_out as number).toBeGreaterThan(0);
    expect(capture.linesOf("log-connect-1")).toHaveLength(1);
  });

  it("gRPC: one line with the call's method and grpc-status, the regexp that matched, and the request id winch made", async () => {
    const r = await sayHello("hello.grpc.example:443");
    expect(r.error).toBeUndefined();
    const requestId = r.response.requestId as string;
    expect(requestId).toMatch(/^winch-/);
    const line = await lineFor(requestId);
    expect(line).toMatchObject({
      protocol: "grpc",
      grpc_method: "/e2e.helloworld.Greeter/SayHello",
      grpc_status: 0,
      host: "hello.grpc.example:443",
      route: "1",
      route_exp: "^(?P<svc>[a-z]+)[.]grpc[.]example$",
      kedge: `https://localhost:${kedge.ports.grpc_tls}`,
      backend_auth: "backend",
      proxy_auth: "kedge",
    });
    expect(line.bytes_out as number).toBeGreaterThan(0);
  });

  it("a refused unknown host: a line with winch's error type and no route or kedge", async () => {
    const r = await curl(["-x", proxy(), "-H", "x-kedge-request-id: log-refused-1", "http://nowhere.example/"]);
    expect(r.status).toBe(502);
    expect(r.headers["x-winch-error-type"]).toBe("unknown-host");
    const line = await lineFor("log-refused-1");
    expect(line).toMatchObject({ protocol: "http", host: "nowhere.example", route: "none", status: 502, error_type: "unknown-host" });
    expect(line.kedge).toBeUndefined();
    const tunnel = await curl(["-p", "-x", proxy(), "--proxy-header", "x-kedge-request-id: log-refused-2", "http://nowhere.example:8443/"]);
    expect(tunnel.exitCode).not.toBe(0);
    expect(await lineFor("log-refused-2")).toMatchObject({ protocol: "connect", host: "nowhere.example:8443", status: 502, error_type: "unknown-host" });
    const metadata = new grpc.Metadata();
    metadata.set("x-kedge-request-id", "log-refused-3");
    const call = await sayHello("nowhere.example:443", metadata);
    expect(call.error?.code).toBe(grpc.status.UNIMPLEMENTED);
    expect(await lineFor("log-refused-3")).toMatchObject({ protocol: "grpc", host: "nowhere.example:443", grpc_status: 12, error_type: "unknown-host" });
  });

  it("lines of concurrent requests stay whole, one per request", async () => {
    const ids = Array.from({ length: 30 }, (_, i) => `log-burst-${i}`);
    const answers = await Promise.all(ids.map((id) => curl(["-x", proxy(), "-H", `x-kedge-request-id: ${id}`, "http://app.internal.example.com/burst"])));
    expect(answers.every((a) => a.status === 200)).toBe(true);
    await until("every burst line", () => ids.every((id) => capture.lines().some((l) => l.request_id === id)));
    for (const id of ids) expect(capture.linesOf(id)).toHaveLength(1);
  });

  it("never writes a token, an injected header value or the client's own credentials", () => {
    expect(capture.text().length).toBeGreaterThan(0);
    for (const secret of [proxyToken, backendToken, clientOwn]) expect(capture.text()).not.toContain(secret);
  });
});

describe("server.access_log", () => {
  it("enabled: false writes no lines; path appends them to a 0600 file instead of stdout; both on reload", async () => {
    expect(winch.reload(winchConfig({ access_log: { enabled: false } }))).toBeUndefined();
    const off = await curl(["-x", proxy(), "-H", "x-kedge-request-id: log-off-1", "http://app.internal.example.com/"]);
    expect(off.status).toBe(200);
    const file = join(dir, "access.log");
    expect(winch.reload(winchConfig({ access_log: { path: file } }))).toBeUndefined();
    const on = await curl(["-x", proxy(), "-H", "x-kedge-request-id: log-file-1", "http://app.internal.example.com/"]);
    expect(on.status).toBe(200);
    await until("the line in the file", () => {
      try {
        return readFileSync(file, "utf8").includes('"request_id":"log-file-1"');
      } catch {
        return false;
      }
    });
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(file, "utf8").trim().split("\n").at(-1)!)).toMatchObject({ request_id: "log-file-1", route: "0", status: 200 });
    expect(capture.text()).not.toContain("log-off-1");
    expect(capture.text()).not.toContain("log-file-1");
    expect(winch.reload(winchConfig())).toBeUndefined();
  });

  it("refuses a path whose directory does not exist", () => {
    expect(() => winchConfig({ access_log: { path: join(dir, "missing", "access.log") } })).toThrow("server.access_log.path");
  });

  it("--access_log=false turns it off from the command line", () => {
    expect(winchServerOverrides(parseArgs(["winch", "--access_log=false"]).flags)).toEqual({ access_log: { enabled: false } });
    expect(winchServerOverrides(parseArgs(["winch", "--access-log"]).flags)).toEqual({ access_log: { enabled: true } });
  });
});
