import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import * as grpc from "@grpc/grpc-js";
import http2 from "node:http2";
import { curl } from "./helpers/curl.ts";
import { GreeterClient, startGreeter, unary, type GreeterServer } from "./helpers/grpc.ts";
import { plainServer, startTestKedge, type TestKedge } from "./helpers/kedge.ts";
import { hmacToken, startTestIssuer, tamper, unsignedToken, type TestIssuer } from "./helpers/oidc-issuer.ts";
import { startUpstream, type Upstream } from "./helpers/upstream.ts";

// OIDC/JWT authentication against a real issuer started here (discovery + JWKS, tokens signed
// with jose), the global whitelist, per-route permissions over HTTP and gRPC, the attacks a
// verifier must refuse, key rotation, and the admin port behind auth.

let issuer: TestIssuer;
let upstream: Upstream;
let greeter: GreeterServer;
let kedge: TestKedge;

const now = () => Math.floor(Date.now() / 1000);

beforeAll(async () => {
  issuer = await startTestIssuer();
  upstream = await startUpstream("app");
  greeter = await startGreeter("greeter");
  const app = [{ name: "app", static: { addresses: [`127.0.0.1:${upstream.port}`] } }];
  kedge = await startTestKedge({
    server: { ...plainServer, h2c_port: 0 },
    auth: {
      oidc: { provider_url: issuer.url, client_id: "kedge", perms_claim: "perms", clock_skew: "5s", jwks_refresh_interval: "1s" },
      whitelist_permissions: ["proxy:use"],
      admin: { enabled: true },
    },
    http: {
      backends: app,
      routes: [
        { backend_name: "app", host_matcher: "public.test", auth: { public: true } },
        { backend_name: "app", host_matcher: "admins.test", auth: { all_of_permissions: ["admin", "write"] } },
        { backend_name: "app", host_matcher: "readers.test", auth: { any_of_permissions: ["read", "admin"] } },
        { backend_name: "app", host_matcher: "app.test" },
      ],
    },
    grpc: {
      backends: [{ name: "greeter", static: { addresses: [`127.0.0.1:${greeter.port}`] } }],
      routes: [
        { backend_name: "greeter", authority_host_matcher: "admins.test", auth: { all_of_permissions: ["admin", "write"] } },
        { backend_name: "greeter", authority_host_matcher: "readers.test", auth: { any_of_permissions: ["read", "admin"] } },
        { backend_name: "greeter", authority_host_matcher: "public.test", auth: { public: true } },
        { backend_name: "greeter", authority_host_matcher: "perms.test", auth: { any_of_permissions: ["proxy:use", "café:read"] } },
        { backend_name: "greeter", authority_host_matcher: "app.test" },
      ],
    },
  });
});

afterAll(async () => {
  await kedge?.shutdown();
  await upstream?.close();
  greeter?.kill();
  await issuer?.close();
});

function get(host: string, headers: Record<string, string> = {}, path = "/who") {
  return curl([...Object.entries(headers).flatMap(([k, v]) => ["-H", `${k}: ${v}`]), "-H", `host: ${host}`, kedge.url(path)]);
}

const bearer = (token: string) => ({ "proxy-authorization": `Bearer ${token}` });

