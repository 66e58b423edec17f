import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError } from "../src/config/error.ts";
import { embeddedDefaultConfig } from "../src/config/default.ts";
import { loadConfig } from "../src/config/load.ts";
import { startKedge } from "../src/server/kedge.ts";
import { makeTestPki, type TestPki } from "./helpers/certs.ts";
import { plainServer, startTestKedge } from "./helpers/kedge.ts";
import { startUpstream, type Upstream } from "./helpers/upstream.ts";

// An edge proxy reachable beyond loopback with nothing to authenticate callers forwards anyone's
// requests into the cluster: kedge refuses such a config unless it says so in words.

let pki: TestPki;
let upstream: Upstream;
const dir = mkdtempSync(join(tmpdir(), "kedge-open-"));

beforeAll(async () => {
  pki = makeTestPki();
  upstream = await startUpstream("app");
});
afterAll(() => upstream.close());

const http = () => ({ backends: [{ name: "app", static: { addresses: [`127.0.0.1:${upstream.port}`] } }], routes: [{ backend_name: "app" }] });
const tls = () => ({ tls_cert_file: pki.serverCertFile, tls_key_file: pki.serverKeyFile });

function problemsOf(config: unknown): readonly string[] {
  try {
    loadConfig({ embedded: config });
    return [];
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
}

describe("no open proxy by accident", () => {
  const listeners: Array<[string, Record<string, unknown>]> = [
    ["http_port", { http_port: 8080 }],
    ["h2c_port", { h2c_port: 8082 }],
    ["http_tls_port", { http_tls_port: 8443 }],
    ["grpc_tls_port", { grpc_tls_port: 8444 }],
  ];
  for (const [field, ports] of listeners) {
    it(`refuses ${field} on 0.0.0.0 without an authenticator, naming the listener and the way out`, () => {
      const problems = problemsOf({ server: { bind_address: "0.0.0.0", ...ports, ...tls() }, http: http() });
      const port = Object.values(ports)[0];
      expect(problems).toHaveLength(1);
      expect(problems[0]).toStartWith(`server.${field}: 0.0.0.0:${port} is reachable beyond loopback with no authenticator`);
      expect(problems[0]).toContain("auth.oidc, auth.bearer_token");
      expect(problems[0]).toContain("auth.allow_unauthenticated: true");
    });
  }

  it("treats a config without bind_address as binding every address", () => {
    expect(problemsOf({ server: { http_port: 8080 } })).toEqual([expect.stringMatching(/^server\.http_port: 0\.0\.0\.0:8080 is reachable beyond loopback/)]);
    expect(problemsOf({ server: { bind_address: "::", http_port: 8080 } })[0]).toStartWith("server.http_port: :::8080");
    expect(problemsOf({ server: { bind_address: "10.0.0.7", http_port: 8080 } })[0]).toStartWith("server.http_port: 10.0.0.7:8080");
  });

  it("accepts loopback binds, the admin port alone, and the embedded demo config", () => {
    for (const bind of ["127.0.0.1", "127.0.0.2", "::1", "localhost"]) expect(problemsOf({ server: { bind_address: bind, http_port: 8080, h2c_port: 8082 } })).toEqual([]);
    expect(problemsOf({ server: { bind_address: "0.0.0.0", admin_port: 8081 } })).toEqual([]);
    expect(problemsOf(embeddedDefaultConfig)).toEqual([]);
  });

  it("accepts every listener beyond loopback with a token authenticator (OIDC, bearer token, token file)", () => {
    const server = { bind_address: "0.0.0.0", http_port: 8080, h2c_port: 8082, http_tls_port: 8443, grpc_tls_port: 8444, ...tls() };
    const tokenFile = join(dir, "token");
    writeFileSync(tokenFile, "t0k3n");
    expect(problemsOf({ server, auth: { bearer_token: "t0k3n" } })).toEqual([]);
    expect(problemsOf({ server, auth: { bearer_token_file: tokenFile } })).toEqual([]);
    expect(problemsOf({ server, auth: { oidc: { provider_url: "https://issuer.example", client_id: "kedge" } } })).toEqual([]);
  });

  it("counts required client certificates for the TLS ports only: a plaintext port cannot ask for one", () => {
    const certs = { tls_client_ca_files: [pki.caFile], tls_client_cert_required: true };
    expect(problemsOf({ server: { bind_address: "0.0.0.0", http_tls_port: 8443, grpc_tls_port: 8444, ...tls(), ...certs } })).toEqual([]);
    const plain = problemsOf({ server: { bind_address: "0.0.0.0", http_tls_port: 8443, http_port: 8080, ...tls(), ...certs } });
    expect(plain).toEqual([expect.stringContaining("server.http_port: 0.0.0.0:8080 is reachable beyond loopback with no authenticator (client certificates cannot guard a plaintext port)")]);
    // Client CAs without tls_client_cert_required let a client without a certificate through.
    const optional = problemsOf({ server: { bind_address: "0.0.0.0", http_tls_port: 8443, ...tls(), tls_client_ca_files: [pki.caFile] } });
    expect(optional).toEqual([expect.stringContaining("server.http_tls_port: 0.0.0.0:8443")]);
  });

  it("accepts auth.allow_unauthenticated: true", () => {
    expect(problemsOf({ server: { bind_address: "0.0.0.0", http_port: 8080 }, auth: { allow_unauthenticated: true } })).toEqual([]);
  });

  it("refuses to start before binding anything", async () => {
    const configFile = join(dir, "open.json");
    writeFileSync(configFile, JSON.stringify({ server: { bind_address: "0.0.0.0", http_port: 0, log_level: "error" }, http: http() }));
    const started = startKedge({ configFile });
    await expect(started).rejects.toBeInstanceOf(ConfigError);
    await expect(started).rejects.toThrow(/server\.http_port: 0\.0\.0\.0:0 is reachable beyond loopback/);
  });

  it("starts on 0.0.0.0 with auth.allow_unauthenticated and serves", async () => {
    const kedge = await startTestKedge({ server: { ...plainServer, bind_address: "0.0.0.0" }, auth: { allow_unauthenticated: true }, http: http() });
    try {
      const res = await fetch(kedge.url("/"));
      expect(res.status).toBe(200);
      expect(res.headers.get("x-upstream")).toBe("app");
    } finally {
      await kedge.shutdown();
    }
  });

  it("rejects a reload that would open the proxy; the old config keeps serving", async () => {
    const kedge = await startTestKedge({ server: plainServer, http: http() });
    try {
      const version = kedge.runtime().version;
      kedge.writeConfig({ server: { ...plainServer, bind_address: "0.0.0.0" }, http: http() });
      const err = await kedge.reload();
      expect(err?.problems.join("\n")).toContain("server.http_port: 0.0.0.0:0 is reachable beyond loopback with no authenticator");
      expect(kedge.runtime().version).toBe(version);
      expect((await fetch(kedge.url("/"))).status).toBe(200);
    } finally {
      await kedge.shutdown();
    }
  });
});
