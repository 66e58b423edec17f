import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import net from "node:net";
import type { Server } from "bun";
import { loadWinchConfig } from "../src/winch/config.ts";
import { startWinch, type Winch } from "../src/winch/winch.ts";
import { makeTestPki, type TestPki } from "./helpers/certs.ts";
import { curl } from "./helpers/curl.ts";
import { startTestKedge, type TestKedge } from "./helpers/kedge.ts";

// WebSocket through winch and kedge, the way clients send it: as an absolute-URI upgrade, or
// (Bun's WebSocket, kubectl exec and port-forward) inside a CONNECT to port 80, which winch serves
// itself so the route's credentials are injected there too.

const domain = "localhost.internal.example.com";
const kedgeToken = "kedge-proxy-token";
const appToken = "app-backend-token";
let pki: TestPki;
let ws: Server<{ auth: string }>;
let kedge: TestKedge;
let winch: Winch;

beforeAll(async () => {
  pki = makeTestPki();
  ws = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(req, server) {
      const auth = req.headers.get("authorization") ?? "";
      if (server.upgrade(req, { data: { auth } })) return undefined;
      return Response.json({ url: new URL(req.url).pathname, auth, proxyAuth: req.headers.get("proxy-authorization") });
    },
    websocket: {
      message(socket, message) {
        socket.send(`echo [${socket.data.auth}]: ${message}`);
      },
    },
  });
  kedge = await startTestKedge({
    server: { bind_address: "127.0.0.1", http_tls_port: 0, admin_port: 0, log_level: "error", tls_cert_file: pki.serverCertFile, tls_key_file: pki.serverKeyFile },
    auth: { bearer_token: kedgeToken },
    http: { backends: [{ name: "ws", static: { addresses: [`127.0.0.1:${ws.port}`] } }], routes: [{ backend_name: "ws", host_matcher: `ws.${domain}` }] },
  });
  winch = await startWinch(
    loadWinchConfig({
      embedded: {
        server: { http_port: 0, grpc_port: 0, ca_files: [pki.caFile] },
        routes: [{ regexp: { exp: "^[a-z-]+[.](?P<cluster>[a-z0-9-]+)[.]internal[.]example[.]com$", url: `https://\${cluster}:${kedge.ports.tls}` }, proxy_auth: "kedge", backend_auth: "app" }],
        auth_sources: [
          { name: "kedge", token: { token: kedgeToken } },
          { name: "app", token: { token: appToken } },
        ],
      },
    }),
  );
});

afterAll(async () => {
  await winch?.close();
  await kedge?.shutdown();
  ws?.stop(true);
});

/** A client's masked text frame (RFC 6455 §5.2), payload under 126 bytes. */
function textFrame(text: string): Buffer {
  const payload = Buffer.from(text);
  const mask = Buffer.from([1, 2, 3, 4]);
  return Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, payload.map((b, i) => b ^ mask[i % 4])]);
}

/** Opens a raw connection to winch, sends `request`, and reads until `done` says the text is complete. */
function exchangeRaw(request: string, done: (text: string) => boolean, then?: (socket: net.Socket) => void): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = "";
    let followed = false;
    const socket = net.connect(winch.ports.http, "127.0.0.1", () => socket.write(request));
    socket.on("data", (d) => {
      got += d.toString("latin1");
      if (then && !followed && got.includes("\r\n\r\n")) {
        followed = true;
        then(socket);
      }
      if (done(got)) {
        socket.destroy();
        resolve(got);
      }
    });
    socket.on("error", reject);
    socket.on("close", () => resolve(got));
  });
}

describe("WebSocket through winch", () => {
  it("absolute-URI upgrade: winch injects the route's credentials, kedge's 101 comes back, frames flow", async () => {
    const key = Buffer.from("winch-upgrade-ky").toString("base64");
    const got = await exchangeRaw(
      `GET http://ws.${domain}/chat HTTP/1.1\r\nHost: ws.${domain}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      (text) => text.includes("hi there"),
      (socket) => socket.write(textFrame("hi there")),
    );
    const head = got.slice(0, got.indexOf("\r\n\r\n"));
    expect(head).toStartWith("HTTP/1.1 101 ");
    expect(head.toLowerCase()).toContain(`sec-websocket-accept: ${new Bun.CryptoHasher("sha1").update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest("base64").toLowerCase()}`);
    expect(head).toContain("x-kedge-backend-name: ws");
    // The server's unmasked text frame: the backend saw winch's injected backend credential.
    expect(got.slice(head.length + 4)).toContain(`echo [Bearer ${appToken}]: hi there`);
  });

  it("a WebSocket client that CONNECTs through the proxy (Bun's, like kubectl's) gets the same, credentials included", async () => {
    const socket = new WebSocket(`ws://ws.${domain}/inside`, { proxy: `http://127.0.0.1:${winch.ports.http}` } as never);
    const reply = await new Promise<string>((resolve, reject) => {
      socket.onopen = () => socket.send("through a tunnel");
      socket.onmessage = (e) => resolve(String(e.data));
      socket.onerror = () => reject(new Error("WebSocket through winch failed"));
    });
    expect(reply).toBe(`echo [Bearer ${appToken}]: through a tunnel`);
    socket.close();
  });

  it("serves plain HTTP inside a CONNECT to port 80 as a proxied request: curl -p", async () => {
    const r = await curl(["-p", "-x", `http://127.0.0.1:${winch.ports.http}`, `http://ws.${domain}/plain`]);
    expect(r.status).toBe(200);
    // kedge's proxy credential stopped at kedge; the backend got the route's own.
    expect(JSON.parse(r.body)).toEqual({ url: "/plain", auth: `Bearer ${appToken}`, proxyAuth: null });
  });

  it("refuses an upgrade it must not splice (h2c) with 400 and says why", async () => {
    const got = await exchangeRaw(`GET http://ws.${domain}/x HTTP/1.1\r\nHost: ws.${domain}\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABk\r\n\r\n`, () => false);
    expect(got).toStartWith("HTTP/1.1 400 ");
    expect(got).toContain('x-winch-error: winch passes on WebSocket and SPDY upgrades without a body, not "h2c"');
  });

  it("passes kedge's refusal through: a wrong path's upgrade gets kedge's answer and the connection closes", async () => {
    const got = await exchangeRaw(`GET http://nothing.${domain}/x HTTP/1.1\r\nHost: nothing.${domain}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n`, () => false);
    expect(got).toStartWith("HTTP/1.1 502 ");
    expect(got).toContain("x-kedge-error-type: no-route");
  });
});
