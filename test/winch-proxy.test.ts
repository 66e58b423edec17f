import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import * as grpc from "@grpc/grpc-js";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadWinchConfig } from "../src/winch/config.ts";
import { startWinch, type Winch } from "../src/winch/winch.ts";
import { issueClientCert, makeTestPki, type TestPki } from "./helpers/certs.ts";
import { curl } from "./helpers/curl.ts";
import { pod, startFakeKube, type FakeKube } from "./helpers/fake-kube.ts";
import { GreeterClient, unary } from "./helpers/grpc.ts";
import { startTestKedge, type TestKedge } from "./helpers/kedge.ts";
import { startUpstream, type Upstream } from "./helpers/upstream.ts";

// winch with real clients: kubectl and curl through winch and kedge to a fake API server and test
// backends, plus what winch does with hosts it cannot or must not send to a kedge.

const dir = mkdtempSync(join(tmpdir(), "winch-proxy-"));
const domain = "localhost.internal.example.com";
const kedgeToken = "kedge-proxy-token";
let pki: TestPki;
let kube: FakeKube;
let direct: Upstream;
let secure: Upstream;
let kedge: TestKedge;
let winch: Winch;
let refusing: Winch;
const kubeconfigForWinch = join(dir, "winch-kubeconfig");

beforeAll(async () => {
  pki = makeTestPki();
  kube = await startFakeKube();
  kube.apply(pod("default", "seen-through-winch", "10.9.0.1"));
  direct = await startUpstream("direct-target");
  const secureCert = issueClientCert(pki, "secure", "/CN=secure", { serverAuth: true, sans: `DNS:secure.${domain}` });
  secure = await startUpstream("secure", { tls: { cert: secureCert.cert, key: secureCert.key } });
  kedge = await startTestKedge({
    server: {
      bind_address: "127.0.0.1", http_tls_port: 0, admin_port: 0, log_level: "error",
      tls_cert_file: pki.serverCertFile, tls_key_file: pki.serverKeyFile, tls_client_ca_files: [pki.caFile], tls_client_cert_required: true,
    },
    auth: { bearer_token: kedgeToken },
    http: {
      backends: [
        // The API server behind kedge over TLS (kubectl via HTTP_PROXY), or tunnelled to as it is (CONNECT).
        { name: "kube", static: { addresses: [`127.0.0.1:${kube.port}`] }, security: { ca_files: [kube.caFile], server_name: "localhost" } },
        { name: "kube_tunnel", static: { addresses: [`127.0.0.1:${kube.port}`] } },
        { name: "secure", static: { addresses: [`127.0.0.1:${secure.port}`] } },
      ],
      routes: [
        { backend_name: "kube_tunnel", host_matcher: `kube.${domain}`, port_matcher: 443 },
        { backend_name: "kube", host_matcher: `kube-http.${domain}` },
        { backend_name: "secure", host_matcher: `secure.${domain}`, port_matcher: 443 },
      ],
    },
  });
  // winch's own kubeconfig: alice's token is what the API server accepts; "broken" runs a failing exec plugin.
  writeFileSync(kubeconfigForWinch, `apiVersion: v1
kind: Config
users:
- name: alice
  user:
    token: test-token
- name: broken
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: sh
      args: ["-c", "echo plugin exploded >&2; exit 3"]
`);
  const kedgeUrl = `https://\${cluster}:${kedge.ports.tls}`;
  const config = (unknownHosts: "DIRECT" | "REFUSE") =>
    loadWinchConfig({
      embedded: {
        server: { http_port: 0, grpc_port: 0, monitoring_port: 0, ca_files: [pki.caFile], client_cert_file: pki.clientCertFile, client_key_file: pki.clientKeyFile, unknown_hosts: unknownHosts },
        routes: [
          { regexp: { exp: "^kube-http[.](?P<cluster>[a-z0-9-]+)[.]internal[.]example[.]com$", url: kedgeUrl }, proxy_auth: "kedge", backend_auth: "alice" },
          { regexp: { exp: "^[a-z-]+[.](?P<cluster>[a-z0-9-]+)[.]internal[.]example[.]com$", url: kedgeUrl }, proxy_auth: "kedge" },
          { direct: { key: "down.internal.example.com", url: "https://localhost:1" } },
          { direct: { key: "broken-auth.internal.example.com", url: `https://localhost:${kedge.ports.tls}` }, backend_auth: "broken" },
        ],
        auth_sources: [
          { name: "kedge", token: { token: kedgeToken } },
          { name: "alice", kube: { user: "alice", path: kubeconfigForWinch } },
          { name: "broken", kube: { user: "broken", path: kubeconfigForWinch } },
        ],
      },
    });
  winch = await startWinch(config("DIRECT"), { home: dir });
  refusing = await startWinch(config("REFUSE"), { home: dir });
});

