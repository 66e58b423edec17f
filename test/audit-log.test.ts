import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { issueClientCert, makeTestPki, type ClientCert, type TestPki } from "./helpers/certs.ts";
import { curl } from "./helpers/curl.ts";
import { GreeterClient, startGreeter, unary, type GreeterServer } from "./helpers/grpc.ts";
import { plainServer, startTestKedge, type TestKedge } from "./helpers/kedge.ts";
import { startTestIssuer, type TestIssuer } from "./helpers/oidc-issuer.ts";
import { startUpstream, type Upstream } from "./helpers/upstream.ts";
import { until } from "./helpers/wait.ts";

// The audit stream: real requests allowed and refused (certificates, tokens, route permissions,
// rate limits, the admin port) each leave one JSON line in the audit file, apart from the access log.

let pki: TestPki;
let alice: ClientCert, bob: ClientCert, mallory: ClientCert;
let issuer: TestIssuer;
let upstream: Upstream;
let greeter: GreeterServer;
let kedge: TestKedge;
let config: Record<string, any>;
const auditFile = join(mkdtempSync(join(tmpdir(), "kedge-audit-")), "audit.jsonl");
const tokens: string[] = [];

beforeAll(async () => {
  pki = makeTestPki();
  alice = issueClientCert(pki, "alice", "/CN=alice/O=Example");
  bob = issueClientCert(pki, "bob", "/CN=bob/O=Example");
  mallory = issueClientCert(pki, "mallory", "/CN=alice/O=Example", { otherCa: true });
  issuer = await startTestIssuer();
  upstream = await startUpstream("app");
  greeter = await startGreeter("greeter");
  const app = (host: string, extra: object = {}) => ({ backend_name: "app", host_matcher: host, ...extra });
  config = {
    server: { ...plainServer, http_tls_port: 0, h2c_port: 0, tls_cert_file: pki.serverCertFile, tls_key_file: pki.serverKeyFile, tls_client_ca_files: [pki.caFile] },
    auth: { oidc: { provider_url: issuer.url, client_id: "kedge", perms_claim: "perms", jwks_file: issuer.jwksFile } },
    observability: { audit_log: { enabled: true, path: auditFile } },
    http: {
      backends: [{ name: "app", static: { addresses: [`127.0.0.1:${upstream.port}`] } }],
      routes: [
        app("public.test", { auth: { public: true } }),
        app("alice.test", { auth: { allowed_client_subjects: ["alice"] } }),
        app("ops.test", { auth: { all_of_permissions: ["ops"] } }),
        app("limited.test", { auth: { public: true }, rate_limit: { requests_per_second: 0.001, burst: 1 } }),
        app(""),
      ],
    },
    grpc: { backends: [{ name: "greeter", static: { addresses: [`127.0.0.1:${greeter.port}`] } }], routes: [{ backend_name: "greeter" }] },
  };
  kedge = await startTestKedge(config);
});

afterAll(async () => {
  await kedge?.shutdown();
  await upstream?.close();
  await issuer?.close();
  greeter?.kill();
});

type AuditLine = Record<string, any>;

function auditLines(): AuditLine[] {
  if (!existsSync(auditFile)) return [];
  return readFileSync(auditFile, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l));
}

async function lineFor(requestId: string): Promise<AuditLine> {
  let found: AuditLine | undefined;
  await until(`the audit line of ${requestId}`, () => (found = auditLines().find((l) => l.request_id === requestId)) !== undefined);
  return found!;
}

let ids = 0;
async function token(claims: Record<string, unknown>): Promise<string> {
  const t = await issuer.sign(claims);
  tokens.push(t);
  return t;
}

/** A request over TLS with its own request id; resolves with the status and that id. */
async function request(host: string, options: { cert?: ClientCert; token?: string; path?: string } = {}): Promise<{ status: number; id: string }> {
  const id = `audit-${++ids}`;
  const r = await curl([
    "--cacert", pki.caFile,
    ...(options.cert ? ["--cert", options.cert.certFile, "--key", options.cert.keyFile] : []),
    ...(options.token ? ["-H", `proxy-authorization: Bearer ${options.token}`] : []),
    "-H", `host: ${host}`, "-H", `x-kedge-request-id: ${id}`,
    `https://localhost:${kedge.ports.tls}${options.path ?? "/who?secret=query"}`,
  ]);
  return { status: r.status, id };
}