describe("OIDC / JWT authentication over HTTP", () => {
  it("accepts RS256 and ES256 tokens, strips Proxy-Authorization and passes Authorization through untouched", async () => {
    for (const alg of ["RS256", "ES256"] as const) {
      const token = await issuer.sign({ perms: ["proxy:use"] }, { alg });
      const r = await get("app.test", { ...bearer(token), authorization: "Bearer for-the-backend" });
      expect(r.status).toBe(200);
      const seen = JSON.parse(r.body).headers;
      expect(seen["proxy-authorization"]).toBeUndefined();
      expect(seen.authorization).toBe("Bearer for-the-backend");
    }
    expect(issuer.discoveryFetches).toBe(1);
  });

  it("answers 401 with kedge Go's messages when the credential is missing or not a bearer token", async () => {
    const none = await get("app.test");
    expect(none.status).toBe(401);
    expect(none.headers["x-kedge-error-type"]).toBe("unauthorized");
    expect(none.headers["x-kedge-error"]).toBe("Unauthenticated. No Proxy-Authorization header.");
    const basic = await get("app.test", { "proxy-authorization": "Basic YWxpY2U6cHc=" });
    expect(basic.status).toBe(401);
    expect(basic.headers["x-kedge-error"]).toBe("Unauthenticated. Proxy-Authorization header does not have Bearer format.");
  });

  it("answers 401, not no-route, to an unauthenticated request for an unknown host", async () => {
    const r = await get("nowhere.test");
    expect(r.status).toBe(401);
    const token = await issuer.sign({ perms: ["proxy:use"] });
    expect((await get("nowhere.test", bearer(token))).headers["x-kedge-error-type"]).toBe("no-route");
  });

  it("tolerates the configured clock skew and no more", async () => {
    const justExpired = await issuer.sign({ perms: ["proxy:use"], exp: now() - 2 });
    expect((await get("app.test", bearer(justExpired))).status).toBe(200);
  });

  const attacks: Array<[string, () => Promise<{ headers: Record<string, string> }>]> = [
    ["alg none", async () => bearer(unsignedToken({ iss: issuer.url, aud: "kedge", sub: "alice", perms: ["proxy:use"], exp: now() + 300 }))],
    ["HS256 signed with the RSA public key", async () => bearer(await hmacToken({ iss: issuer.url, aud: "kedge", sub: "alice", perms: ["proxy:use"], exp: now() + 300 }, await issuer.rsaPublicKeyPem()))],
    ["expired", async () => bearer(await issuer.sign({ perms: ["proxy:use"], exp: now() - 60 }))],
    ["not yet valid", async () => bearer(await issuer.sign({ perms: ["proxy:use"], nbf: now() + 60 }))],
    ["issued in the future", async () => bearer(await issuer.sign({ perms: ["proxy:use"], iat: now() + 60 }))],
    ["without exp", async () => bearer(await issuer.sign({ perms: ["proxy:use"], exp: undefined }))],
    ["wrong audience", async () => bearer(await issuer.sign({ perms: ["proxy:use"], aud: "someone-else" }))],
    ["wrong issuer", async () => bearer(await issuer.sign({ perms: ["proxy:use"], iss: "https://evil.example" }))],
    ["unknown kid", async () => bearer(await issuer.signWithUnpublishedKey({ iss: issuer.url, aud: "kedge", perms: ["proxy:use"] }))],
    ["tampered payload", async () => bearer(tamper(await issuer.sign({ perms: ["proxy:use"] })))],
    ["oversized", async () => bearer(await issuer.sign({ perms: ["proxy:use"], padding: "x".repeat(9000) }))],
    ["garbage", async () => bearer("not.a.jwt")],
  ].map(([name, make]) => [name as string, async () => ({ headers: await (make as () => Promise<Record<string, string>>)() })]);

  for (const [name, make] of attacks) {
    it(`refuses a token: ${name}`, async () => {
      const r = await get("app.test", (await make()).headers);
      expect(r.status).toBe(401);
      expect(r.headers["x-kedge-error-type"]).toBe("unauthorized");
      expect(r.headers["x-kedge-error"]).toStartWith("Verification failed.");
      expect(upstream.seen.some((s) => s.headers["proxy-authorization"] !== undefined)).toBe(false);
    });
  }

  it("refuses a valid token in the wrong header", async () => {
    const token = await issuer.sign({ perms: ["proxy:use"] });
    const r = await get("app.test", { authorization: `Bearer ${token}` });
    expect(r.status).toBe(401);
    expect(r.headers["x-kedge-error"]).toBe("Unauthenticated. No Proxy-Authorization header.");
  });

  it("answers 403 naming the permission when a valid token lacks the global whitelist", async () => {
    const r = await get("app.test", bearer(await issuer.sign({ perms: ["read"] })));
    expect(r.status).toBe(403);
    expect(r.headers["x-kedge-error-type"]).toBe("forbidden");
    expect(r.headers["x-kedge-error"]).toContain('"proxy:use"');
  });
});

