import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import * as grpc from "@grpc/grpc-js";
import { issueClientCert, makeTestPki, type ClientCert, type TestPki } from "./helpers/certs.ts";
import { curl } from "./helpers/curl.ts";
import { GreeterClient, startGreeter, unary, type GreeterServer } from "./helpers/grpc.ts";
import { plainServer, startTestKedge, type TestKedge } from "./helpers/kedge.ts";
import { startUpstream, type Upstream } from "./helpers/upstream.ts";

// Client certificates as identity: a CA kedge trusts, clients it issued (alice with a SPIFFE ID,
// bob), one from another CA and one expired; per-route subject and SAN rules over HTTP/1.1,
// HTTP/2 and gRPC; and a listener that requires a certificate at the handshake.

let pki: TestPki;
let alice: ClientCert, bob: ClientCert, mallory: ClientCert, expired: ClientCert;
let upstream: Upstream;
let greeter: GreeterServer;
let kedge: TestKedge;
let strict: TestKedge;
const aliceSpiffe = "spiffe://example.org/ns/default/sa/alice";

beforeAll(async () => {
  pki = makeTestPki();
  alice = issueClientCert(pki, "alice", "/CN=alice/O=Example", { sans: `DNS:alice.example.com,URI:${aliceSpiffe}` });
  bob = issueClientCert(pki, "bob", "/CN=bob/O=Example", { sans: "URI:spiffe://example.org/ns/default/sa/bob" });
  mallory = issueClientCert(pki, "mallory", "/CN=alice/O=Example", { otherCa: true });
  expired = issueClientCert(pki, "expired", "/CN=alice/O=Example", { expired: true });
  upstream = await startUpstream("app");
  greeter = await startGreeter("greeter");
  const tls = { tls_cert_file: pki.serverCertFile, tls_key_file: pki.serverKeyFile, tls_client_ca_files: [pki.caFile] };
  const http = {
    backends: [{ name: "app", static: { addresses: [`127.0.0.1:${upstream.port}`] } }],
    routes: [
      { backend_name: "app", host_matcher: "alice-only.test", auth: { allowed_client_subjects: ["alice"] } },
      { backend_name: "app", host_matcher: "by-dn.test", auth: { allowed_client_subjects: ["CN=bob,O=Example"] } },
      { backend_name: "app", host_matcher: "spiffe.test", auth: { allowed_client_sans: [aliceSpiffe] } },
      { backend_name: "app", host_matcher: "open.test" },
    ],
  };
  const grpcConfig = {
    backends: [{ name: "greeter", static: { addresses: [`127.0.0.1:${greeter.port}`] } }],
    routes: [{ backend_name: "greeter", authority_host_matcher: "alice-only.test", auth: { allowed_client_sans: [aliceSpiffe] } }],
  };
  kedge = await startTestKedge({ server: { ...plainServer, http_tls_port: 0, ...tls }, http, grpc: grpcConfig });
  strict = await startTestKedge({ server: { ...plainServer, http_tls_port: 0, ...tls, tls_client_cert_required: true }, http });
});

afterAll(async () => {
  await Promise.all([kedge?.shutdown(), strict?.shutdown()]);
  await upstream?.close();
  greeter?.kill();
});

function get(host: string, cert: ClientCert | undefined, options: { h2?: boolean; server?: TestKedge } = {}) {
  const server = options.server ?? kedge;
  return curl([
    "--cacert", pki.caFile,
    ...(cert ? ["--cert", cert.certFile, "--key", cert.keyFile] : []),
    options.h2 ? "--http2" : "--http1.1",
    "-H", `host: ${host}`,
    `https://localhost:${server.ports.tls}/who`,
  ]);
}

describe("client certificates", () => {
  for (const h2 of [false, true]) {
    const proto = h2 ? "HTTP/2" : "HTTP/1.1";
    it(`lets the allowed subject through and refuses another with 403 (${proto})`, async () => {
      const ok = await get("alice-only.test", alice, { h2 });
      expect(ok.status).toBe(200);
      expect(JSON.parse(ok.body).url).toBe("/who");
      const denied = await get("alice-only.test", bob, { h2 });
      expect(denied.status).toBe(403);
      expect(denied.headers["x-kedge-error-type"]).toBe("forbidden");
      expect(denied.headers["x-kedge-error"]).toContain('"CN=bob,O=Example" is not allowed');
    });
  }

  it("matches a full subject DN and a SPIFFE ID SAN", async () => {
    expect((await get("by-dn.test", bob)).status).toBe(200);
    expect((await get("by-dn.test", alice)).status).toBe(403);
    expect((await get("spiffe.test", alice)).status).toBe(200);
    expect((await get("spiffe.test", bob)).status).toBe(403);
  });

  it("answers 401 when a route needs a certificate and none was sent", async () => {
    const r = await get("alice-only.test", undefined);
    expect(r.status).toBe(401);
    expect(r.headers["x-kedge-error-type"]).toBe("unauthorized");
    expect((await get("open.test", undefined)).status).toBe(200);
  });

  it("never takes a certificate from another CA as an identity, even with the right subject", async () => {
    for (const host of ["alice-only.test", "open.test"]) {
      const r = await get(host, mallory);
      expect(r.status).toBe(401);
      expect(r.headers["x-kedge-error"]).toStartWith("Verification failed. Client certificate:");
    }
  });

  it("refuses an expired certificate", async () => {
    const r = await get("alice-only.test", expired);
    expect(r.status).toBe(401);
    expect(r.headers["x-kedge-error"]).toContain("CERT_HAS_EXPIRED");
  });

  it("on a listener that requires certificates, fails the handshake without one or with an untrusted one", async () => {
    expect((await get("open.test", alice, { server: strict })).status).toBe(200);
    for (const cert of [undefined, mallory, expired]) {
      const r = await get("open.test", cert, { server: strict });
      expect(r.status).toBe(0);
      expect(r.exitCode).not.toBe(0);
    }
  });

  it("authorizes gRPC calls by SAN: OK, PERMISSION_DENIED, UNAUTHENTICATED", async () => {
    const call = async (cert: ClientCert | undefined) => {
      const creds = grpc.credentials.createSsl(Buffer.from(pki.ca), cert ? Buffer.from(cert.key) : null, cert ? Buffer.from(cert.cert) : null);
      const client = new GreeterClient(`127.0.0.1:${kedge.ports.tls}`, creds, {
        "grpc.ssl_target_name_override": "localhost",
        "grpc.default_authority": "alice-only.test",
      });
      const r = await unary(client, "sayHello", { name: "x" });
      client.close();
      return r;
    };
    expect((await call(alice)).response?.message).toBe("Hello x!");
    const denied = await call(bob);
    expect(denied.error?.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(denied.error?.details).toContain("is not allowed");
    expect((await call(undefined)).error?.code).toBe(grpc.status.UNAUTHENTICATED);
    expect((await call(mallory)).error?.code).toBe(grpc.status.UNAUTHENTICATED);
  });
});
