import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import net from "node:net";
import tls from "node:tls";
import { TlsHandshakeFailures } from "../src/server/tls-failures.ts";
import { issueClientCert, makeTestPki, type ClientCert, type TestPki } from "./helpers/certs.ts";
import { curl } from "./helpers/curl.ts";
import { plainServer, startTestKedge, type TestKedge } from "./helpers/kedge.ts";
import { startUpstream, type Upstream } from "./helpers/upstream.ts";
import { until } from "./helpers/wait.ts";

// Handshakes kedge refuses on its TLS listeners (a client certificate required): each counted in
// kedge_tls_handshake_failures_total{listener,reason} and logged at warn with the peer and reason,
// a line per listener and reason at most once a minute.

let pki: TestPki;
let upstream: Upstream;
let kedge: TestKedge;
let expired: ClientCert, notYetValid: ClientCert, otherCa: ClientCert, good: ClientCert;
const logged: string[] = [];
const realWrite = process.stderr.write.bind(process.stderr);

beforeAll(async () => {
  pki = makeTestPki();
  expired = issueClientCert(pki, "expired", "/CN=expired", { expired: true });
  notYetValid = issueClientCert(pki, "future", "/CN=future", { notYetValid: true });
  otherCa = issueClientCert(pki, "stranger", "/CN=stranger", { otherCa: true });
  good = issueClientCert(pki, "good", "/CN=good");
  upstream = await startUpstream("app");
  process.stderr.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
    logged.push(String(chunk));
    return realWrite(chunk as never, ...(rest as []));
  }) as typeof process.stderr.write;
  kedge = await startTestKedge({
    server: {
      ...plainServer, log_level: "warn", http_tls_port: 0, grpc_tls_port: 0,
      tls_cert_file: pki.serverCertFile, tls_key_file: pki.serverKeyFile, tls_client_ca_files: [pki.caFile], tls_client_cert_required: true,
      request_header_timeout: "1s",
    },
    http: { backends: [{ name: "app", static: { addresses: [`127.0.0.1:${upstream.port}`] } }], routes: [{ backend_name: "app" }] },
  });
});

afterAll(async () => {
  process.stderr.write = realWrite;
  await kedge?.shutdown();
  await upstream?.close();
});

/** One handshake attempt; resolves once the connection is over either way. */
function handshake(port: number, options: tls.ConnectionOptions): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = tls.connect({ host: "127.0.0.1", port, servername: "localhost", ca: pki.ca, ...options }, () => {
      socket.end();
      resolve(true);
    });
    socket.on("error", () => resolve(false));
    socket.on("close", () => resolve(false));
  });
}

/** Bytes that are not a ClientHello, or nothing at all (a TCP health check). */
function plainBytes(port: number, bytes: string): Promise<void> {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1", () => (bytes ? socket.write(bytes) : socket.end()));
    socket.on("data", () => {});
    socket.on("error", () => resolve());
    socket.on("close", () => resolve());
  });
}

const withCert = (c: ClientCert) => ({ cert: c.cert, key: c.key });

