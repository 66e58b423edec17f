import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { connect, createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureBinary, root, runBinary, waitFor, type Running } from "./helpers/binary.ts";
import { issueClientCert, makeTestPki, type TestPki } from "./helpers/certs.ts";
import { curl } from "./helpers/curl.ts";
import { startGreeter, type GreeterServer } from "./helpers/grpc.ts";
import { startUpstream, type Upstream } from "./helpers/upstream.ts";

// gRPC clients unchanged behind grpc_proxy / https_proxy: grpc-js sends CONNECT to winch and, after
// its 200, speaks h2c inside the tunnel. winch serves that tunnel on its own gRPC path, so each call
// gets the route's backend_auth (checked by the backend) and proxy_auth (checked by kedge). Other
// tunnels to the same routes still go through kedge's CONNECT. kedge and winch are the binary.

const dir = mkdtempSync(join(tmpdir(), "winch-grpc-tunnel-"));
const cluster = "cluster-1.internal.example.com";
const kedgeToken = "kedge-proxy-token";
const appToken = "app-backend-token";
let pki: TestPki;
let greeter: GreeterServer;
let secure: Upstream;
/** A server that speaks first, as SMTP, MySQL and SSH do: its banner, then an echo. */
let banner: Server;
let kedge: Running;
let winch: Running;
const ports = { kedgeTls: 0, http: 0, monitoring: 0 };

const portIn = (out: string, name: string) => Number(new RegExp(`\\b${name}=(\\d+)`).exec(out)![1]);

beforeAll(async () => {
  ensureBinary();
  pki = makeTestPki();
  greeter = await startGreeter("tunnelled", undefined, { requiredAuthorization: () => `Bearer ${appToken}` });
  const secureCert = issueClientCert(pki, "secure", "/CN=secure", { serverAuth: true, sans: `DNS:secure.${cluster}` });
  secure = await startUpstream("secure", { tls: { cert: secureCert.cert, key: secureCert.key } });
  banner = createServer((s) => {
    s.write("220 banner ready\r\n");
    s.pipe(s);
  });
  await new Promise<void>((resolve) => banner.listen(0, "127.0.0.1", resolve));
  const kedgeConfig = join(dir, "kedge.json");
  writeFileSync(kedgeConfig, JSON.stringify({
    server: { bind_address: "127.0.0.1", http_tls_port: 0, admin_port: 0, log_level: "error", tls_cert_file: pki.serverCertFile, tls_key_file: pki.serverKeyFile, tls_client_ca_files: [pki.caFile] },
    auth: { bearer_token: kedgeToken },
    // Routed on the authority: a call reaches the greeter only with the name the client meant.
    grpc: { backends: [{ name: "greeter", static: { addresses: [`127.0.0.1:${greeter.port}`] } }], routes: [{ backend_name: "greeter", authority_host_matcher: `greeter.${cluster}` }] },
    http: {
      backends: [
        { name: "secure", static: { addresses: [`127.0.0.1:${secure.port}`] } },
        { name: "banner", static: { addresses: [`127.0.0.1:${(banner.address() as { port: number }).port}`] } },
      ],
      routes: [
        { backend_name: "banner", host_matcher: `banner.${cluster}`, port_matcher: 2525 },
        { backend_name: "secure", host_matcher: `secure.${cluster}`, port_matcher: 8443 },
        { backend_name: "secure", host_matcher: `secure.${cluster}`, port_matcher: 443, auth: { allowed_client_subjects: ["CN=nobody"] } },
      ],
    },
  }));
  kedge = runBinary(["--config", kedgeConfig], dir);
  await waitFor(() => /\btls=\d+/.test(kedge.stdout()), "kedge to listen", kedge);
  ports.kedgeTls = portIn(kedge.stdout(), "tls");
  const kedgeUrl = `https://localhost:${ports.kedgeTls}`;
  const winchConfig = join(dir, "winch.json");
  writeFileSync(winchConfig, JSON.stringify({
    server: { bind_address: "127.0.0.1", http_port: 0, grpc_port: 0, monitoring_port: 0, ca_files: [pki.caFile], client_cert_file: pki.clientCertFile, client_key_file: pki.clientKeyFile, unknown_hosts: "REFUSE", log_level: "warn" },
    routes: [
      { direct: { key: `wrong.${cluster}`, url: kedgeUrl }, proxy_auth: "wrong", backend_auth: "app" },
      { direct: { key: `grpc-only.${cluster}`, url: kedgeUrl }, proxy_auth: "kedge", backend_auth: "app", protocol: "GRPC" },
      { regexp: { exp: "^[a-z-]+[.]cluster-1[.]internal[.]example[.]com$", url: kedgeUrl }, proxy_auth: "kedge", backend_auth: "app" },
    ],
    auth_sources: [
      { name: "kedge", token: { token: kedgeToken } },
      { name: "wrong", token: { token: "not-the-kedge-token" } },
      { name: "app", token: { token: appToken } },
    ],
  }));
  winch = runBinary(["winch", "--config", winchConfig], dir);
  await waitFor(() => /\bmonitoring=\d+/.test(winch.stdout()), "winch to listen", winch);
  ports.http = portIn(winch.stdout(), "http");
  ports.monitoring = portIn(winch.stdout(), "monitoring");
});

afterAll(async () => {
  kedge?.proc.kill("SIGKILL");
  winch?.proc.kill("SIGKILL");
  await greeter?.close();
  await secure?.close();
  banner?.close();
});

interface Outcome {
  message?: string;
  auth?: string;
  requestId?: string;
  code?: number;
  details?: string;
}

