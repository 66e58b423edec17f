import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import * as grpc from "@grpc/grpc-js";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import https from "node:https";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Server } from "bun";
import { ensureBinary, runBinary, waitFor, type Running } from "./helpers/binary.ts";
import { makeTestPki, type TestPki } from "./helpers/certs.ts";
import { curl } from "./helpers/curl.ts";
import { GreeterClient, startGreeter, unary, type GreeterServer } from "./helpers/grpc.ts";
import { rawHead } from "./helpers/raw-http.ts";

// The port and scheme a client names reach kedge through winch: winch sends kedge the request as
// a client using kedge itself as its HTTP proxy would (absolute-form), so port_matcher and
// proxy_mode behave the same through winch as with curl → kedge directly. Real binaries: kedge on
// TLS, winch in front of it, a raw backend that records the request heads it gets.

const dir = mkdtempSync(join(tmpdir(), "winch-wire-"));
const domain = "wire.internal.example.com";
let pki: TestPki;
let backend: net.Server;
/** Request heads the raw backend received, as text. */
const heads: string[] = [];
let ws: Server<undefined>;
let greeter: GreeterServer;
let relay: net.Server;
/** TCP connections winch opened to kedge (through the relay). */
let kedgeConnections = 0;
let kedge: Running;
let winch: Running;
let ports: { kedge: number; winch: number; winchGrpc: number };