afterAll(async () => {
  await winch?.close();
  await refusing?.close();
  await kedge?.shutdown();
  await kube?.stop();
  await direct?.close();
  await secure?.close();
});

async function kubectl(kubeconfig: string, proxyEnv: Record<string, string>, ...args: string[]) {
  const p = Bun.spawn(["kubectl", "--kubeconfig", kubeconfig, "--cache-dir", join(dir, "kube-cache"), ...args], {
    stdout: "pipe",
    stderr: "pipe",
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: dir, NO_PROXY: "", no_proxy: "", ...proxyEnv },
  });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { out, err, code };
}

/** kubectl lists the pods through winch, and the API server saw that request with winch's injected token. */
async function expectPodsWithToken(kubeconfig: string, proxyEnv: Record<string, string>) {
  const before = kube.requests.length;
  const r = await kubectl(kubeconfig, proxyEnv, "get", "pods", "-n", "default");
  expect(r.err).toBe("");
  expect(r.code).toBe(0);
  expect(r.out).toContain("seen-through-winch");
  expect(kube.requests.slice(before).some((q) => q.path === "/api/v1/namespaces/default/pods" && q.auth === "token")).toBe(true);
}

const winchProxy = () => `http://127.0.0.1:${winch.ports.http}`;

describe("kubectl through winch and kedge", () => {
  it("HTTPS_PROXY: kubectl's own TLS and token run end to end with the API server through a CONNECT tunnel", async () => {
    const kubeconfig = join(dir, "kubectl-tunnel");
    writeFileSync(kubeconfig, `apiVersion: v1
kind: Config
clusters:
- name: c
  cluster:
    server: https://kube.${domain}
    certificate-authority: ${kube.caFile}
    tls-server-name: localhost
users:
- name: u
  user:
    token: test-token
contexts:
- name: c
  context: {cluster: c, user: u}
current-context: c
`);
    await expectPodsWithToken(kubeconfig, { HTTPS_PROXY: winchProxy() });
  });

  it("HTTP_PROXY: winch injects the kubeconfig user's token it was configured with (kube auth source)", async () => {
    const kubeconfig = join(dir, "kubectl-plain");
    writeFileSync(kubeconfig, `apiVersion: v1
kind: Config
clusters:
- name: c
  cluster:
    server: http://kube-http.${domain}
contexts:
- name: c
  context: {cluster: c}
current-context: c
`);
    await expectPodsWithToken(kubeconfig, { HTTP_PROXY: winchProxy() });
  });
});

