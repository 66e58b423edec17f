import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { createHash } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { gzipSync } from "node:zlib";
import { makeTestPki, type TestPki } from "./helpers/certs.ts";
import { curl } from "./helpers/curl.ts";
import { plainServer, startTestKedge, type TestKedge } from "./helpers/kedge.ts";
import { rawHttp } from "./helpers/raw-http.ts";
import { json, startUpstream, type Upstream } from "./helpers/upstream.ts";

let pki: TestPki;
let up: Upstream;
let kedge: TestKedge;
let gzipServer: http.Server;
const gzipped = gzipSync(Buffer.from("compressed payload ".repeat(100)));
let release: () => void = () => {};

beforeAll(async () => {
  pki = makeTestPki();
  up = await startUpstream("up");
  // A backend that sends a gzip body (must reach the client byte for byte) and a gated stream
  // (its second chunk is written only after the client has received the first).
  gzipServer = http.createServer((req, res) => {
    if (req.url === "/gated") {
      res.writeHead(200, { "content-type": "text/plain" });
      res.write("first\n");
      new Promise<void>((r) => (release = r)).then(() => res.end("second\n"));
      return;
    }
    res.writeHead(200, { "content-encoding": "gzip", "content-type": "text/plain", "content-length": String(gzipped.length) });
    res.end(gzipped);
  });
  await new Promise<void>((r) => gzipServer.listen(0, "127.0.0.1", r));
  const gzPort = (gzipServer.address() as AddressInfo).port;
  kedge = await startTestKedge({
    server: { ...plainServer, http_tls_port: 0, tls_cert_file: pki.serverCertFile, tls_key_file: pki.serverKeyFile },
    http: {
      backends: [
        { name: "up", static: { addresses: [`127.0.0.1:${up.port}`] } },
        { name: "gz", static: { addresses: [`127.0.0.1:${gzPort}`] } },
      ],
      routes: [
        { backend_name: "gz", path_rules: ["/gz", "/gated"] },
        { backend_name: "gz", host_matcher: "port443.test", port_matcher: 443 },
        { backend_name: "up" },
      ],
    },
  });
});

afterAll(async () => {
  await kedge.shutdown();
  await up.close();
  gzipServer.close();
});