async function failures(): Promise<Record<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${kedge.ports.admin}/metrics`)).text();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^kedge_tls_handshake_failures_total\{listener="(\w+)",reason="(\w+)"\} (\d+)$/gm)) out[`${m[1]} ${m[2]}`] = Number(m[3]);
  return out;
}

const warnings = () =>
  logged
    .join("")
    .split("\n")
    .filter((l) => l.includes('"TLS handshake failed"'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);

describe("failed TLS handshakes", () => {
  it("are counted by listener and reason, and logged at warn with the peer", async () => {
    const tlsPort = kedge.ports.tls;
    const grpcPort = kedge.ports.grpc_tls;
    // TLS 1.3 clients finish their side before the server checks their certificate: only the server knows.
    await handshake(tlsPort, {});
    for (let i = 0; i < 3; i++) await handshake(tlsPort, withCert(expired));
    await handshake(tlsPort, withCert(notYetValid));
    await handshake(tlsPort, withCert(otherCa));
    await handshake(tlsPort, { ...withCert(good), maxVersion: "TLSv1.1", minVersion: "TLSv1" });
    await handshake(grpcPort, { ...withCert(good), ALPNProtocols: ["http/1.1"] });
    await plainBytes(tlsPort, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    await plainBytes(tlsPort, ""); // a TCP health check: not a handshake failure
    // curl without a certificate, as a user would meet it.
    expect((await curl(["--cacert", pki.caFile, `https://localhost:${tlsPort}/`])).status).not.toBe(200);
    // A good client still gets through, over HTTP/1.1 and h2.
    expect(await handshake(tlsPort, { ...withCert(good), ALPNProtocols: ["h2"] })).toBe(true);
    expect((await curl(["--cacert", pki.caFile, "--cert", good.certFile, "--key", good.keyFile, `https://localhost:${tlsPort}/`])).status).toBe(200);

    // The server learns of a failure a moment after the client gave up.
    await until("every failure counted", async () => Object.values(await failures()).reduce((a, b) => a + b, 0) >= 10);
    expect(await failures()).toEqual({
      "tls no_client_certificate": 2,
      "tls certificate_expired": 3,
      "tls certificate_not_yet_valid": 1,
      "tls unknown_ca": 1,
      "tls protocol_version": 1,
      "tls not_tls": 1,
      "grpc_tls no_shared_alpn": 1,
    });
    const lines = warnings();
    // One line per listener and reason in the interval: the 2nd and 3rd expired certificates are left out.
    expect(lines.map((l) => `${l.listener} ${l.reason}`).sort()).toEqual(
      ["tls no_client_certificate", "tls certificate_expired", "tls certificate_not_yet_valid", "tls unknown_ca", "tls protocol_version", "tls not_tls", "grpc_tls no_shared_alpn"].sort(),
    );
    const expiredLine = lines.find((l) => l.reason === "certificate_expired")!;
    expect(expiredLine).toMatchObject({ level: "warn", listener: "tls", peer: "127.0.0.1", error: "CERT_HAS_EXPIRED", suppressed: 0 });
  });

  it("say how many lines were left out when the next one is written", async () => {
    const failures = new TlsHandshakeFailures(50);
    const before = logged.length;
    const refused = Object.assign(new Error("certificate has expired"), { code: "CERT_HAS_EXPIRED" });
    for (let i = 0; i < 4; i++) failures.record("tls", refused, "192.0.2.7");
    await Bun.sleep(80);
    failures.record("tls", refused, "192.0.2.8");
    const lines = logged.slice(before).filter((l) => l.includes('"peer":"192.0.2.')).map((l) => JSON.parse(l));
    expect(lines.map((l) => [l.peer, l.suppressed])).toEqual([["192.0.2.7", 0], ["192.0.2.8", 3]]);
    expect([...failures.samples()]).toEqual([[["tls", "certificate_expired"], 5]]);
  });

  it("read Bun's handshake errors (EPROTO, BoringSSL's reason last in the message) as the same reasons", () => {
    const failures = new TlsHandshakeFailures();
    const bun = (reason: string) => Object.assign(new Error(`error:100000f0:SSL routines:OPENSSL_internal:${reason}`), { code: "EPROTO" });
    failures.record("bun", bun("PEER_DID_NOT_RETURN_A_CERTIFICATE"), "192.0.2.9");
    failures.record("bun", bun("UNSUPPORTED_PROTOCOL"), "192.0.2.9");
    failures.record("bun", bun("NO_APPLICATION_PROTOCOL"), "192.0.2.9");
    failures.record("bun", bun("HTTP_REQUEST"), "192.0.2.9");
    failures.record("bun", bun("SOMETHING_NEW"), "192.0.2.9");
    expect(Object.fromEntries([...failures.samples()].map(([labels, n]) => [labels[1], n]))).toEqual({
      no_client_certificate: 1,
      protocol_version: 1,
      no_shared_alpn: 1,
      not_tls: 1,
      other: 1,
    });
  });

  it("close a client that does not finish its handshake within request_header_timeout, counted as a header timeout", async () => {
    const refused = async () => Number((await (await fetch(`http://127.0.0.1:${kedge.ports.admin}/metrics`)).text()).match(/^kedge_connections_refused_total\{reason="header_timeout"\} (\d+)$/m)?.[1] ?? 0);
    const before = await refused();
    const started = performance.now();
    // Connected, then silent: no ClientHello (or half of one) ever comes.
    const closed = await new Promise<boolean>((resolve) => {
      const socket = net.connect(kedge.ports.tls, "127.0.0.1", () => socket.write(Buffer.from([0x16, 0x03, 0x01])));
      const timer = setTimeout(() => {
        socket.destroy();
        resolve(false);
      }, 6_000);
      socket.on("error", () => {});
      socket.on("close", () => {
        clearTimeout(timer);
        resolve(true);
      });
    });
    expect(closed).toBe(true);
    // Never before the whole timeout (1 s), though Bun's socket timer can fire from 0.5 s on.
    expect(performance.now() - started).toBeGreaterThanOrEqual(1000);
    expect(await refused()).toBe(before + 1);
  });
});
