import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadWinchConfig } from "../src/winch/config.ts";
import { startWinch, type Winch } from "../src/winch/winch.ts";
import { curl } from "./helpers/curl.ts";
import { plainServer, startTestKedge, type TestKedge } from "./helpers/kedge.ts";
import { startTestIssuer, type TestIssuer } from "./helpers/oidc-issuer.ts";
import { startUpstream, type Upstream } from "./helpers/upstream.ts";

// The whole OIDC chain: winch keeps an id_token fresh with the refresh-token grant against a real
// issuer (test/helpers/oidc-issuer.ts) and presents it as proxy auth; kedge verifies it against
// the same issuer's keys before proxying.

const home = mkdtempSync(join(tmpdir(), "winch-oidc-"));
const cacheFile = join(home, ".config", "kedge", "winch-oidc-sso.json");
let issuer: TestIssuer;
let upstream: Upstream;
let kedge: TestKedge;
let winch: Winch;

beforeAll(async () => {
  issuer = await startTestIssuer();
  upstream = await startUpstream("app");
  kedge = await startTestKedge({
    server: plainServer,
    auth: { oidc: { provider_url: issuer.url, client_id: issuer.client.id } },
    http: { backends: [{ name: "app", static: { addresses: [`127.0.0.1:${upstream.port}`] } }], routes: [{ backend_name: "app", host_matcher: "app.c1.internal.example.com" }] },
  });
  // A previous run's cache: the id_token has expired, the refresh token is still good.
  mkdirSync(join(home, ".config", "kedge"), { recursive: true });
  const stale = await issuer.sign({ aud: issuer.client.id, exp: Math.floor(Date.now() / 1000) - 60 });
  writeFileSync(cacheFile, JSON.stringify({ id_token: stale, refresh_token: issuer.issueRefreshToken(), expiry: new Date(Date.now() - 60_000).toISOString() }));
  const config = loadWinchConfig({
    embedded: {
      server: { http_port: 0, grpc_port: 0 },
      routes: [{ regexp: { exp: "^app[.](?P<cluster>c[0-9]+)[.]internal[.]example[.]com$", url: `http://127.0.0.1:${kedge.ports.http}` }, proxy_auth: "sso" }],
      auth_sources: [{ name: "sso", oidc: { provider: issuer.url, client_id: issuer.client.id, secret: issuer.client.secret } }],
    },
  });
  winch = await startWinch(config, { home });
});

afterAll(async () => {
  await winch?.close();
  await kedge?.shutdown();
  await upstream?.close();
  issuer?.close();
});

describe("winch's OIDC auth source with kedge's OIDC verification", () => {
  it("refreshes the expired token once, and kedge accepts the new one on every request", async () => {
    const proxy = `http://127.0.0.1:${winch.ports.http}`;
    const results = await Promise.all([1, 2, 3].map((i) => curl(["-x", proxy, `http://app.c1.internal.example.com/r${i}`])));
    for (const r of results) expect(r.status).toBe(200);
    expect(issuer.tokenRequestLog.map((t) => t.grantType)).toEqual(["refresh_token"]);
    expect(upstream.seen.at(-1)!.headers["proxy-authorization"]).toBeUndefined(); // kedge's credential stops at kedge
    const cached = JSON.parse(readFileSync(cacheFile, "utf8"));
    expect(new Date(cached.expiry).getTime()).toBeGreaterThan(Date.now());
    expect(statSync(cacheFile).mode & 0o777).toBe(0o600);
  });

  it("without the refresh token, the request is refused with winch's explanation, not kedge's 401", async () => {
    issuer.revokeRefreshTokens();
    writeFileSync(cacheFile, JSON.stringify({ id_token: "x", refresh_token: "rt-stale-9f8e7d", expiry: new Date(Date.now() - 1000).toISOString() }));
    const fresh = await startWinch(
      loadWinchConfig({
        embedded: {
          server: { http_port: 0, grpc_port: 0 },
          routes: [{ direct: { key: "app.c1.internal.example.com", url: `http://127.0.0.1:${kedge.ports.http}` }, proxy_auth: "sso" }],
          auth_sources: [{ name: "sso", oidc: { provider: issuer.url, client_id: issuer.client.id, secret: issuer.client.secret } }],
        },
      }),
      { home },
    );
    try {
      const r = await curl(["-x", `http://127.0.0.1:${fresh.ports.http}`, "http://app.c1.internal.example.com/"]);
      expect(r.status).toBe(502);
      expect(r.headers["x-winch-error-type"]).toBe("auth-source");
      expect(r.headers["x-winch-error"]).toStartWith('auth source "sso": ');
      expect(r.headers["x-winch-error"]).not.toContain("rt-stale-9f8e7d");
    } finally {
      await fresh.close();
    }
  });
});