describe("per-route permissions", () => {
  // perms held → expected status on [admins.test (all of admin+write), readers.test (any of read/admin), public.test, app.test (global)]
  const matrix: Array<[string[] | null, number[]]> = [
    [null, [401, 401, 200, 401]],
    [[], [403, 403, 200, 403]],
    [["read"], [403, 200, 200, 403]],
    [["admin"], [403, 200, 200, 403]],
    [["admin", "write"], [200, 200, 200, 403]],
    [["proxy:use"], [403, 403, 200, 200]],
    [["admin", "write", "proxy:use"], [200, 200, 200, 200]],
  ];
  const hosts = ["admins.test", "readers.test", "public.test", "app.test"];

  for (const [perms, expected] of matrix) {
    it(`HTTP with permissions ${JSON.stringify(perms)}`, async () => {
      const headers = perms === null ? {} : bearer(await issuer.sign({ perms }));
      const got = await Promise.all(hosts.map(async (h) => (await get(h, headers)).status));
      expect(got).toEqual(expected);
    });

    it(`gRPC with permissions ${JSON.stringify(perms)}`, async () => {
      const md = new grpc.Metadata();
      if (perms !== null) md.set("proxy-authorization", `bearer ${await issuer.sign({ perms })}`);
      const codes = await Promise.all(
        hosts.map(async (h) => {
          const client = new GreeterClient(`127.0.0.1:${kedge.ports.h2c}`, grpc.credentials.createInsecure(), { "grpc.default_authority": h });
          const r = await unary(client, "sayHello", { name: "x" }, md);
          client.close();
          return r.error?.code ?? 0;
        }),
      );
      const asGrpc = { 200: grpc.status.OK, 401: grpc.status.UNAUTHENTICATED, 403: grpc.status.PERMISSION_DENIED } as Record<number, number>;
      expect(codes).toEqual(expected.map((s) => asGrpc[s]));
    });
  }

  it("gRPC: the backend gets the caller's authorization metadata and never proxy-authorization", async () => {
    const md = new grpc.Metadata();
    md.set("proxy-authorization", `bearer ${await issuer.sign({ perms: ["proxy:use"] })}`);
    md.set("authorization", "Bearer for-the-backend");
    const client = new GreeterClient(`127.0.0.1:${kedge.ports.h2c}`, grpc.credentials.createInsecure(), { "grpc.default_authority": "app.test" });
    const r = await unary(client, "sayHello", { name: "x" }, md);
    client.close();
    expect(r.response?.auth).toBe("Bearer for-the-backend");
    const none = new GreeterClient(`127.0.0.1:${kedge.ports.h2c}`, grpc.credentials.createInsecure(), { "grpc.default_authority": "app.test" });
    const denied = await unary(none, "sayHello", { name: "x" });
    none.close();
    expect(denied.error?.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(denied.error?.details).toBe("Unauthenticated. No Proxy-Authorization header.");
  });
});

describe("gRPC error messages", () => {
  // PROTOCOL-HTTP2.md: grpc-message is UTF-8 with only bytes outside 0x20–0x7E, and "%", percent-encoded.
  const denial = 'Permission denied. Needs one of the permissions "proxy:use", "café:read".';

  it("reach a grpc-js caller as written: colons, quotes, spaces and non-ASCII intact", async () => {
    const md = new grpc.Metadata();
    md.set("proxy-authorization", `bearer ${await issuer.sign({ perms: ["other"] })}`);
    const client = new GreeterClient(`127.0.0.1:${kedge.ports.h2c}`, grpc.credentials.createInsecure(), { "grpc.default_authority": "perms.test" });
    const r = await unary(client, "sayHello", { name: "x" }, md);
    client.close();
    expect(r.error?.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(r.error?.details).toBe(denial);
  });

  it("are percent-encoded on the wire only where the spec says", async () => {
    const session = http2.connect(`http://127.0.0.1:${kedge.ports.h2c}`);
    const req = session.request({
      ":method": "POST", ":path": "/e2e.helloworld.Greeter/SayHello", ":authority": "perms.test",
      "content-type": "application/grpc", te: "trailers", "proxy-authorization": `bearer ${await issuer.sign({ perms: ["other"] })}`,
    });
    req.end();
    const head = await new Promise<http2.IncomingHttpHeaders>((resolve) => req.once("response", resolve));
    req.resume();
    session.close();
    expect(head["grpc-message"]).toBe('Permission denied. Needs one of the permissions "proxy:use", "caf%C3%A9:read".');
  });
});

describe("issuer keys", () => {
  it("follows a key rotation: an unknown kid refetches the JWKS, at most once per refresh interval", async () => {
    await Bun.sleep(1100); // past the refresh interval since the first fetch
    await issuer.rotate({ dropOld: true });
    const before = issuer.jwksFetches;
    const rotated = await issuer.sign({ perms: ["proxy:use"] }, { alg: "ES256" });
    expect((await get("app.test", bearer(rotated))).status).toBe(200);
    expect(issuer.jwksFetches).toBe(before + 1);
    // A flood of forged key ids right after must not turn into a flood of JWKS fetches.
    const forged = await Promise.all(Array.from({ length: 20 }, () => issuer.signWithUnpublishedKey({ iss: issuer.url, aud: "kedge", perms: ["proxy:use"] })));
    const statuses = await Promise.all(forged.map(async (t) => (await get("app.test", bearer(t))).status));
    expect(statuses.every((s) => s === 401)).toBe(true);
    expect(issuer.jwksFetches).toBeLessThanOrEqual(before + 2);
  });

  it("verifies offline from a local JWKS file", async () => {
    const offline = await startTestKedge({
      server: plainServer,
      auth: { oidc: { provider_url: issuer.url, client_id: "kedge", perms_claim: "perms", jwks_file: issuer.jwksFile } },
      http: { backends: [{ name: "app", static: { addresses: [`127.0.0.1:${upstream.port}`] } }], routes: [{ backend_name: "app" }] },
    });
    try {
      const fetches = issuer.jwksFetches + issuer.discoveryFetches;
      const ok = await curl(["-H", `proxy-authorization: Bearer ${await issuer.sign({})}`, offline.url("/")]);
      expect(ok.status).toBe(200);
      const forged = await curl(["-H", `proxy-authorization: Bearer ${await issuer.signWithUnpublishedKey({ iss: issuer.url, aud: "kedge" })}`, offline.url("/")]);
      expect(forged.status).toBe(401);
      expect(issuer.jwksFetches + issuer.discoveryFetches).toBe(fetches);
    } finally {
      await offline.shutdown();
    }
  });
});

describe("issuer outages", () => {
  // An issuer that cannot be reached says nothing about the caller's token: 503 (gRPC UNAVAILABLE)
  // with x-kedge-error-type auth-unavailable, counted like other refusals; a bad token stays 401.
  async function closedPort(): Promise<number> {
    const probe = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const port = probe.port;
    probe.stop(true);
    return port;
  }

  async function withKedge(oidc: Record<string, unknown>, check: (k: TestKedge) => Promise<void>) {
    const k = await startTestKedge({
      server: { ...plainServer, h2c_port: 0 },
      auth: { oidc: { client_id: "kedge", perms_claim: "perms", ...oidc } },
      http: { backends: [{ name: "app", static: { addresses: [`127.0.0.1:${upstream.port}`] } }], routes: [{ backend_name: "app" }] },
      grpc: { backends: [{ name: "greeter", static: { addresses: [`127.0.0.1:${greeter.port}`] } }], routes: [{ backend_name: "greeter" }] },
    });
    try {
      await check(k);
    } finally {
      await k.shutdown();
    }
  }

  async function refusals(k: TestKedge, token: string) {
    const http = await curl(["-H", `proxy-authorization: Bearer ${token}`, k.url("/")]);
    const md = new grpc.Metadata();
    md.set("proxy-authorization", `bearer ${token}`);
    const client = new GreeterClient(`127.0.0.1:${k.ports.h2c}`, grpc.credentials.createInsecure());
    const call = await unary(client, "sayHello", { name: "x" }, md);
    client.close();
    return { http, call };
  }

  it("503 auth-unavailable when issuer discovery cannot be reached, over HTTP and gRPC", async () => {
    await withKedge({ provider_url: `http://127.0.0.1:${await closedPort()}` }, async (k) => {
      const { http, call } = await refusals(k, await issuer.sign({ perms: ["proxy:use"] }));
      expect(http.status).toBe(503);
      expect(http.headers["x-kedge-error-type"]).toBe("auth-unavailable");
      expect(http.headers["x-kedge-error"]).toStartWith("Cannot verify the token now: the issuer's discovery failed");
      expect(call.error?.code).toBe(grpc.status.UNAVAILABLE);
      expect(call.error?.details).toStartWith("Cannot verify the token now");
      const metrics = await (await fetch(`http://127.0.0.1:${k.ports.admin}/metrics`)).text();
      expect(metrics).toMatch(/^kedge_proxy_errors_total\{backend_name="app",type="auth-unavailable"\} 1$/m);
      // Refused after routing: counted against the route's backend, gRPC as HTTP.
      expect(metrics).toMatch(/^kedge_proxy_errors_total\{backend_name="greeter",type="auth-unavailable"\} 1$/m);
      expect(metrics).toMatch(/^kedge_grpc_requests_total\{backend_name="greeter",grpc_method="\/e2e.helloworld.Greeter\/SayHello",grpc_code="14",route="0"\} 1$/m);
    });
  });

  it("503 while the JWKS endpoint fails (5xx, unreachable), 401 for a bad token, and the same token passes once it recovers", async () => {
    const discovery = (await (await fetch(`${issuer.url}/.well-known/openid-configuration`)).json()) as { jwks_uri: string };
    let failing = true;
    const keys = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => (failing ? new Response("down", { status: 500 }) : fetch(discovery.jwks_uri)) });
    const token = await issuer.sign({ perms: ["proxy:use"] });
    try {
      await withKedge({ provider_url: issuer.url, jwks_url: `http://127.0.0.1:${keys.port}/jwks`, jwks_refresh_interval: "0s" }, async (k) => {
        let { http, call } = await refusals(k, token);
        expect([http.status, http.headers["x-kedge-error-type"], call.error?.code]).toEqual([503, "auth-unavailable", grpc.status.UNAVAILABLE]);
        expect(http.headers["x-kedge-error"]).toBe("Cannot verify the token now: the issuer's keys are unavailable (JWKS endpoint answered 500).");
        failing = false;
        ({ http, call } = await refusals(k, token));
        expect([http.status, call.error?.code]).toEqual([200, undefined]);
        const forged = await refusals(k, await issuer.signWithUnpublishedKey({ iss: issuer.url, aud: "kedge" }));
        expect([forged.http.status, forged.call.error?.code]).toEqual([401, grpc.status.UNAUTHENTICATED]);
      });
    } finally {
      keys.stop(true);
    }
    await withKedge({ provider_url: issuer.url, jwks_url: `http://127.0.0.1:${await closedPort()}/jwks` }, async (k) => {
      const { http, call } = await refusals(k, token);
      expect([http.status, http.headers["x-kedge-error-type"], call.error?.code]).toEqual([503, "auth-unavailable", grpc.status.UNAVAILABLE]);
      expect(http.headers["x-kedge-error"]).toStartWith("Cannot verify the token now: the issuer's keys are unavailable (JWKS endpoint cannot be reached");
    });
  });
});

