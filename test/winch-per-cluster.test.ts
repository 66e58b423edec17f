import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import * as grpc from "@grpc/grpc-js";
import { copyFileSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureBinary, runBinary, waitFor, type Running } from "./helpers/binary.ts";
import { issueClientCert, makeTestPki, type ClientCert, type TestPki } from "./helpers/certs.ts";
import { curl } from "./helpers/curl.ts";
import { GreeterClient, startGreeter, unary, type GreeterServer } from "./helpers/grpc.ts";
import { startUpstream, type Upstream } from "./helpers/upstream.ts";

// One generic winch route for many clusters, each with its own identity: two kedges (the compiled
// binary), each trusting only its own client CA and accepting only its own proxy bearer token;
// winch (the binary) has one regexp route whose proxy_auth and client_tls name the cluster
// (${port} here: the test's clusters are told apart by their kedge's port on localhost).

const dir = mkdtempSync(join(tmpdir(), "winch-per-cluster-"));
const domain = "internal.example.com";

interface Cluster {
  name: string;
  pki: TestPki;
  token: string;
  cert: ClientCert;
  upstream: Upstream;
  greeter: GreeterServer;
  kedge: Running;
  port: number;
  /** Where winch's route finds this cluster's certificate. */
  certDir: string;
}

const clusters: Cluster[] = [];
let winch: Running;
let ports: { http: number; grpc: number };

const portIn = (proc: Running, name: string) => Number(new RegExp(`\\b${name}=(\\d+)`).exec(proc.stdout())?.[1] ?? 0);

async function startCluster(name: string): Promise<Cluster> {
  const pki = makeTestPki();
  const upstream = await startUpstream(`app-${name}`);
  const greeter = await startGreeter(`greeter-${name}`);
  const token = `token-of-${name}`;
  const configFile = join(dir, `kedge-${name}.json`);
  writeFileSync(configFile, JSON.stringify({
    server: {
      bind_address: "127.0.0.1", http_tls_port: 0, log_level: "warn",
      tls_cert_file: pki.serverCertFile, tls_key_file: pki.serverKeyFile, tls_client_ca_files: [pki.caFile], tls_client_cert_required: true,
    },
    auth: { bearer_token: token },
    http: { backends: [{ name: "app", static: { addresses: [`127.0.0.1:${upstream.port}`] } }], routes: [{ backend_name: "app" }] },
    grpc: { backends: [{ name: "greeter", static: { addresses: [`127.0.0.1:${greeter.port}`] } }], routes: [{ backend_name: "greeter" }] },
  }));
  const kedge = runBinary(["--config", configFile], dir);
  await waitFor(() => portIn(kedge, "tls") > 0, `kedge ${name} to listen`, kedge);
  const port = portIn(kedge, "tls");
  const cert = issueClientCert(pki, `winch-${name}`, `/CN=winch for ${name}`);
  const certDir = join(dir, "certs", `cluster-${port}`);
  mkdirSync(certDir, { recursive: true });
  copyFileSync(cert.certFile, join(certDir, "tls.crt"));
  copyFileSync(cert.keyFile, join(certDir, "tls.key"));
  return { name, pki, token, cert, upstream, greeter, kedge, port, certDir };
}

const host = (c: Cluster | number, svc = "app") => `${svc}.cluster-${typeof c === "number" ? c : c.port}.${domain}`;
const viaWinch = (url: string) => curl(["-x", `http://127.0.0.1:${ports.http}`, url]);

function grpcVia(authority: string): grpc.Client {
  return new GreeterClient(`127.0.0.1:${ports.grpc}`, grpc.credentials.createInsecure(), { "grpc.default_authority": authority });
}

beforeAll(async () => {
  ensureBinary();
  clusters.push(await startCluster("a"), await startCluster("b"));
  const configFile = join(dir, "winch.json");
  writeFileSync(configFile, JSON.stringify({
    server: { http_port: 0, grpc_port: 0, ca_files: clusters.map((c) => c.pki.caFile), unknown_hosts: "REFUSE", log_level: "info" },
    routes: [
      {
        regexp: { exp: "^(?P<svc>[^.]+)[.]cluster-(?P<port>[0-9]+)[.]internal[.]example[.]com$", url: "https://localhost:${port}" },
        proxy_auth: "proxy-cluster-${port}",
        client_tls: { cert_file: join(dir, "certs", "cluster-${port}", "tls.crt"), key_file: join(dir, "certs", "cluster-${port}", "tls.key") },
      },
    ],
    auth_sources: clusters.map((c) => ({ name: `proxy-cluster-${c.port}`, token: { token: c.token } })),
  }));
  winch = runBinary(["winch", "--config", configFile], dir);
  await waitFor(() => portIn(winch, "grpc") > 0, "winch to listen", winch);
  ports = { http: portIn(winch, "http"), grpc: portIn(winch, "grpc") };
});