/** Answers every request (no body) with 200 and the request line and Host it got, keeping the connection. */
function startRawBackend(): Promise<net.Server> {
  const server = net.createServer((socket) => {
    let pending = "";
    socket.on("data", (d) => {
      pending += d.toString("latin1");
      for (let end = pending.indexOf("\r\n\r\n"); end >= 0; end = pending.indexOf("\r\n\r\n")) {
        const head = pending.slice(0, end);
        pending = pending.slice(end + 4);
        heads.push(head);
        const host = /^host:\s*(.*)$/im.exec(head)?.[1] ?? null;
        const body = JSON.stringify({ line: head.slice(0, head.indexOf("\r\n")), host });
        socket.write(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`);
      }
    });
    socket.on("error", () => {});
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

/** A TCP relay to kedge's TLS port that counts winch's connections (TLS runs end to end through it). */
function startRelay(to: number): Promise<net.Server> {
  const server = net.createServer((client) => {
    kedgeConnections++;
    const upstream = net.connect(to, "127.0.0.1");
    client.pipe(upstream).pipe(client);
    client.on("error", () => upstream.destroy());
    upstream.on("error", () => client.destroy());
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

const portOf = (proc: Running, name: string) => Number(new RegExp(`\\b${name}=(\\d+)`).exec(proc.stdout())![1]);

beforeAll(async () => {
  ensureBinary();
  pki = makeTestPki();
  backend = await startRawBackend();
  ws = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch: (req, server) => (server.upgrade(req) ? undefined : new Response("not an upgrade", { status: 400 })),
    websocket: { message: (socket, message) => void socket.send(`echo: ${message}`) },
  });
  greeter = await startGreeter("wire");
  const raw = { static: { addresses: [`127.0.0.1:${(backend.address() as net.AddressInfo).port}`] } };
  const kedgeFile = join(dir, "kedge.json");
  writeFileSync(kedgeFile, JSON.stringify({
    server: { bind_address: "127.0.0.1", http_tls_port: 0, admin_port: 0, log_level: "info", tls_cert_file: pki.serverCertFile, tls_key_file: pki.serverKeyFile },
    http: {
      backends: [{ name: "port80", ...raw }, { name: "port8080", ...raw }, { name: "forward", ...raw }, { name: "reverse", ...raw }, { name: "ws", static: { addresses: [`127.0.0.1:${ws.port}`] } }],
      routes: [
        { backend_name: "port80", host_matcher: `p80.${domain}`, port_matcher: 80 },
        { backend_name: "port8080", host_matcher: `p8080.${domain}`, port_matcher: 8080 },
        { backend_name: "forward", host_matcher: `fwd.${domain}`, proxy_mode: "FORWARD_PROXY" },
        { backend_name: "reverse", host_matcher: `rev.${domain}`, proxy_mode: "REVERSE_PROXY" },
        { backend_name: "ws", host_matcher: `ws.${domain}`, port_matcher: 80 },
      ],
    },
    grpc: {
      backends: [{ name: "greeter", static: { addresses: [`127.0.0.1:${greeter.port}`] } }],
      routes: [{ backend_name: "greeter", authority_host_matcher: `greeter.${domain}`, authority_port_matcher: 8443 }],
    },
  }));
  kedge = runBinary(["--config", kedgeFile], dir);
  await waitFor(() => /tls=\d+/.test(kedge.stdout()), "kedge to listen", kedge);
  const kedgePort = portOf(kedge, "tls");
  relay = await startRelay(kedgePort);
  const winchFile = join(dir, "winch.json");
  writeFileSync(winchFile, JSON.stringify({
    server: { bind_address: "127.0.0.1", http_port: 0, grpc_port: 0, unknown_hosts: "REFUSE", ca_files: [pki.caFile], log_level: "info" },
    routes: [{ regexp: { exp: `^[a-z0-9-]+[.]wire[.]internal[.]example[.]com$`, url: `https://localhost:${(relay.address() as net.AddressInfo).port}` } }],
  }));
  winch = runBinary(["winch", "--config", winchFile], dir);
  await waitFor(() => /grpc=\d+/.test(winch.stdout()), "winch to listen", winch);
  ports = { kedge: kedgePort, winch: portOf(winch, "http"), winchGrpc: portOf(winch, "grpc") };
});

afterAll(async () => {
  kedge?.proc.kill("SIGKILL");
  winch?.proc.kill("SIGKILL");
  relay?.close();
  backend?.close();
  ws?.stop(true);
  await greeter?.close();
});

const viaWinch = (url: string, extra: string[] = []) => curl(["-x", `http://127.0.0.1:${ports.winch}`, ...extra, url]);
/** curl using kedge itself as its (HTTPS) proxy: the behaviour winch must reproduce. */
const viaKedge = (url: string) => curl(["-x", `https://localhost:${ports.kedge}`, "--proxy-cacert", pki.caFile, url]);

describe("the client's port and scheme reach kedge through winch", () => {
  it("a route with port_matcher 80 answers a plain http:// URL through winch", async () => {
    const r = await viaWinch(`http://p80.${domain}/x?y=1`);
    expect(r.status).toBe(200);
    expect(r.headers["x-kedge-backend-name"]).toBe("port80");
  });

  it("a route with port_matcher 8080 answers http://host:8080/ through winch", async () => {
    const r = await viaWinch(`http://p8080.${domain}:8080/`);
    expect(r.status).toBe(200);
    expect(r.headers["x-kedge-backend-name"]).toBe("port8080");
    const other = await viaWinch(`http://p8080.${domain}:8081/`);
    expect(other.status).toBe(502);
    expect(other.headers["x-kedge-error-type"]).toBe("no-route");
  });

  it("a FORWARD_PROXY route answers through winch; a REVERSE_PROXY-only route does not", async () => {
    const fwd = await viaWinch(`http://fwd.${domain}/`);
    expect(fwd.status).toBe(200);
    expect(fwd.headers["x-kedge-backend-name"]).toBe("forward");
    const rev = await viaWinch(`http://rev.${domain}/`);
    expect(rev.status).toBe(502);
    expect(rev.headers["x-kedge-error-type"]).toBe("no-route");
  });

  it("routes every URL as kedge does for curl using kedge itself as its proxy", async () => {
    const urls = [`http://p80.${domain}/`, `http://p80.${domain}:8080/`, `http://p8080.${domain}:8080/`, `http://p8080.${domain}/`, `http://fwd.${domain}/`, `http://rev.${domain}/`];
    for (const url of urls) {
      const [through, direct] = await Promise.all([viaWinch(url), viaKedge(url)]);
      expect([url, through.status, through.headers["x-kedge-backend-name"] ?? through.headers["x-kedge-error-type"]]).toEqual([url, direct.status, direct.headers["x-kedge-backend-name"] ?? direct.headers["x-kedge-error-type"]]);
    }
  });

  it("the backend gets origin-form with the Host the client named", async () => {
    const r = await viaWinch(`http://p8080.${domain}:8080/a/b?c=d`);
    expect(JSON.parse(r.body)).toEqual({ line: "GET /a/b?c=d HTTP/1.1", host: `p8080.${domain}:8080` });
    const plain = await viaWinch(`http://p80.${domain}/x`);
    expect(JSON.parse(plain.body)).toEqual({ line: "GET /x HTTP/1.1", host: `p80.${domain}` });
  });

  it("serves the plain HTTP inside a CONNECT to port 80 the same way (curl -p)", async () => {
    const r = await viaWinch(`http://fwd.${domain}/inside`, ["-p"]);
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body).line).toBe("GET /inside HTTP/1.1");
  });

  it("reuses its pooled connection to kedge for the next requests", async () => {
    await viaWinch(`http://p80.${domain}/warm`);
    const before = kedgeConnections;
    for (let i = 0; i < 3; i++) expect((await viaWinch(`http://p80.${domain}/again`)).status).toBe(200);
    expect(kedgeConnections).toBe(before);
  });
});