describe("admin port behind auth", () => {
  const admin = (path: string, headers: Record<string, string> = {}) =>
    curl([...Object.entries(headers).flatMap(([k, v]) => ["-H", `${k}: ${v}`]), `http://127.0.0.1:${kedge.ports.admin}${path}`]);

  it("refuses /debug/config without a token and serves it with one (Authorization or Proxy-Authorization)", async () => {
    const denied = await admin("/debug/config");
    expect(denied.status).toBe(401);
    expect(denied.headers["x-kedge-error-type"]).toBe("unauthorized");
    const token = await issuer.sign({ perms: ["proxy:use"] });
    expect((await admin("/debug/config", { authorization: `Bearer ${token}` })).status).toBe(200);
    expect((await admin("/debug/config", bearer(token))).status).toBe(200);
    expect((await admin("/debug/config", bearer(await issuer.sign({ perms: [] })))).status).toBe(403);
  });

  it("keeps /_healthz and /metrics open for probes and scrapers", async () => {
    expect((await admin("/_healthz")).status).toBe(200);
    expect((await admin("/metrics")).status).toBe(200);
  });

  it("guards the Connect admin API too", async () => {
    const call = (headers: Record<string, string>) =>
      curl(["-X", "POST", "-H", "content-type: application/json", "-d", "{}", ...Object.entries(headers).flatMap(([k, v]) => ["-H", `${k}: ${v}`]),
        `http://127.0.0.1:${kedge.ports.admin}/kedge.admin.v1.AdminService/ListRoutes`]);
    expect((await call({})).status).toBe(401);
    const ok = await call({ authorization: `Bearer ${await issuer.sign({ perms: ["proxy:use"] })}` });
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.body).routes.length).toBe(9); // 4 HTTP and 5 gRPC routes
  });
});