describe("audit log", () => {
  it("writes an allow line for an admitted client certificate", async () => {
    const { status, id } = await request("alice.test", { cert: alice });
    expect(status).toBe(200);
    const line = await lineFor(id);
    expect(line).toMatchObject({
      audit: true,
      decision: "allow",
      reason: "authorized",
      identity: { cert_subject: "CN=alice,O=Example" },
      client: "127.0.0.1",
      method: "GET",
      host: "alice.test",
      path: "/who",
      route: "1",
      backend: "app",
    });
    expect(Date.parse(line.time)).toBeGreaterThan(0);
    expect(line.msg).toBeUndefined(); // not an access line
  });

  it("writes deny lines for a certificate from another CA and for one the route does not allow", async () => {
    const untrusted = await request("alice.test", { cert: mallory });
    expect(untrusted.status).toBe(401);
    const denied = await lineFor(untrusted.id);
    expect(denied).toMatchObject({ decision: "deny", reason: "unauthorized", route: "1" });
    expect(denied.identity).toEqual({}); // a certificate nobody vouches for names nobody
    expect(denied.detail).toStartWith("Verification failed. Client certificate:");
    const other = await request("alice.test", { cert: bob });
    expect(other.status).toBe(403);
    expect(await lineFor(other.id)).toMatchObject({ decision: "deny", reason: "forbidden", identity: { cert_subject: "CN=bob,O=Example" } });
  });

  it("writes deny lines for a missing token and a missing permission, naming the token's subject, never the token", async () => {
    const missing = await request("any.test");
    expect(missing.status).toBe(401);
    expect(await lineFor(missing.id)).toMatchObject({ decision: "deny", reason: "unauthorized", detail: "Unauthenticated. No Proxy-Authorization header.", route: "4" });
    const carol = await request("ops.test", { token: await token({ sub: "carol", perms: ["read"] }) });
    expect(carol.status).toBe(403);
    const denied = await lineFor(carol.id);
    expect(denied).toMatchObject({ decision: "deny", reason: "forbidden", identity: { token_subject: "carol" }, route: "2" });
    expect(denied.detail).toContain('Missing permission "ops"');
    const dave = await request("ops.test", { token: await token({ sub: "dave", perms: ["ops"] }) });
    expect(dave.status).toBe(200);
    expect(await lineFor(dave.id)).toMatchObject({ decision: "allow", reason: "authorized", identity: { token_subject: "dave" } });
    const open = await request("public.test");
    expect(await lineFor(open.id)).toMatchObject({ decision: "allow", reason: "public", route: "0" });
  });

  it("writes a deny line for a rate-limited request", async () => {
    expect((await request("limited.test")).status).toBe(200);
    const limited = await request("limited.test");
    expect(limited.status).toBe(429);
    const line = await lineFor(limited.id);
    expect(line).toMatchObject({ decision: "deny", reason: "rate-limited", route: "3" });
    expect(line.detail).toContain("Rate limit exceeded");
  });

  it("writes gRPC decisions with the call's method", async () => {
    const client = new GreeterClient(`127.0.0.1:${kedge.ports.h2c}`, grpc.credentials.createInsecure());
    try {
      const metadata = new grpc.Metadata();
      metadata.set("x-kedge-request-id", "audit-grpc-denied");
      expect((await unary(client, "sayHello", { name: "x" }, metadata)).error?.code).toBe(grpc.status.UNAUTHENTICATED);
      expect(await lineFor("audit-grpc-denied")).toMatchObject({ decision: "deny", reason: "unauthorized", protocol: "grpc", grpc_method: "/e2e.helloworld.Greeter/SayHello", route: "0", backend: "greeter" });
      const allowed = new grpc.Metadata();
      allowed.set("x-kedge-request-id", "audit-grpc-allowed");
      allowed.set("proxy-authorization", `Bearer ${await token({ sub: "erin" })}`);
      expect((await unary(client, "sayHello", { name: "x" }, allowed)).response?.message).toBe("Hello x!");
      expect(await lineFor("audit-grpc-allowed")).toMatchObject({ decision: "allow", identity: { token_subject: "erin" }, protocol: "grpc" });
    } finally {
      client.close();
    }
  });

  it("writes the admin port's decisions", async () => {
    const before = auditLines().filter((l) => l.route === "admin").length;
    expect((await fetch(`http://127.0.0.1:${kedge.ports.admin}/debug/config`)).status).toBe(401);
    const ok = await fetch(`http://127.0.0.1:${kedge.ports.admin}/debug/config`, { headers: { authorization: `Bearer ${await token({ sub: "frank" })}` } });
    expect(ok.status).toBe(200);
    await until("two admin lines", () => auditLines().filter((l) => l.route === "admin").length === before + 2);
    const [denied, allowed] = auditLines().filter((l) => l.route === "admin").slice(before);
    expect(denied).toMatchObject({ decision: "deny", reason: "unauthorized", path: "/debug/config", backend: "admin" });
    expect(allowed).toMatchObject({ decision: "allow", reason: "authorized", path: "/debug/config" });
  });

  it("with allowed_sample_rate 0 writes denies only", async () => {
    kedge.writeConfig({ ...config, observability: { audit_log: { enabled: true, path: auditFile, allowed_sample_rate: 0 } } });
    expect(await kedge.reload()).toBeUndefined();
    try {
      const allowed = await request("public.test");
      expect(allowed.status).toBe(200);
      const denied = await request("alice.test", { cert: bob });
      expect(denied.status).toBe(403);
      await lineFor(denied.id); // written after the allowed request's would have been
      expect(auditLines().filter((l) => l.request_id === allowed.id)).toEqual([]);
    } finally {
      kedge.writeConfig(config);
      expect(await kedge.reload()).toBeUndefined();
    }
  });

  it("never writes a token or a query string", () => {
    const text = readFileSync(auditFile, "utf8");
    expect(auditLines().length).toBeGreaterThan(10);
    expect(tokens.length).toBeGreaterThan(0);
    for (const t of tokens) {
      expect(text).not.toContain(t);
      expect(text).not.toContain(t.split(".")[2]);
    }
    expect(text).not.toContain("secret=query");
  });
});