describe("kedge accepts the wire form from any HTTPS client", () => {
  /** One absolute-form GET to kedge's TLS listener with Node's https client, as the client library sends it. */
  const absoluteGet = (agent: https.Agent, url: string) =>
    new Promise<{ status: number; body: string; socket: object }>((resolve, reject) => {
      const { host } = new URL(url);
      const req = https.request({ host: "localhost", servername: "localhost", port: ports.kedge, path: url, headers: { host }, agent }, (res) => {
        let body = "";
        res.on("data", (d) => (body += d));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body, socket: req.socket! }));
      });
      req.on("error", reject);
      req.end();
    });

  it("routes Node's https client by the URI's port, on one kept-alive connection", async () => {
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca: readFileSync(pki.caFile, "utf8") });
    try {
      const first = await absoluteGet(agent, `http://p80.${domain}/node`);
      expect(first.status).toBe(200);
      expect(JSON.parse(first.body)).toEqual({ line: "GET /node HTTP/1.1", host: `p80.${domain}` });
      const second = await absoluteGet(agent, `http://p8080.${domain}:8080/node`);
      expect(second.status).toBe(200);
      expect(second.socket).toBe(first.socket);
    } finally {
      agent.destroy();
    }
  });
});

describe("upgrades through winch carry the port too", () => {
  it("a WebSocket client that CONNECTs to port 80 (Bun's, like kubectl's) reaches a port_matcher 80 route and frames flow", async () => {
    const socket = new WebSocket(`ws://ws.${domain}/chat`, { proxy: `http://127.0.0.1:${ports.winch}` } as never);
    const reply = await new Promise<string>((resolve, reject) => {
      socket.onopen = () => socket.send("hello");
      socket.onmessage = (e) => resolve(String(e.data));
      socket.onerror = () => reject(new Error("WebSocket through winch failed"));
    });
    socket.close();
    expect(reply).toBe("echo: hello");
  });

  it("an absolute-URI upgrade sent raw gets kedge's 101 from the port_matcher 80 route", async () => {
    const key = Buffer.from("wire-upgrade-key").toString("base64");
    const got = await rawHead(ports.winch, `GET http://ws.${domain}/raw HTTP/1.1\r\nHost: ws.${domain}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
    expect(got).toStartWith("HTTP/1.1 101 ");
    expect(got).toContain("x-kedge-backend-name: ws");
  });
});

describe("gRPC through winch keeps the :authority port", () => {
  const call = async (authority: string) => {
    const client = new GreeterClient(`127.0.0.1:${ports.winchGrpc}`, grpc.credentials.createInsecure(), { "grpc.default_authority": authority });
    try {
      return await unary(client, "sayHello", { name: "wire" });
    } finally {
      client.close();
    }
  };

  it("matches authority_port_matcher on the port the client dialled", async () => {
    const ok = await call(`greeter.${domain}:8443`);
    expect(ok.error).toBeUndefined();
    expect(ok.response.message).toBe("Hello wire!");
    const other = await call(`greeter.${domain}:9443`);
    expect(other.error?.code).toBe(grpc.status.UNIMPLEMENTED);
  });
});
