import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import * as grpc from "@grpc/grpc-js";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makeTestPki, type TestPki } from "./helpers/certs.ts";
import { echoHost, greeterService, kedgeTier } from "./helpers/failover-clusters.ts";
import { GreeterClient, unary } from "./helpers/grpc.ts";
import { startTestKedge, type TestKedge } from "./helpers/kedge.ts";

// The hop marker: two kedges whose backends are down and fail over to each other. A request
// would bounce between them for ever; x-kedge-hops, one higher at each kedge, stops it at
// server.max_hops with 508 Loop Detected (gRPC UNAVAILABLE), whatever the client sent.

let pki: TestPki;
let tokenFile: string;
let a: TestKedge;
let b: TestKedge;
/** a's audit log. */
let auditFile: string;

/** A kedge on plaintext, h2c and TLS whose only backends are down and fail over to the kedge at `peer`; `audit`: its audit log's file. */
function loopingConfig(peer: string, server: Record<string, unknown> = {}, audit?: string) {
  const tier = kedgeTier(pki, tokenFile, peer);
  const dead = { static: { addresses: ["127.0.0.1:1"] }, failover: [tier] };
  return {
    server: {
      bind_address: "127.0.0.1", http_port: 0, h2c_port: 0, http_tls_port: 0, admin_port: 0, log_level: "error",
      tls_cert_file: pki.serverCertFile, tls_key_file: pki.serverKeyFile, tls_client_ca_files: [pki.caFile], ...server,
    },
    http: { backends: [{ name: "echo", ...dead }], routes: [{ backend_name: "echo", host_matcher: echoHost }] },
    grpc: { backends: [{ name: "greeter", ...dead }], routes: [{ backend_name: "greeter", service_name_matcher: greeterService }] },
    ...(audit ? { observability: { audit_log: { enabled: true, path: audit } } } : {}),
  };
}

beforeAll(async () => {
  pki = makeTestPki();
  const dir = mkdtempSync(join(tmpdir(), "kedge-hops-"));
  tokenFile = join(dir, "token");
  auditFile = join(dir, "audit.jsonl");
  writeFileSync(tokenFile, "unused-by-these-kedges\n");
  // Each names the other: a starts towards a port nothing listens on, then is pointed at b.
  a = await startTestKedge(loopingConfig("https://localhost:1", {}, auditFile));
  b = await startTestKedge(loopingConfig(`https://localhost:${a.ports.tls}`));
  a.writeConfig(loopingConfig(`https://localhost:${b.ports.tls}`, {}, auditFile));
  expect(await a.reload()).toBeUndefined();
});

afterAll(async () => {
  await Promise.all([a?.shutdown(), b?.shutdown()]);
});

describe("the hop marker between kedges", () => {
  it("refuses a request bounced a → b → a with 508 Loop Detected", async () => {
    const res = await fetch(a.url("/loop"), { headers: { host: echoHost } });
    expect(res.status).toBe(508);
    expect(res.headers.get("x-kedge-error-type")).toBe("loop-detected");
    expect(res.headers.get("x-kedge-error")).toContain("server.max_hops is 2");
  });

  it("counts from what arrives, so a client cannot set the marker lower", async () => {
    const res = await fetch(a.url("/loop"), { headers: { host: echoHost, "x-kedge-hops": "0" } });
    expect(res.status).toBe(508);
    expect(res.headers.get("x-kedge-error")).toContain("passed through 2 kedges");
  });

  it("refuses at once a request that arrives at the limit, before any routing", async () => {
    const res = await fetch(a.url("/loop"), { headers: { host: "no-route.example.com", "x-kedge-hops": "2" } });
    expect(res.status).toBe(508);
    expect(res.headers.get("x-kedge-error-type")).toBe("loop-detected");
    expect(res.headers.get("x-kedge-backend-name")).toBeNull();
  });

  it("writes no audit line for a 508: it is refused before routing and access control, as a malformed request is", async () => {
    const res = await fetch(a.url("/audited"), { headers: { host: echoHost, "x-kedge-hops": "2" } });
    expect(res.status).toBe(508);
    const lines = readFileSync(auditFile, "utf8").trim().split("\n").map((l) => JSON.parse(l));
    // The requests bounced to a were allowed there on their first pass; the refusals left no line.
    expect(lines.some((l) => l.decision === "allow" && l.backend === "echo")).toBe(true);
    expect(lines.filter((l) => l.decision === "deny" || l.path === "/audited")).toEqual([]);
  });

  it("refuses a looping gRPC call with UNAVAILABLE", async () => {
    const client = new GreeterClient(`127.0.0.1:${a.ports.h2c}`, grpc.credentials.createInsecure());
    try {
      const r = await unary(client, "sayHello", { name: "loop" });
      expect(r.error?.code).toBe(grpc.status.UNAVAILABLE);
      expect(r.error?.details).toContain("kedges already");
    } finally {
      client.close();
    }
  });

  it("lets a request through one more kedge when server.max_hops is raised", async () => {
    b.writeConfig(loopingConfig(`https://localhost:${a.ports.tls}`, { max_hops: 3 }));
    expect(await b.reload()).toBeUndefined();
    // a → b (1) → a (2: a refuses at its default 2); with a at 3 too it goes a → b → a → b (3), refused by b.
    a.writeConfig(loopingConfig(`https://localhost:${b.ports.tls}`, { max_hops: 3 }, auditFile));
    expect(await a.reload()).toBeUndefined();
    const res = await fetch(a.url("/loop"), { headers: { host: echoHost } });
    expect(res.status).toBe(508);
    expect(res.headers.get("x-kedge-error")).toContain("passed through 3 kedges");
  });
});
