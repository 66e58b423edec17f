import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import net from "node:net";
import { makeTestPki, type TestPki } from "./helpers/certs.ts";
import { curl } from "./helpers/curl.ts";
import { startTestKedge, type TestKedge } from "./helpers/kedge.ts";
import { rawHead } from "./helpers/raw-http.ts";
import { startUpstream, type Upstream } from "./helpers/upstream.ts";
import { until } from "./helpers/wait.ts";

// CONNECT through kedge: what winch sends for HTTPS_PROXY clients. The tunnel goes to the
// backend the host:port's route names, after the route's access check, and the client's TLS runs
// end to end with the backend (kedge terminates nothing inside the tunnel).

const token = "connect-test-token";
const deadPort = 1;
let pki: TestPki;
let plain: Upstream;
let secure: Upstream;
let kedge: TestKedge;

beforeAll(async () => {
  pki = makeTestPki();
  plain = await startUpstream("plain");
  secure = await startUpstream("secure", { tls: { cert: pki.serverCert, key: pki.serverKey } });
  kedge = await startTestKedge({
    server: { bind_address: "127.0.0.1", http_port: 0, http_tls_port: 0, admin_port: 0, log_level: "error", tls_cert_file: pki.serverCertFile, tls_key_file: pki.serverKeyFile },
    auth: { bearer_token: token },
    http: {
      backends: [
        { name: "plain", static: { addresses: [`127.0.0.1:${plain.port}`] } },
        { name: "secure", static: { addresses: [`127.0.0.1:${secure.port}`] } },
        { name: "down", static: { addresses: [`127.0.0.1:${deadPort}`] } },
        { name: "quiet", static: { addresses: [`127.0.0.1:${plain.port}`] }, timeouts: { tunnel_idle: "0.3s" } },
      ],
      routes: [
        { backend_name: "plain", host_matcher: "plain.internal", port_matcher: 80 },
        { backend_name: "secure", host_matcher: "localhost", port_matcher: 443 },
        { backend_name: "plain", host_matcher: "paths.internal", path_rules: ["/api/*"] },
        { backend_name: "down", host_matcher: "down.internal" },
        { backend_name: "quiet", host_matcher: "quiet.internal", port_matcher: 80 },
      ],
    },
  });
});

afterAll(async () => {
  await kedge?.shutdown();
  await plain?.close();
  await secure?.close();
});

const viaKedge = (extra: string[]) => ["-p", "-x", `https://127.0.0.1:${kedge.ports.tls}`, "--proxy-cacert", pki.caFile, ...extra];
const bearer = ["--proxy-header", `Proxy-Authorization: Bearer ${token}`];

/** Sends a raw CONNECT and returns kedge's answer head. */
const rawConnect = (port: number, target: string, headers: string) => rawHead(port, `CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n${headers}\r\n`);

describe("CONNECT through kedge", () => {
  it("tunnels plain HTTP to the route's backend: curl -p over kedge's TLS listener", async () => {
    const r = await curl([...viaKedge(bearer), "http://plain.internal/hello"]);
    expect(r.status).toBe(200);
    const body = JSON.parse(r.body);
    expect(body.upstream).toBe("plain");
    expect(body.url).toBe("/hello");
    // Inside the tunnel kedge is not an HTTP proxy: its credential and headers never reach the backend.
    expect(body.headers["proxy-authorization"]).toBeUndefined();
    expect(body.headers["x-kedge-request-id"]).toBeUndefined();
  });

  it("carries the client's own TLS end to end: curl verifies the backend's certificate through the tunnel", async () => {
    const r = await curl([...viaKedge(bearer), "--cacert", pki.caFile, "https://localhost/over-tls"]);
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body).upstream).toBe("secure");
    expect(secure.seen.at(-1)?.url).toBe("/over-tls");
  });

  it("refuses without credentials (401) and with a wrong token, saying why", async () => {
    const seenBefore = plain.seen.length;
    const none = await rawConnect(kedge.ports.http, "plain.internal:80", "");
    expect(none).toStartWith("HTTP/1.1 401");
    expect(none).toContain("x-kedge-error-type: unauthorized");
    const wrong = await curl([...viaKedge(["--proxy-header", "Proxy-Authorization: Bearer nope"]), "http://plain.internal/"]);
    expect(wrong.exitCode).not.toBe(0);
    expect(wrong.stderr).toContain("401");
    expect(plain.seen.length).toBe(seenBefore); // nothing reached the backend
  });

  it("never opens a tunnel to a route with path rules (no path can be enforced inside one)", async () => {
    const head = await rawConnect(kedge.ports.http, "paths.internal:80", `Proxy-Authorization: Bearer ${token}\r\n`);
    expect(head).toStartWith("HTTP/1.1 502");
    expect(head).toContain("x-kedge-error-type: no-route");
  });

  it("answers 502 when the backend is down, and 400 for a target without a port", async () => {
    const down = await rawConnect(kedge.ports.http, "down.internal:80", `Proxy-Authorization: Bearer ${token}\r\n`);
    expect(down).toStartWith("HTTP/1.1 502");
    expect(down).toContain("x-kedge-error-type: no-connection-to-all-resolved-addresses");
    const bad = await rawConnect(kedge.ports.http, "plain.internal", `Proxy-Authorization: Bearer ${token}\r\n`);
    expect(bad).toStartWith("HTTP/1.1 400");
  });

  it("keeps serving ordinary requests on the same listener", async () => {
    const r = await curl(["--cacert", pki.caFile, "-H", "Host: plain.internal:80", "-H", `Proxy-Authorization: Bearer ${token}`, `https://localhost:${kedge.ports.tls}/after`]);
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body).url).toBe("/after");
  });

  it("closes a tunnel once neither side has sent a byte for the backend's tunnel_idle, after carrying a request", async () => {
    const socket = net.connect(kedge.ports.http, "127.0.0.1");
    let got = "";
    let closed = false;
    socket.on("data", (d) => (got += d.toString("latin1")));
    socket.on("close", () => (closed = true));
    socket.on("error", () => {});
    socket.write(`CONNECT quiet.internal:80 HTTP/1.1\r\nHost: quiet.internal:80\r\nProxy-Authorization: Bearer ${token}\r\n\r\n`);
    await until("the tunnel to open", () => got.includes("\r\n\r\n"));
    expect(got).toStartWith("HTTP/1.1 200 ");
    socket.write("GET /through HTTP/1.1\r\nHost: quiet.internal\r\n\r\n");
    await until("the backend's answer through the tunnel", () => got.includes("through"));
    expect(closed).toBe(false);
    await until("kedge to close the silent tunnel", () => closed);
    const metrics = await (await fetch(`http://127.0.0.1:${kedge.ports.admin}/metrics`)).text();
    expect(metrics).toMatch(/kedge_proxy_errors_total\{backend_name="quiet",type="tunnel-idle-timeout"\} 1/);
  });
});
