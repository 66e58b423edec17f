import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import * as grpc from "@grpc/grpc-js";
import { captureAccessLines } from "./helpers/access-lines.ts";
import { issueClientCert, makeTestPki, type ClientCert, type TestPki } from "./helpers/certs.ts";
import { curl } from "./helpers/curl.ts";
import { GreeterClient, startGreeter, unary, type GreeterServer } from "./helpers/grpc.ts";
import { plainServer, startTestKedge, type TestKedge } from "./helpers/kedge.ts";
import { startTestIssuer, type TestIssuer } from "./helpers/oidc-issuer.ts";
import { promtool, seriesTotal } from "./helpers/prometheus.ts";
import { startUpstream, type Upstream } from "./helpers/upstream.ts";

// Rate limits through a real kedge: the bursts make refusals deterministic (0.001 requests per
// second refills one token in 1000 s, so the request after the burst is always refused).

let pki: TestPki;
let alice: ClientCert, bob: ClientCert;
let upstream: Upstream;
let greeter: GreeterServer;
let kedge: TestKedge;
let config: Record<string, unknown>;
const access = captureAccessLines();

const slow = (burst: number, key?: string) => ({ requests_per_second: 0.001, burst, ...(key ? { key } : {}) });
const route = (host: string, rateLimit?: object) => ({ backend_name: "app", host_matcher: host, ...(rateLimit ? { rate_limit: rateLimit } : {}) });

beforeAll(async () => {
  pki = makeTestPki();
  alice = issueClientCert(pki, "alice", "/CN=alice/O=Example");
  bob = issueClientCert(pki, "bob", "/CN=bob/O=Example");
  upstream = await startUpstream("app");
  greeter = await startGreeter("greeter");
  config = {
    server: { ...plainServer, h2c_port: 0, http_tls_port: 0, tls_cert_file: pki.serverCertFile, tls_key_file: pki.serverKeyFile, tls_client_ca_files: [pki.caFile] },
    observability: { access_log: { enabled: true } },
    http: {
      backends: [{ name: "app", static: { addresses: [`127.0.0.1:${upstream.port}`] } }],
      routes: [
        route("h1.test", slow(3)),
        route("h2.test", slow(2)),
        route("shared.test", slow(2)),
        route("address.test", slow(2, "CLIENT_ADDRESS")),
        route("identity.test", slow(2, "IDENTITY")),
        route("reload.test", slow(1)),
        route("free.test"),
      ],
    },
    grpc: {
      backends: [{ name: "greeter", static: { addresses: [`127.0.0.1:${greeter.port}`] } }],
      routes: [{ backend_name: "greeter", authority_host_matcher: "limited.test", rate_limit: slow(2) }],
    },
  };
  kedge = await startTestKedge(config);
});

afterAll(async () => {
  access.stop();
  await kedge?.shutdown();
  await upstream?.close();
  greeter?.kill();
});

const seen = (path: string) => upstream.seen.filter((r) => r.url === path).length;

function viaTls(host: string, path: string, cert?: ClientCert, extra: string[] = []) {
  return curl(["--cacert", pki.caFile, ...(cert ? ["--cert", cert.certFile, "--key", cert.keyFile] : []), "-H", `host: ${host}`, ...extra, `https://localhost:${kedge.ports.tls}${path}`]);
}