afterAll(async () => {
  winch?.proc.kill("SIGKILL");
  for (const c of clusters) {
    c.kedge.proc.kill("SIGKILL");
    await c.upstream.close();
    await c.greeter.close();
  }
});

describe("per-cluster identity in one regexp route", () => {
  it("each kedge refuses the other cluster's token and the other cluster's certificate", async () => {
    const [a, b] = clusters;
    const direct = (to: Cluster, cert: ClientCert, token: string) =>
      curl(["--cacert", to.pki.caFile, "--cert", cert.certFile, "--key", cert.keyFile, "-H", `proxy-authorization: Bearer ${token}`, `https://localhost:${to.port}/`]);
    expect((await direct(a, a.cert, a.token)).status).toBe(200);
    expect((await direct(a, a.cert, b.token)).status).toBe(401);
    expect((await direct(a, b.cert, a.token)).status).toBe(0);
    expect((await direct(b, b.cert, b.token)).status).toBe(200);
    expect((await direct(b, b.cert, a.token)).status).toBe(401);
    expect((await direct(b, a.cert, b.token)).status).toBe(0);
  });

  it("HTTP through winch reaches each cluster's kedge with that cluster's token and certificate", async () => {
    for (const c of clusters) {
      const r = await viaWinch(`http://${host(c)}/hello`);
      expect(r.status).toBe(200);
      expect(JSON.parse(r.body).upstream).toBe(`app-${c.name}`);
      expect(c.upstream.seen.at(-1)?.url).toBe("/hello");
    }
  });

  it("gRPC through winch's gRPC port reaches each cluster's kedge the same way", async () => {
    for (const c of clusters) {
      const client = grpcVia(host(c, "greeter"));
      const r = await unary(client, "sayHello", { name: c.name });
      client.close();
      expect(r.error?.message).toBeUndefined();
      expect(r.response).toMatchObject({ message: `Hello ${c.name}!`, server: `greeter-${c.name}` });
    }
  });

  it("a CONNECT tunnel through winch reaches each cluster's kedge with that cluster's token and certificate", async () => {
    for (const c of clusters) {
      const r = await curl(["-p", "-x", `http://127.0.0.1:${ports.http}`, `http://${host(c)}:8080/tunnelled`]);
      expect(r.status).toBe(200);
      expect(JSON.parse(r.body).upstream).toBe(`app-${c.name}`);
    }
  });

  it("a cluster with no auth source of its name is refused by winch, naming the source it looked for", async () => {
    const unknown = 1;
    const r = await viaWinch(`http://${host(unknown)}/`);
    expect(r.status).toBe(502);
    expect(r.headers["x-winch-error-type"]).toBe("auth-source");
    expect(r.headers["x-winch-error"]).toContain(`"proxy-cluster-${unknown}"`);
    const client = grpcVia(host(unknown, "greeter"));
    const call = await unary(client, "sayHello", { name: "x" });
    client.close();
    expect(call.error?.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(call.error?.details).toContain(`"proxy-cluster-${unknown}"`);
  });

  it("picks up a rotated certificate file: the next connection presents the new one", async () => {
    const [a, b] = clusters;
    const replace = (cert: ClientCert) => {
      writeFileSync(join(a.certDir, "tls.crt"), cert.cert);
      writeFileSync(join(a.certDir, "tls.key"), cert.key);
    };
    expect((await viaWinch(`http://${host(a)}/`)).status).toBe(200);
    // A certificate kedge a does not trust: winch must present it, and kedge refuses the handshake.
    replace(issueClientCert(b.pki, "rotated-wrong", "/CN=winch from the wrong CA"));
    const refused = await viaWinch(`http://${host(a)}/`);
    expect(refused.status).toBe(502);
    expect(refused.headers["x-winch-error-type"]).toBe("backend-transport-closed");
    replace(issueClientCert(a.pki, "rotated-right", "/CN=winch for a, renewed"));
    expect((await viaWinch(`http://${host(a)}/`)).status).toBe(200);
    // The other cluster's identity is untouched by a's rotation.
    expect((await viaWinch(`http://${host(b)}/`)).status).toBe(200);
  });
});