describe("http proxying", () => {
  it("serves HTTP/2 and HTTP/1.1 on the TLS port by ALPN, to curl", async () => {
    const h2 = await curl(["--http2", "--cacert", pki.caFile, kedge.url("/hello?x=1", "tls")]);
    expect(h2.exitCode).toBe(0);
    expect(h2.httpVersion).toBe("2");
    expect(h2.status).toBe(200);
    expect(JSON.parse(h2.body)).toMatchObject({ upstream: "up", url: "/hello?x=1" });
    expect(h2.headers["x-kedge-backend-name"]).toBe("up");
    const h1 = await curl(["--http1.1", "--cacert", pki.caFile, kedge.url("/hello", "tls")]);
    expect(h1.httpVersion).toBe("1.1");
    expect(JSON.parse(h1.body).upstream).toBe("up");
  });

  it("takes 443 as the port of an https request whose Host names none", async () => {
    const r = await curl(["--cacert", pki.caFile, "-H", "Host: port443.test", kedge.url("/gz", "tls")]);
    expect(r.headers["content-encoding"]).toBe("gzip");
  });

  it("refuses TLS below 1.2", async () => {
    const r = await curl(["--tlsv1.1", "--tls-max", "1.1", "--cacert", pki.caFile, kedge.url("/", "tls")]);
    expect(r.exitCode).not.toBe(0);
  });

  it("sets X-Forwarded-*, keeps Host and Authorization, strips hop-by-hop headers and Proxy-Authorization", async () => {
    const r = await curl([
      "--http1.1", "--cacert", pki.caFile,
      "-H", "Host: app.example.com",
      "-H", "Authorization: Bearer for-the-backend",
      "-H", "Proxy-Authorization: Bearer for-kedge",
      "-H", "Connection: keep-alive, X-Hop",
      "-H", "X-Hop: secret",
      "-H", "X-Forwarded-For: 10.1.2.3",
      "--resolve", `app.example.com:${kedge.ports.tls}:127.0.0.1`, "-k",
      `https://app.example.com:${kedge.ports.tls}/h`,
    ]);
    const seen = JSON.parse(r.body).headers;
    expect(seen.host).toBe("app.example.com");
    expect(seen.authorization).toBe("Bearer for-the-backend");
    expect(seen["proxy-authorization"]).toBeUndefined();
    expect(seen["x-hop"]).toBeUndefined();
    expect(seen["x-forwarded-for"]).toBe("10.1.2.3, 127.0.0.1");
    expect(seen["x-forwarded-proto"]).toBe("https");
    expect(seen["x-forwarded-host"]).toBe("app.example.com");
  });

  it("generates a request id, passes it upstream and returns it; keeps one the client sent", async () => {
    const res = await fetch(kedge.url("/id"));
    const seen = (await json(res)).headers;
    expect(seen["x-kedge-request-id"]).toMatch(/^[0-9a-f-]{17}1[0-9a-f]{12}$/); // newRequestId's form, both of its parts written
    expect(res.headers.get("x-kedge-request-id")).toBe(seen["x-kedge-request-id"]);
    const given = await fetch(kedge.url("/id"), { headers: { "x-kedge-request-id": "abc-123" } });
    expect((await json(given)).headers["x-kedge-request-id"]).toBe("abc-123");
  });

  it("keeps repeated response headers such as Set-Cookie", async () => {
    const res = await fetch(kedge.url("/cookies"));
    await res.arrayBuffer();
    expect(res.headers.getSetCookie()).toEqual(["a=1", "b=2"]);
  });

  it("passes compressed bodies through untouched", async () => {
    const r = await rawHttp(kedge.ports.http, "GET /gz HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n");
    expect(r.headers["content-encoding"]).toBe("gzip");
    expect(Buffer.from(r.body, "latin1").equals(gzipped)).toBe(true);
  });

  it("streams a response chunk by chunk: the first chunk arrives before the backend writes the second", async () => {
    const res = await fetch(kedge.url("/gated"));
    const reader = res.body!.getReader();
    const first = await reader.read();
    expect(new TextDecoder().decode(first.value)).toBe("first\n");
    release();
    let rest = "";
    for (let c = await reader.read(); !c.done; c = await reader.read()) rest += new TextDecoder().decode(c.value);
    expect(rest).toBe("second\n");
  });

  it("streams a 50 MB body both ways over HTTP/1.1 and HTTP/2", async () => {
    const body = new Uint8Array(50 * 1024 * 1024);
    for (let i = 0; i < body.length; i += 4096) body[i] = i % 251;
    const want = createHash("sha256").update(body).digest("hex");
    const res = await fetch(kedge.url("/echo"), { method: "POST", body });
    const got = new Uint8Array(await res.arrayBuffer());
    expect(got.length).toBe(body.length);
    expect(createHash("sha256").update(got).digest("hex")).toBe(want);

    const file = `${pki.dir}/50mb.bin`;
    await Bun.write(file, body);
    const proc = Bun.spawn(["sh", "-c", `curl -sS --http2 --cacert ${pki.caFile} --data-binary @${file} ${kedge.url("/echo", "tls")} | sha256sum`], { stdout: "pipe" });
    expect((await new Response(proc.stdout).text()).split(" ")[0]).toBe(want);
  });

  it("streams a 50 MB response from the backend", async () => {
    const res = await fetch(kedge.url(`/big?bytes=${50 * 1024 * 1024}`));
    expect(res.headers.get("content-length")).toBe(String(50 * 1024 * 1024));
    expect((await res.arrayBuffer()).byteLength).toBe(50 * 1024 * 1024);
  });

  it("answers HEAD, 204 and 304 without a body and keeps the connection usable", async () => {
    const r = await rawHttp(
      kedge.ports.http,
      "HEAD /big?bytes=1000 HTTP/1.1\r\nHost: x\r\n\r\nGET /status/204 HTTP/1.1\r\nHost: x\r\n\r\nGET /status/304 HTTP/1.1\r\nHost: x\r\n\r\nGET /status/201 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    const statuses = [...r.text.matchAll(/^HTTP\/1\.1 (\d{3})/gm)].map((m) => m[1]);
    expect(statuses).toEqual(["200", "204", "304", "201"]);
    expect(r.text).toContain("content-length: 1000");
    expect(r.text.endsWith("status 201\n") || r.text.includes("status 201")).toBe(true);
  });

  it("ends an HTTP/2 response with a stream error when the backend dies mid-body", async () => {
    const r = await curl(["--http2", "--cacert", pki.caFile, kedge.url("/die", "tls")]);
    expect(r.status).toBe(200);
    expect(r.exitCode).toBe(92); // curl: HTTP/2 stream not closed cleanly
    const after = await curl(["--http2", "--cacert", pki.caFile, kedge.url("/after", "tls")]);
    expect(after.status).toBe(200);
  });

  it("reuses client keep-alive connections", async () => {
    const r = await curl(["-v", kedge.url("/a"), kedge.url("/b")]);
    expect(r.stderr).toContain("Re-using existing connection");
  });

  it("keeps warm connections to the backend", async () => {
    await (await fetch(kedge.url("/warm"))).arrayBuffer();
    const before = up.seen.length;
    const connectionsBefore = up.connections();
    for (let i = 0; i < 20; i++) await (await fetch(kedge.url("/warm"))).arrayBuffer();
    expect(up.seen.length - before).toBe(20);
    expect(up.connections() - connectionsBefore).toBe(0);
  });

  it("serves the admin endpoints", async () => {
    const admin = `http://127.0.0.1:${kedge.ports.admin}`;
    expect(await (await fetch(`${admin}/_healthz`)).text()).toBe("ok\n");
    expect((await json(await fetch(`${admin}/_version`))).kedge).toMatch(/^\d+\.\d+\.\d+/);
    const metrics = await (await fetch(`${admin}/metrics`)).text();
    expect(metrics).toMatch(/kedge_http_requests_total\{backend_name="up",code="200",route="2"\} \d+/);
    expect(metrics).toContain('kedge_http_request_duration_seconds_bucket{backend_name="up",code="200",route="2",le="+Inf"}');
    const config = await json(await fetch(`${admin}/debug/config`));
    expect(config.config.http.routes[2].backend_name).toBe("up");
  });
});