describe("rate limits", () => {
  it("answers 429 with Retry-After and rate-limited past the burst, and the backend never sees it (HTTP/1.1)", async () => {
    for (let i = 0; i < 3; i++) expect((await curl(["-H", "host: h1.test", kedge.url("/h1")])).status).toBe(200);
    const refused = await curl(["-H", "host: h1.test", "--data-binary", "a body the backend must not get", kedge.url("/h1")]);
    expect(refused.status).toBe(429);
    expect(refused.headers["x-kedge-error-type"]).toBe("rate-limited");
    expect(refused.headers["x-kedge-error"]).toContain("the route's rate_limit allows 0.001 requests per second (burst 3)");
    expect(refused.headers["x-kedge-request-id"]).toBeTruthy();
    // Whole seconds, at least 1: one token at 0.001/s is about 1000 s away.
    expect(refused.headers["retry-after"]).toMatch(/^\d+$/);
    expect(Number(refused.headers["retry-after"])).toBeGreaterThan(990);
    expect(seen("/h1")).toBe(3);
    // The connection stays usable: the next route still answers.
    expect((await curl(["-H", "host: free.test", kedge.url("/free")])).status).toBe(200);
  });

  it("refuses HTTP/2 requests the same way", async () => {
    const get = () => curl(["--http2-prior-knowledge", "-H", "host: h2.test", `http://127.0.0.1:${kedge.ports.h2c}/h2`]);
    expect((await get()).status).toBe(200);
    expect((await get()).status).toBe(200);
    const refused = await get();
    expect(refused.httpVersion).toBe("2");
    expect(refused.status).toBe(429);
    expect(refused.headers["x-kedge-error-type"]).toBe("rate-limited");
    expect(Number(refused.headers["retry-after"])).toBeGreaterThanOrEqual(1);
    expect(seen("/h2")).toBe(2);
  });

  it("answers gRPC calls past the burst with RESOURCE_EXHAUSTED and the reason", async () => {
    const client = new GreeterClient(`127.0.0.1:${kedge.ports.h2c}`, grpc.credentials.createInsecure(), { "grpc.default_authority": "limited.test" });
    try {
      expect((await unary(client, "sayHello", { name: "a" })).response?.message).toBe("Hello a!");
      expect((await unary(client, "sayHello", { name: "b" })).response?.message).toBe("Hello b!");
      const refused = await unary(client, "sayHello", { name: "c" });
      expect(refused.error?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
      expect(refused.error?.details).toContain("Rate limit exceeded: the route's rate_limit allows 0.001 requests per second (burst 2)");
      // What a client's retry policy waits before trying again (gRPC A6 server pushback).
      expect(Number(refused.error?.metadata.get("grpc-retry-pushback-ms")[0])).toBeGreaterThan(990_000);
    } finally {
      client.close();
    }
  });

  it("keys ROUTE limits on the route: every caller shares one bucket", async () => {
    expect((await viaTls("shared.test", "/shared", alice)).status).toBe(200);
    expect((await viaTls("shared.test", "/shared", bob)).status).toBe(200);
    expect((await viaTls("shared.test", "/shared", alice)).status).toBe(429);
    expect((await viaTls("shared.test", "/shared", bob)).status).toBe(429);
  });

  it("keys IDENTITY limits on the client certificate's subject, and anonymous callers on their address", async () => {
    for (const who of [alice, bob]) {
      expect((await viaTls("identity.test", "/identity", who)).status).toBe(200);
      expect((await viaTls("identity.test", "/identity", who)).status).toBe(200);
      expect((await viaTls("identity.test", "/identity", who)).status).toBe(429);
    }
    expect((await viaTls("identity.test", "/identity")).status).toBe(200);
    expect((await viaTls("identity.test", "/identity")).status).toBe(200);
    expect((await viaTls("identity.test", "/identity")).status).toBe(429);
  });

  it("keys CLIENT_ADDRESS limits on the client's IP address", async () => {
    const from = (address: string) => curl(["--interface", address, "-H", "host: address.test", kedge.url("/address")]);
    expect((await from("127.0.0.1")).status).toBe(200);
    expect((await from("127.0.0.1")).status).toBe(200);
    expect((await from("127.0.0.1")).status).toBe(429);
    expect((await from("127.0.0.2")).status).toBe(200);
  });

  it("counts refusals by backend, route and limit, and logs them with error type rate-limited", async () => {
    const metrics = kedge.registry.render();
    expect(metrics).toContain('kedge_rate_limited_total{backend_name="app",route="0",limit="route"} 1');
    expect(metrics).toContain('kedge_rate_limited_total{backend_name="greeter",route="0",limit="route"} 1');
    expect(seriesTotal(metrics, "kedge_proxy_errors_total", 'type="rate-limited"')).toBeGreaterThanOrEqual(1);
    expect(await promtool(metrics)).toMatchObject({ code: 0 });
    const refused = await curl(["-H", "host: h1.test", kedge.url("/h1")]);
    const line = await access.lineFor(refused.headers["x-kedge-request-id"]);
    expect(line).toMatchObject({ status: 429, error_type: "rate-limited", route: "0", backend: "app" });
  });

  it("keeps a bucket across a reload that leaves its limit unchanged, and starts a changed limit full", async () => {
    const get = () => curl(["-H", "host: reload.test", kedge.url("/reload")]);
    expect((await get()).status).toBe(200);
    expect((await get()).status).toBe(429);
    // Another route added in front: reload.test moves, its limit and config stay.
    const routes = (config.http as { routes: unknown[] }).routes;
    kedge.writeConfig({ ...config, http: { ...(config.http as object), routes: [route("new.test"), ...routes] } });
    expect(await kedge.reload()).toBeUndefined();
    expect((await get()).status).toBe(429);
    kedge.writeConfig({ ...config, http: { ...(config.http as object), routes: routes.map((r) => ((r as { host_matcher: string }).host_matcher === "reload.test" ? route("reload.test", slow(2)) : r)) } });
    expect(await kedge.reload()).toBeUndefined();
    expect((await get()).status).toBe(200);
    kedge.writeConfig(config);
    expect(await kedge.reload()).toBeUndefined();
  });
});

describe("server-wide rate limit", () => {
  let server: TestKedge;
  beforeAll(async () => {
    server = await startTestKedge({
      server: { ...plainServer, rate_limit: { requests_per_second: 0.001, burst: 3, key: "CLIENT_ADDRESS" } },
      http: {
        backends: [{ name: "app", static: { addresses: [`127.0.0.1:${upstream.port}`] } }],
        routes: [route("a.test", slow(1)), route("b.test")],
      },
    });
  });
  afterAll(() => server?.shutdown());

  const get = (host: string, address: string) => curl(["--interface", address, "-H", `host: ${host}`, server.url("/server")]);

  it("applies to every route before the route's own limit", async () => {
    expect((await get("a.test", "127.0.0.3")).status).toBe(200);
    // The route's bucket is empty; the server's still had a token, which this request took.
    const byRoute = await get("a.test", "127.0.0.3");
    expect(byRoute.status).toBe(429);
    expect(byRoute.headers["x-kedge-error"]).toContain("the route's rate_limit");
    expect((await get("b.test", "127.0.0.3")).status).toBe(200);
    const byServer = await get("b.test", "127.0.0.3");
    expect(byServer.status).toBe(429);
    expect(byServer.headers["x-kedge-error"]).toContain("server.rate_limit allows 0.001 requests per second (burst 3) per client address");
    // Unrouted requests take from it too.
    expect((await get("nowhere.test", "127.0.0.3")).status).toBe(429);
    expect((await get("nowhere.test", "127.0.0.4")).status).toBe(502);
    const metrics = server.registry.render();
    expect(metrics).toContain('kedge_rate_limited_total{backend_name="app",route="0",limit="route"} 1');
    expect(metrics).toContain('kedge_rate_limited_total{backend_name="app",route="1",limit="server"} 1');
  });
});

describe("rate limits and authentication", () => {
  let issuer: TestIssuer;
  let server: TestKedge;
  beforeAll(async () => {
    issuer = await startTestIssuer();
    server = await startTestKedge({
      server: plainServer,
      auth: { oidc: { provider_url: issuer.url, client_id: "kedge", jwks_file: issuer.jwksFile } },
      http: {
        backends: [{ name: "app", static: { addresses: [`127.0.0.1:${upstream.port}`] } }],
        routes: [route("identity.test", slow(1, "IDENTITY")), route("route.test", slow(1))],
      },
    });
  });
  afterAll(async () => {
    await server?.shutdown();
    await issuer?.close();
  });

  const get = (host: string, token?: string) => curl(["-H", `host: ${host}`, ...(token ? ["-H", `proxy-authorization: Bearer ${token}`] : []), server.url("/auth")]);

  it("gives two tokens' subjects a bucket each", async () => {
    const carol = await issuer.sign({ sub: "carol" });
    const dave = await issuer.sign({ sub: "dave" });
    expect((await get("identity.test", carol)).status).toBe(200);
    expect((await get("identity.test", carol)).status).toBe(429);
    // Another token of the same subject is the same caller.
    expect((await get("identity.test", await issuer.sign({ sub: "carol" }))).status).toBe(429);
    expect((await get("identity.test", dave)).status).toBe(200);
  });

  it("takes no token for requests access control refused", async () => {
    for (let i = 0; i < 3; i++) expect((await get("route.test")).status).toBe(401);
    const token = await issuer.sign({ sub: "erin" });
    expect((await get("route.test", token)).status).toBe(200);
    expect((await get("route.test", token)).status).toBe(429);
  });
});