/** Runs the grpc-js client under Node with `env` as its whole environment: the proxy comes from there alone. */
async function grpcClient(env: Record<string, string>, args: { target: string; authority?: string; stream?: boolean }): Promise<{ unary: Outcome; stream?: number[] | Outcome }> {
  const proc = Bun.spawn(["node", join(root, "test/helpers/grpc-env-client.mjs"), JSON.stringify(args)], { env, stdout: "pipe", stderr: "pipe" });
  const [out, err] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  if ((await proc.exited) !== 0) throw new Error(`grpc client failed: ${err}`);
  return JSON.parse(out);
}

const winchProxy = () => `http://127.0.0.1:${ports.http}`;
const metrics = async () => (await fetch(`http://127.0.0.1:${ports.monitoring}/metrics`)).text();
const kedgeLabel = () => `localhost:${ports.kedgeTls}`;

describe("gRPC through grpc_proxy: winch serves the tunnel's HTTP/2 itself", () => {
  it("grpc_proxy: a unary and a server-streaming call succeed, backend_auth reaching the backend and proxy_auth passing kedge", async () => {
    const r = await grpcClient({ grpc_proxy: winchProxy() }, { target: `greeter.${cluster}:8080`, stream: true });
    expect(r.unary.details).toBeUndefined();
    expect(r.unary.message).toBe("Hello kedge!");
    expect(r.unary.auth).toBe(`Bearer ${appToken}`); // backend_auth: only winch's gRPC path can add it
    expect(r.unary.requestId).toMatch(/^winch-/);
    expect(r.stream).toEqual([1, 2, 3]);
    expect(await metrics()).toMatch(new RegExp(`winch_grpc_requests_total\\{backend_name="${kedgeLabel()}",grpc_method="/e2e.helloworld.Greeter/SayHello",grpc_code="0"\\} [1-9]`));
  });

  it("https_proxy: grpc-js takes it too, with the same result", async () => {
    const r = await grpcClient({ https_proxy: winchProxy() }, { target: `greeter.${cluster}:9090` });
    expect(r.unary.message).toBe("Hello kedge!");
    expect(r.unary.auth).toBe(`Bearer ${appToken}`);
  });

  it("a route with the wrong proxy credentials: UNAUTHENTICATED from kedge", async () => {
    const r = await grpcClient({ grpc_proxy: winchProxy() }, { target: `wrong.${cluster}:8080` });
    expect(r.unary.code).toBe(16); // UNAUTHENTICATED
    expect(r.unary.details).toContain("Token does not match");
  });

  it("maps a call whose :authority names no host (an IP literal) by the CONNECT target", async () => {
    const r = await grpcClient({ grpc_proxy: winchProxy() }, { target: `greeter.${cluster}:8080`, authority: "127.0.0.1:8080" });
    expect(r.unary.details).toBeUndefined();
    expect(r.unary.message).toBe("Hello kedge!");
  });
});

describe("other tunnels to the same routes", () => {
  it("a TLS tunnel on a port other than 443 still goes through kedge's CONNECT: curl verifies the backend end to end", async () => {
    const r = await curl(["-p", "-x", winchProxy(), "--cacert", pki.caFile, `https://secure.${cluster}:8443/over-tls`]);
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toMatchObject({ upstream: "secure", url: "/over-tls" });
  });

  it("on port 443 kedge is asked first, and its refusal reaches the client with its status", async () => {
    const r = await curl(["-p", "-x", winchProxy(), "--cacert", pki.caFile, `https://secure.${cluster}/`]);
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toContain("403");
  });

  it("after winch's 200, kedge's refusal closes the client's connection with one warn line and a count", async () => {
    const r = await curl(["-p", "-x", winchProxy(), "--cacert", pki.caFile, `https://wrong.${cluster}:8443/`]);
    expect(r.exitCode).not.toBe(0);
    await waitFor(() => winch.stderr().includes("closed a CONNECT tunnel"), "winch's warn line", winch);
    const line = JSON.parse(winch.stderr().split("\n").find((l) => l.includes("closed a CONNECT tunnel") && l.includes(`wrong.${cluster}`))!);
    expect(line).toMatchObject({ level: "warn", target: `wrong.${cluster}:8443`, status: 401, errorType: "unauthorized" });
    expect(line.error).toContain("Token does not match");
    expect(await metrics()).toMatch(new RegExp(`winch_proxy_errors_total\\{backend_name="${kedgeLabel()}",type="tunnel-refused"\\} 1`));
  });

  it("a client that waits for the server to speak first (SMTP, MySQL, SSH) gets kedge's tunnel after a short silence, not a hang", async () => {
    const socket = connect(ports.http, "127.0.0.1");
    let seen = "";
    socket.on("data", (d) => void (seen += d.toString("latin1")));
    socket.write(`CONNECT banner.${cluster}:2525 HTTP/1.1\r\nhost: banner.${cluster}:2525\r\n\r\n`);
    await waitFor(() => seen.includes("220 banner ready"), "the server's banner through the tunnel");
    expect(seen).toMatch(/^HTTP\/1\.1 200/);
    socket.write("HELO winch\r\n");
    await waitFor(() => seen.includes("HELO winch"), "the echo of what the client sent after the banner");
    socket.destroy();
  });

  it("a GRPC-only route closes a tunnel that is not HTTP/2", async () => {
    const r = await curl(["-p", "-x", winchProxy(), `http://grpc-only.${cluster}:8080/`]);
    expect(r.exitCode).not.toBe(0);
    await waitFor(() => winch.stderr().includes(`grpc-only.${cluster}:8080`), "winch's warn line", winch);
  });
});