describe("curl through winch", () => {
  it("HTTPS_PROXY: curl verifies the backend's certificate for its internal name through winch and kedge", async () => {
    const p = Bun.spawn(["curl", "-sS", "--cacert", pki.caFile, `https://secure.${domain}/over-connect`], {
      stdout: "pipe",
      stderr: "pipe",
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HTTPS_PROXY: winchProxy(), NO_PROXY: "" },
    });
    const [out, err] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text()]);
    expect(err).toBe("");
    expect(JSON.parse(out)).toMatchObject({ upstream: "secure", url: "/over-connect" });
  });

  it("with the README's environment: curl sends http:// through winch on the lower-case http_proxy, not on HTTP_PROXY, and reaches winch's own ports directly", async () => {
    const readme = readFileSync(join(import.meta.dir, "../README.md"), "utf8");
    const exported = /^export (.+)$/m.exec(/## winch[\s\S]*/.exec(readme)![0])![1];
    const env: Record<string, string> = Object.fromEntries(exported.split(" ").map((pair) => pair.replace(":8070", `:${winch.ports.http}`).split("=")));
    const path = { PATH: process.env.PATH ?? "/usr/bin:/bin" };
    const url = `http://kube-http.${domain}/api/v1/namespaces/default/pods`;
    const proxied = await curl([url], { ...path, ...env });
    expect(proxied.status).toBe(200);
    expect(proxied.headers["x-kedge-request-id"]).toStartWith("winch-");
    // curl reads only the lower-case name for http:// URLs: with HTTP_PROXY alone it resolves the name itself.
    const upper = await curl([url], { ...path, HTTP_PROXY: env.http_proxy });
    expect(upper.exitCode).not.toBe(0);
    expect(upper.headers["x-kedge-request-id"]).toBeUndefined();
    const own = `http://127.0.0.1:${winch.ports.monitoring}/_healthz`;
    expect((await curl([own], { ...path, ...env })).status).toBe(200);
    // Without no_proxy the request for winch's own port goes to winch, which refuses an IP address.
    expect((await curl([own], { ...path, http_proxy: env.http_proxy })).headers["x-winch-error-type"]).toBe("ip-literal");
  });

  it("sends a host no route maps directly, plain and CONNECT (kedge Go's default)", async () => {
    const plain = await curl(["-x", winchProxy(), `http://localhost:${direct.port}/plain`]);
    expect(plain.status).toBe(200);
    expect(JSON.parse(plain.body).upstream).toBe("direct-target");
    const tunnelled = await curl(["-p", "-x", winchProxy(), `http://localhost:${direct.port}/tunnelled`]);
    expect(tunnelled.status).toBe(200);
    expect(JSON.parse(tunnelled.body).url).toBe("/tunnelled");
  });

  it("refuses unknown hosts when configured to, plain and CONNECT", async () => {
    const proxy = `http://127.0.0.1:${refusing.ports.http}`;
    const plain = await curl(["-x", proxy, `http://localhost:${direct.port}/`]);
    expect(plain.status).toBe(502);
    expect(plain.headers["x-winch-error-type"]).toBe("unknown-host");
    expect(plain.headers["x-winch-error"]).toBe("localhost is not a kedge destination");
    const tunnel = await curl(["-p", "-x", proxy, `http://localhost:${direct.port}/`]);
    expect(tunnel.exitCode).not.toBe(0);
    expect(tunnel.stderr).toContain("502");
  });

  it("refuses IP literals: an address names no cluster", async () => {
    const r = await curl(["-x", winchProxy(), `http://127.0.0.1:${direct.port}/`]);
    expect(r.status).toBe(502);
    expect(r.headers["x-winch-error-type"]).toBe("ip-literal");
  });

  it("answers 502 with x-winch-error when the kedge cannot be reached", async () => {
    const r = await curl(["-x", winchProxy(), "http://down.internal.example.com/"]);
    expect(r.status).toBe(502);
    expect(r.headers["x-winch-error-type"]).toBe("no-connection-to-all-resolved-addresses");
    expect(r.headers["x-kedge-request-id"]).toMatch(/^winch-/);
  });

  it("answers 502 (gRPC: UNAUTHENTICATED) naming the auth source when a credential cannot be had", async () => {
    const r = await curl(["-x", winchProxy(), "http://broken-auth.internal.example.com/"]);
    expect(r.status).toBe(502);
    expect(r.headers["x-winch-error-type"]).toBe("auth-source");
    expect(r.headers["x-winch-error"]).toStartWith('auth source "broken": ');
    expect(r.headers["x-winch-error"].match(/auth source/g)).toHaveLength(1);
    expect(r.headers["x-winch-error"]).toContain("plugin exploded");
    const client = new GreeterClient(`127.0.0.1:${winch.ports.grpc}`, grpc.credentials.createInsecure(), { "grpc.default_authority": "broken-auth.internal.example.com:443" });
    const call = await unary(client, "sayHello", { name: "x" });
    client.close();
    expect(call.error?.code).toBe(grpc.status.UNAUTHENTICATED);
  });

  it("tells a client that did not use it as a proxy what to do", async () => {
    const r = await curl([`http://127.0.0.1:${winch.ports.http}/`]);
    expect(r.status).toBe(400);
    expect(r.headers["x-winch-error"]).toContain("forward proxy");
  });

  it("answers a request on the gRPC port that is not gRPC with 415, saying where to send it", async () => {
    const r = await curl(["--http2-prior-knowledge", `http://127.0.0.1:${winch.ports.grpc}/`]);
    expect(r.status).toBe(415);
    expect(r.headers["x-winch-error"]).toContain("use the HTTP proxy port");
    const h1 = await curl([`http://127.0.0.1:${winch.ports.grpc}/`]);
    expect(h1.status).toBe(505);
    expect(h1.headers["x-winch-error"]).toContain("HTTP/2");
  });

  it("listens on 127.0.0.1 unless told otherwise: it holds credentials for this machine only", () => {
    expect(winch.address).toBe("127.0.0.1");
  });

  it("reports health and per-kedge request metrics on the monitoring port", async () => {
    const port = winch.ports.monitoring!;
    expect((await fetch(`http://127.0.0.1:${port}/_healthz`)).status).toBe(200);
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    expect(metrics).toContain(`winch_http_requests_total{backend_name="localhost:${kedge.ports.tls}",code="200"}`);
    expect(metrics).toContain('winch_proxy_errors_total{backend_name="none",type="ip-literal"}');
  });
});
