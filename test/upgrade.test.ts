import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import net from "node:net";
import type { Server } from "bun";
import { makeTestPki, type TestPki } from "./helpers/certs.ts";
import { startTestKedge, type TestKedge } from "./helpers/kedge.ts";
import { rawHttp } from "./helpers/raw-http.ts";
import { startUpstream, type Upstream } from "./helpers/upstream.ts";
import { until } from "./helpers/wait.ts";

// HTTP/1.1 Upgrade through kedge (RFC 9110 §7.8): WebSocket and SPDY (kubectl exec, attach,
// port-forward) reach the route's backend, and after its 101 the two connections are spliced.
// Other upgrades (h2c) are dropped like any hop-by-hop field, so no request can slip past the routes.

const token = "upgrade-test-token";
let pki: TestPki;
let ws: Server<{ path: string }>;
/** A raw TCP backend: answers every request with a 101 (its Upgrade value from the test), then echoes. */
let raw: net.Server;
let rawUpgrade = "websocket";
let plain: Upstream;
let kedge: TestKedge;
let closedOnBackend = 0;

beforeAll(async () => {
  pki = makeTestPki();
  ws = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(req, server) {
      const path = new URL(req.url).pathname;
      if (path === "/ws/refuse") return new Response("no websocket here\n", { status: 404 });
      if (server.upgrade(req, { data: { path }, headers: { "x-backend-saw-host": req.headers.get("host") ?? "" } })) return undefined;
      return new Response("upgrade expected\n", { status: 426 });
    },
    websocket: {
      message(socket, message) {
        socket.send(typeof message === "string" ? `echo ${socket.data.path}: ${message}` : message);
      },
      close() {
        closedOnBackend++;
      },
    },
  });
  raw = net.createServer((socket) => {
    let head = "";
    const onData = (d: Buffer) => {
      head += d.toString("latin1");
      const end = head.indexOf("\r\n\r\n");
      if (end < 0) return;
      socket.off("data", onData);
      // The 101 and the new protocol's first bytes in one write, then whatever the client sent with its head.
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ${rawUpgrade}\r\n\r\ngreeting;`);
      if (head.startsWith("GET /raw/bye ")) return void socket.end("bye;");
      if (head.length > end + 4) socket.write(`early:${head.slice(end + 4)};`);
      socket.on("data", (more: Buffer) => socket.write(`echo:${more.toString("latin1")};`));
    };
    socket.on("data", onData);
    socket.on("error", () => {});
  });
  await new Promise<void>((resolve) => raw.listen(0, "127.0.0.1", resolve));
  plain = await startUpstream("plain");
  kedge = await startTestKedge({
    server: { bind_address: "127.0.0.1", http_port: 0, http_tls_port: 0, admin_port: 0, log_level: "error", tls_cert_file: pki.serverCertFile, tls_key_file: pki.serverKeyFile },
    auth: { bearer_token: token },
    http: {
      backends: [
        { name: "ws", static: { addresses: [`127.0.0.1:${ws.port}`] } },
        { name: "ws-idle", static: { addresses: [`127.0.0.1:${ws.port}`] }, timeouts: { tunnel_idle: "0.5s" } },
        { name: "raw", static: { addresses: [`127.0.0.1:${(raw.address() as net.AddressInfo).port}`] } },
        { name: "plain", static: { addresses: [`127.0.0.1:${plain.port}`] } },
        { name: "down", static: { addresses: ["127.0.0.1:1"] } },
      ],
      // The bearer token is the global policy: only /guarded/ keeps it.
      routes: [
        { backend_name: "ws", path_rules: ["/ws/*"], auth: { public: true } },
        { backend_name: "ws-idle", path_rules: ["/idle/*"], auth: { public: true } },
        { backend_name: "ws", path_rules: ["/guarded/*"] },
        { backend_name: "raw", path_rules: ["/raw/*"], auth: { public: true } },
        { backend_name: "down", path_rules: ["/down/*"], auth: { public: true } },
        { backend_name: "plain", path_rules: ["/*"], auth: { public: true } },
      ],
    },
  });
});

afterAll(async () => {
  await kedge?.shutdown();
  ws?.stop(true);
  raw?.close();
  await plain?.close();
});

/** Opens a WebSocket and resolves once it is open, or rejects with what closed it. */
function openSocket(url: string, options: { headers?: Record<string, string>; tls?: { ca: string } } = {}): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    // Bun's WebSocket takes headers and TLS options where the browser's takes protocols.
    const socket = new WebSocket(url, options as never);
    socket.binaryType = "arraybuffer";
    socket.onopen = () => resolve(socket);
    socket.onerror = () => reject(new Error(`WebSocket ${url} failed`));
  });
}

function nextMessage(socket: WebSocket): Promise<string | ArrayBuffer> {
  return new Promise((resolve) => socket.addEventListener("message", (e) => resolve(e.data), { once: true }));
}

/** A raw exchange on one connection: writes `request`, resolves with everything read until `until` shows up. */
function rawUntil(port: number, request: string, until: string, then?: (socket: net.Socket) => void): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = "";
    let sentMore = false;
    const socket = net.connect(port, "127.0.0.1", () => socket.write(request));
    socket.on("data", (d) => {
      got += d.toString("latin1");
      if (then && !sentMore && got.includes("\r\n\r\n")) {
        sentMore = true;
        then(socket);
      }
      if (got.includes(until)) {
        socket.destroy();
        resolve(got);
      }
    });
    socket.on("error", reject);
    socket.on("close", () => resolve(got));
  });
}

/** An upgrade request; `connection` lists more Connection tokens (close, for rawHttp, which reads until the close). */
const upgradeHead = (path: string, upgrade: string, extra = "", connection = "") =>
  `GET ${path} HTTP/1.1\r\nHost: apps.internal\r\nConnection: Upgrade${connection}\r\nUpgrade: ${upgrade}\r\n${extra}\r\n`;

describe("WebSocket through kedge", () => {
  it("carries text and binary messages both ways, a 1 MB frame among them", async () => {
    const socket = await openSocket(`ws://127.0.0.1:${kedge.ports.http}/ws/chat`);
    socket.send("hello");
    expect(await nextMessage(socket)).toBe("echo /ws/chat: hello");
    const big = new Uint8Array(1 << 20).map((_, i) => i % 251);
    socket.send(big);
    const back = new Uint8Array((await nextMessage(socket)) as ArrayBuffer);
    expect(back.length).toBe(big.length);
    expect(Buffer.compare(Buffer.from(back), Buffer.from(big))).toBe(0);
    for (let i = 0; i < 50; i++) socket.send(`n${i}`);
    const replies: string[] = [];
    await new Promise<void>((resolve) =>
      socket.addEventListener("message", (e) => {
        replies.push(String(e.data));
        if (replies.length === 50) resolve();
      }),
    );
    expect(replies[49]).toBe("echo /ws/chat: n49");
    const before = closedOnBackend;
    socket.close();
    await until("the backend to see the close", () => closedOnBackend > before);
  });

  it("works over kedge's TLS listener, the client verifying kedge's certificate", async () => {
    const socket = await openSocket(`wss://localhost:${kedge.ports.tls}/ws/secure`, { tls: { ca: pki.ca } });
    socket.send("over tls");
    expect(await nextMessage(socket)).toBe("echo /ws/secure: over tls");
    socket.close();
  });

  it("answers the client with the backend's 101, kedge's tags added, the Host passed on", async () => {
    const key = Buffer.from("0123456789abcdef").toString("base64");
    const got = await rawUntil(kedge.ports.http, upgradeHead("/ws/head", "websocket", `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n`), "\r\n\r\n");
    const head = got.slice(0, got.indexOf("\r\n\r\n")).toLowerCase();
    expect(head).toStartWith("http/1.1 101 ");
    expect(head).toContain("connection: upgrade");
    expect(head).toContain("upgrade: websocket");
    // RFC 6455 §4.2.2: the accept value is derived from the client's key, so the handshake really went through.
    const accept = new Bun.CryptoHasher("sha1").update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest("base64");
    expect(head).toContain(`sec-websocket-accept: ${accept.toLowerCase()}`);
    expect(head).toContain("x-kedge-backend-name: ws");
    expect(head).toContain("x-backend-saw-host: apps.internal");
  });

  it("passes on the bytes that came with the 101 and those the client sent with its request", async () => {
    const got = await rawUntil(kedge.ports.http, `${upgradeHead("/raw/early", "websocket")}first`, "echo:second;", (s) => s.write("second"));
    const after = got.slice(got.indexOf("\r\n\r\n") + 4);
    expect(after).toContain("greeting;");
    // The backend read "first" with the head or right after it, depending on how the bytes were split.
    expect(after).toMatch(/(early|echo):first;/);
    expect(after).toContain("echo:second;");
  });

  it("closes the client's side when the backend closes its own", async () => {
    // rawUntil resolves on the close: waiting for text that never comes would time the test out instead.
    const got = await rawUntil(kedge.ports.http, upgradeHead("/raw/bye", "websocket"), "never sent");
    expect(got).toStartWith("HTTP/1.1 101 ");
    expect(got).toEndWith("greeting;bye;");
  });

  it("lets SPDY through as kubectl sends it (exec, attach, port-forward)", async () => {
    rawUpgrade = "SPDY/3.1";
    try {
      const got = await rawUntil(kedge.ports.http, upgradeHead("/raw/exec", "SPDY/3.1", "X-Stream-Protocol-Version: v4.channel.k8s.io\r\n"), "echo:frames;", (s) => s.write("frames"));
      expect(got).toStartWith("HTTP/1.1 101 ");
      expect(got).toContain("upgrade: SPDY/3.1");
      expect(got).toContain("echo:frames;");
    } finally {
      rawUpgrade = "websocket";
    }
  });

  it("gives the client a backend's refusal as an ordinary response", async () => {
    const r = await rawHttp(kedge.ports.http, upgradeHead("/ws/refuse", "websocket", "", ", close"));
    expect(r.status).toBe(404);
    expect(r.body).toBe("no websocket here\n");
  });

  it("answers 502 when the backend switches to a protocol the client did not ask for", async () => {
    rawUpgrade = "h2c";
    try {
      const r = await rawHttp(kedge.ports.http, upgradeHead("/raw/wrong", "websocket", "", ", close"));
      expect(r.status).toBe(502);
      expect(r.headers["x-kedge-error"]).toContain('switched to "h2c"');
      expect(r.text).not.toContain("greeting;");
    } finally {
      rawUpgrade = "websocket";
    }
  });

  it("answers 502 with kedge's error when the backend is down", async () => {
    const r = await rawHttp(kedge.ports.http, upgradeHead("/down/ws", "websocket", "", ", close"));
    expect(r.status).toBe(502);
    expect(r.headers["x-kedge-error-type"]).toBe("no-connection-to-all-resolved-addresses");
  });

  it("applies the route's access check before anything reaches the backend", async () => {
    await expect(openSocket(`ws://127.0.0.1:${kedge.ports.http}/guarded/x`)).rejects.toThrow();
    const refused = await rawHttp(kedge.ports.http, upgradeHead("/guarded/x", "websocket", "", ", close"));
    expect(refused.status).toBe(401);
    const socket = await openSocket(`ws://127.0.0.1:${kedge.ports.http}/guarded/x`, { headers: { "proxy-authorization": `Bearer ${token}` } });
    socket.send("let in");
    expect(await nextMessage(socket)).toBe("echo /guarded/x: let in");
    socket.close();
  });

  it("never asks a backend for h2c: the upgrade is dropped and the request served as HTTP/1.1", async () => {
    const r = await rawHttp(kedge.ports.http, upgradeHead("/plain/h2c", "h2c", "HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n", ", HTTP2-Settings, close"));
    expect(r.status).toBe(200);
    const seen = JSON.parse(r.body);
    expect(seen.headers.upgrade).toBeUndefined();
    expect(seen.headers["http2-settings"]).toBeUndefined();
    expect(seen.headers.connection ?? "").not.toContain("pgrade");
  });

  it("counts a switched request under code 101, not as one in flight, and closes the backend side with the client's", async () => {
    const scrape = async () => (await fetch(`http://127.0.0.1:${kedge.ports.admin}/metrics`)).text();
    const gauge = (text: string, series: string) => Number(new RegExp(`^${series} (\\d+)$`, "m").exec(text)?.[1] ?? -1);
    const socket = await openSocket(`ws://127.0.0.1:${kedge.ports.http}/ws/held`);
    socket.send("still here");
    await nextMessage(socket);
    const during = await scrape();
    // Graceful shutdown waits for requests in flight; a WebSocket may stay open for hours.
    expect(gauge(during, 'kedge_active_streams\\{protocol="http"\\}')).toBe(0);
    expect(gauge(during, "kedge_active_connections")).toBeGreaterThanOrEqual(1);
    expect(during).toMatch(/kedge_http_requests_total\{[^}]*backend_name="ws"[^}]*code="101"[^}]*\} [1-9]/);
    const before = closedOnBackend;
    socket.close();
    await until("the backend to see the close", () => closedOnBackend > before);
    await until("kedge to close its client connections", async () => gauge(await scrape(), "kedge_active_connections") === 0);
    const after = await fetch(kedge.url("/after"));
    expect(after.status).toBe(200);
  });

  it("closes a switched connection once neither side has sent a byte for the backend's tunnel_idle", async () => {
    const socket = await openSocket(`ws://127.0.0.1:${kedge.ports.http}/idle/quiet`);
    let closed = false;
    socket.addEventListener("close", () => (closed = true));
    // Traffic resets the clock: messages 100 ms apart keep it open for twice the timeout.
    for (let i = 0; i < 10; i++) {
      socket.send(`ping ${i}`);
      expect(await nextMessage(socket)).toBe(`echo /idle/quiet: ping ${i}`);
      await Bun.sleep(100);
    }
    expect(closed).toBe(false);
    await until("kedge to close the silent WebSocket", () => closed);
    const metrics = await (await fetch(`http://127.0.0.1:${kedge.ports.admin}/metrics`)).text();
    expect(metrics).toMatch(/kedge_proxy_errors_total\{backend_name="ws-idle",type="tunnel-idle-timeout"\} 1/);
    // The default (1h) leaves the other backend's WebSockets alone.
    const other = await openSocket(`ws://127.0.0.1:${kedge.ports.http}/ws/patient`);
    await Bun.sleep(600);
    other.send("after a pause");
    expect(await nextMessage(other)).toBe("echo /ws/patient: after a pause");
    other.close();
  });
});