describe("audit log on stdout", () => {
  it("writes its lines to stdout when no path is set, apart from access lines", async () => {
    let out = "";
    const write = process.stdout.write.bind(process.stdout);
    process.stdout.write = ((chunk: string | Uint8Array) => {
      out += typeof chunk === "string" ? chunk : Buffer.from(chunk).toString();
      return true;
    }) as typeof process.stdout.write;
    const server = await startTestKedge({
      server: plainServer,
      observability: { audit_log: { enabled: true } },
      http: { backends: [{ name: "app", static: { addresses: [`127.0.0.1:${upstream.port}`] } }], routes: [{ backend_name: "app" }] },
    });
    try {
      const r = await curl(["-H", "x-kedge-request-id: audit-stdout", server.url("/")]);
      expect(r.status).toBe(200);
      await until("the audit line on stdout", () => out.includes('"request_id":"audit-stdout"'));
      const line = JSON.parse(out.split("\n").find((l) => l.includes("audit-stdout"))!);
      expect(line).toMatchObject({ audit: true, decision: "allow", reason: "open", route: "0" });
    } finally {
      process.stdout.write = write;
      await server.shutdown();
    }
  });
});

describe("audit log of refused client certificates", () => {
  it("writes a deny line when the TLS handshake refuses a client certificate, and none for one it accepts", async () => {
    const file = join(mkdtempSync(join(tmpdir(), "kedge-audit-tls-")), "audit.jsonl");
    const server = await startTestKedge({
      server: { ...plainServer, http_tls_port: 0, tls_cert_file: pki.serverCertFile, tls_key_file: pki.serverKeyFile, tls_client_ca_files: [pki.caFile], tls_client_cert_required: true },
      observability: { audit_log: { enabled: true, path: file } },
      http: { backends: [{ name: "app", static: { addresses: [`127.0.0.1:${upstream.port}`] } }], routes: [{ backend_name: "app" }] },
    });
    const lines = () => (existsSync(file) ? readFileSync(file, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l) as AuditLine) : []);
    const get = (cert?: ClientCert) =>
      curl(["--cacert", pki.caFile, ...(cert ? ["--cert", cert.certFile, "--key", cert.keyFile] : []), `https://localhost:${server.ports.tls}/`]);
    try {
      expect((await get()).status).not.toBe(200);
      await until("the line of the missing certificate", () => lines().length === 1);
      expect((await get(mallory)).status).not.toBe(200);
      await until("the line of the untrusted certificate", () => lines().length === 2);
      expect((await get(alice)).status).toBe(200);
      await until("alice's allow line", () => lines().some((l) => l.decision === "allow"));
      const tls = lines().filter((l) => l.protocol === "tls");
      expect(tls.map((l) => l.detail)).toEqual(["TLS handshake refused: no_client_certificate", "TLS handshake refused: unknown_ca"]);
      for (const l of tls) {
        expect(l).toMatchObject({ audit: true, decision: "deny", reason: "unauthorized", client: "127.0.0.1", listener: "tls", route: "none", identity: {} });
      }
    } finally {
      await server.shutdown();
    }
  });
});
