import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import net from "node:net";
import { loadWinchConfig } from "../src/winch/config.ts";
import { startWinch, type Winch } from "../src/winch/winch.ts";
import { makeTestPki, type TestPki } from "./helpers/certs.ts";
import { startTestKedge, type TestKedge } from "./helpers/kedge.ts";
import { startUpstream, type Upstream } from "./helpers/upstream.ts";

// winch's HTTP proxy port runs on kedge's own HTTP/1.1 server: the same strict head parsing,
// one answer per request, 100 Continue only once a request may go, and bodies read as they come.

const domain = "localhost.internal.example.com";
const kedgeToken = "kedge-proxy-token";
let pki: TestPki;
let backend: Upstream;
let kedge: TestKedge;
let winch: Winch;

beforeAll(async () => {
  pki = makeTestPki();
  backend = await startUpstream("app");
  kedge = await startTestKedge({
    server: { bind_address: "127.0.0.1", http_tls_port: 0, admin_port: 0, log_level: "error", tls_cert_file: pki.serverCertFile, tls_key_file: pki.serverKeyFile },
    auth: { bearer_token: kedgeToken },
    http: { backends: [{ name: "app", static: { addresses: [`127.0.0.1:${backend.port}`] } }], routes: [{ backend_name: "app", host_matcher: `app.${domain}` }] },
  });
  winch = await startWinch(
    loadWinchConfig({
      embedded: {
        server: { http_port: 0, grpc_port: 0, ca_files: [pki.caFile] },
        routes: [{ regexp: { exp: "^[a-z-]+[.](?P<cluster>[a-z0-9-]+)[.]internal[.]example[.]com$", url: `https://\${cluster}:${kedge.ports.tls}` }, proxy_auth: "kedge" }],
        auth_sources: [{ name: "kedge", token: { token: kedgeToken } }],
      },
    }),
  );
});

afterAll(async () => {
  await winch?.close();
  await kedge?.shutdown();
  await backend?.close();
});

type Step = string | { waitFor: string } | { sleep: number };

/** Talks to winch over TCP: writes strings, waits for text to arrive or for time to pass, then reads until winch closes. */
function converse(steps: Step[]): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = "";
    let wanted: { text: string; resume: () => void } | undefined;
    const socket = net.connect(winch.ports.http, "127.0.0.1");
    socket.on("data", (d) => {
      got += d.toString("latin1");
      if (wanted && got.includes(wanted.text)) wanted.resume();
    });
    socket.on("error", reject);
    socket.on("close", () => resolve(got));
    socket.once("connect", async () => {
      for (const step of steps) {
        if (typeof step === "string") socket.write(step);
        else if ("sleep" in step) await Bun.sleep(step.sleep);
        else if (!got.includes(step.waitFor)) await new Promise<void>((resume) => (wanted = { text: step.waitFor, resume }));
      }
    });
  });
}

const statusLines = (text: string) => text.match(/HTTP\/1\.1 \d{3}[^\r]*/g) ?? [];

describe("winch's HTTP port on kedge's HTTP/1.1 server", () => {
  it("answers a malformed request once, with 400 and winch's error headers, then closes", async () => {
    const heads = [
      `GET http://app.${domain}/ HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n`,
      `POST http://app.${domain}/ HTTP/1.1\r\nHost: app.${domain}\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
      `GET http://app.${domain}/ HTTP/1.1\nHost: app.${domain}\r\n\r\n`,
    ];
    for (const head of heads) {
      const got = await converse([head]);
      expect(statusLines(got)).toEqual(["HTTP/1.1 400 Bad Request"]);
      expect(got).toContain("x-winch-error-type: bad-request");
      expect(got).toMatch(/x-winch-error: \S/);
      expect(got).toMatch(/x-kedge-request-id: winch-/);
    }
    expect(backend.seen).toHaveLength(0);
  });

  it("Expect: 100-continue: 100 Continue once winch can send the request, then the body goes through kedge", async () => {
    const got = await converse([
      `POST http://app.${domain}/echo HTTP/1.1\r\nHost: app.${domain}\r\nExpect: 100-continue\r\nContent-Length: 5\r\nConnection: close\r\n\r\n`,
      { waitFor: "100 Continue" },
      "hello",
    ]);
    expect(statusLines(got)).toEqual(["HTTP/1.1 100 Continue", "HTTP/1.1 200 OK"]);
    expect(got).toEndWith("hello\r\n0\r\n\r\n");
  });

  it("Expect: 100-continue: a request winch refuses gets its answer and no 100 Continue", async () => {
    const got = await converse([`POST http://127.0.0.1:9/ HTTP/1.1\r\nHost: 127.0.0.1:9\r\nExpect: 100-continue\r\nContent-Length: 5\r\nConnection: close\r\n\r\n`]);
    expect(statusLines(got)).toEqual(["HTTP/1.1 502 Bad Gateway"]);
    expect(got).toContain("x-winch-error-type: ip-literal");
  });

  it("reads a slow client's body as it comes and sends it whole", async () => {
    const got = await converse([
      `POST http://app.${domain}/echo HTTP/1.1\r\nHost: app.${domain}\r\nContent-Length: 15\r\nConnection: close\r\n\r\n`,
      "slow ",
      { sleep: 300 },
      "body ",
      { sleep: 300 },
      "ends.",
    ]);
    expect(statusLines(got)).toEqual(["HTTP/1.1 200 OK"]);
    expect(got.replace(/\r\n[0-9a-f]+\r\n/g, "")).toContain("slow body ends.");
  });

  it("answers pipelined requests once each, in order, an early answer's body read off in between", async () => {
    const got = await converse([
      `POST http://127.0.0.1:9/ HTTP/1.1\r\nHost: 127.0.0.1:9\r\nContent-Length: 5\r\n\r\nhello` +
        `GET http://app.${domain}/second HTTP/1.1\r\nHost: app.${domain}\r\n\r\n` +
        `GET /wpad.dat HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`,
    ]);
    expect(statusLines(got)).toEqual(["HTTP/1.1 502 Bad Gateway", "HTTP/1.1 200 OK", "HTTP/1.1 200 OK"]);
    expect(got).toContain('"url":"/second"');
    expect(got).toContain("FindProxyForURL");
  });

  it("answers HEAD for the PAC file with its length and no body", async () => {
    const got = await converse([`HEAD /wpad.dat HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`]);
    expect(statusLines(got)).toEqual(["HTTP/1.1 200 OK"]);
    expect(got).toContain("content-type: application/x-ns-proxy-autoconfig");
    expect(got).toMatch(/content-length: [1-9]\d*\r\n/);
    expect(got).toEndWith("\r\n\r\n");
  });
});
