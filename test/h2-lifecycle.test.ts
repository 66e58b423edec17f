import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { readFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import net from "node:net";
import tls from "node:tls";
import { makeTestPki, type TestPki } from "./helpers/certs.ts";
import { startGreeter, type GreeterServer } from "./helpers/grpc.ts";
import { frame, settings, type Frame } from "./helpers/h2-wire.ts";
import { startTestKedge } from "./helpers/kedge.ts";
import { until } from "./helpers/wait.ts";

// No client connection outlives its client: a client that stops granting flow-control window and
// then goes (FIN or RST) leaves no socket behind, and a stream the client never lets kedge answer
// is reset after server.h2_stream_send_timeout with its backend call cancelled.

let pki: TestPki;
let greeter: GreeterServer;
let backend: http.Server;
/** Backend responses that ended because kedge went away before the whole body was taken. */
let backendCancelled = 0;

/** An HTTP/1.1 backend answering every request with 64 MB, more than socket buffers hold between it and a stalled client. */
function startBodyBackend(): Promise<http.Server> {
  const block = Buffer.alloc(64 * 1024, 97);
  const server = http.createServer((_req, res) => {
    res.on("close", () => {
      if (!res.writableFinished) backendCancelled++;
    });
    res.writeHead(200, { "content-type": "application/octet-stream", "content-length": String(1024 * block.length) });
    let sent = 0;
    const pump = () => {
      while (sent < 1024) {
        sent++;
        if (!res.write(block)) return void res.once("drain", pump);
      }
      res.end();
    };
    pump();
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

function config(extra: Record<string, unknown> = {}) {
  return {
    server: {
      bind_address: "127.0.0.1",
      h2c_port: 0,
      http_tls_port: 0,
      admin_port: 0,
      log_level: "error",
      tls_cert_file: pki.serverCertFile,
      tls_key_file: pki.serverKeyFile,
      ...extra,
    },
    http: { backends: [{ name: "body", static: { addresses: [`127.0.0.1:${(backend.address() as AddressInfo).port}`] } }], routes: [{ backend_name: "body" }] },
    grpc: { backends: [{ name: "greeter", static: { addresses: [`127.0.0.1:${greeter.port}`] } }], routes: [{ backend_name: "greeter" }] },
  };
}

beforeAll(async () => {
  pki = makeTestPki();
  greeter = await startGreeter("greeter");
  backend = await startBodyBackend();
});

afterAll(async () => {
  greeter?.kill();
  backend?.closeAllConnections();
  backend?.close();
});

/**
 * Sockets this process holds with `port` as their local port, other than the listener: kedge's
 * side of its client connections (a socket in TIME-WAIT or orphaned belongs to no process: inode 0).
 */
function heldSockets(port: number): number {
  const hexPort = `:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  let held = 0;
  for (const file of ["/proc/self/net/tcp", "/proc/self/net/tcp6"]) {
    const lines = readFileSync(file, "latin1").split("\n").slice(1);
    for (const line of lines) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || !f[1].endsWith(hexPort) || f[3] === "0A" || f[9] === "0") continue;
      held++;
    }
  }
  return held;
}

/** HPACK literal without indexing, literal name (RFC 7541 §6.2.2). */
function lit(name: string, value: string): Buffer {
  return Buffer.concat([Buffer.from([0x00, name.length]), Buffer.from(name), Buffer.from([value.length]), Buffer.from(value)]);
}

const prefaceBytes = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
/** SETTINGS_INITIAL_WINDOW_SIZE: kedge may send no DATA on any stream until the client says so. */
const zeroWindow = settings([[4, 0]]);

/** GET /body (https on TLS), END_STREAM. */
const getBody = (tlsScheme: boolean) => frame(1, 0x5, 1, Buffer.concat([Buffer.from([0x82, tlsScheme ? 0x87 : 0x86]), lit(":path", "/body"), lit(":authority", "localhost")]));

/** A server-streaming gRPC call that writes 50 messages and then hangs until cancelled. */
function grpcCountTo(): Buffer {
  const block = Buffer.concat([
    Buffer.from([0x83, 0x86]),
    lit(":path", "/e2e.helloworld.Greeter/CountTo"),
    lit(":authority", "localhost"),
    lit("content-type", "application/grpc"),
    lit("te", "trailers"),
  ]);
  const message = Buffer.from(JSON.stringify({ n: 50, then: "hang" }));
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(message.length, 1);
  return Buffer.concat([frame(1, 0x4, 1, block), frame(0, 0x1, 1, Buffer.concat([prefix, message]))]);
}

interface StalledClient {
  socket: net.Socket;
  frames: Frame[];
  closed: Promise<void>;
}

/** Connects with a zero initial window, sends `request` and resolves once kedge's response HEADERS on stream 1 arrived. */
function stalledClient(port: number, useTls: boolean, request: Buffer): Promise<StalledClient> {
  return new Promise((resolve, reject) => {
    const frames: Frame[] = [];
    let buffered = Buffer.alloc(0);
    let answered = false;
    const hello = () => socket.write(Buffer.concat([prefaceBytes, zeroWindow, request]));
    const socket: net.Socket = useTls
      ? tls.connect({ host: "127.0.0.1", port, servername: "localhost", ca: pki.ca, ALPNProtocols: ["h2"] }, hello)
      : net.connect(port, "127.0.0.1", hello);
    const closed = new Promise<void>((r) => socket.once("close", () => r()));
    socket.on("error", () => {});
    socket.on("data", (d: Buffer) => {
      buffered = Buffer.concat([buffered, d]);
      while (buffered.length >= 9) {
        const length = buffered.readUIntBE(0, 3);
        if (buffered.length < 9 + length) break;
        frames.push({ type: buffered[3], flags: buffered[4], id: buffered.readUInt32BE(5) & 0x7fffffff, payload: Buffer.from(buffered.subarray(9, 9 + length)) });
        buffered = buffered.subarray(9 + length);
      }
      if (!answered && frames.some((f) => f.type === 1 && f.id === 1)) {
        answered = true;
        resolve({ socket, frames, closed });
      }
    });
    setTimeout(() => reject(new Error("no response HEADERS within 5 s")), 5000);
  });
}

describe("HTTP/2 connection lifecycle", () => {
  for (const listener of ["h2c", "tls"] as const) {
    it(`frees every socket within 2 s when 100 clients with a zero window close theirs (${listener})`, async () => {
      const kedge = await startTestKedge(config());
      try {
        const port = kedge.ports[listener];
        const cancelledBefore = backendCancelled;
        const clients: StalledClient[] = [];
        for (let i = 0; i < 100; i += 10) {
          clients.push(...(await Promise.all(Array.from({ length: 10 }, () => stalledClient(port, listener === "tls", getBody(listener === "tls"))))));
        }
        expect(heldSockets(port)).toBe(100);
        // Everything kedge sent has been read: the close is a FIN, not an RST for unread bytes.
        for (const c of clients) c.socket.end(() => c.socket.destroy());
        await Promise.all(clients.map((c) => c.closed));
        const closedAt = performance.now();
        await until("kedge to free its sockets", () => heldSockets(port) === 0, 2000);
        expect(performance.now() - closedAt).toBeLessThan(2000);
        await until("the backend responses to be cancelled", () => backendCancelled - cancelledBefore === 100, 5000);
      } finally {
        await kedge.shutdown();
      }
    });
  }

  it("frees the socket of a client that resets its connection, and cancels its gRPC call", async () => {
    const kedge = await startTestKedge(config());
    try {
      const port = kedge.ports.h2c;
      const before = greeter.cancelled;
      const client = await stalledClient(port, false, grpcCountTo());
      client.socket.resetAndDestroy();
      await until("kedge to free its socket", () => heldSockets(port) === 0, 2000);
      await until("the backend call to be cancelled", () => greeter.cancelled === before + 1, 5000);
    } finally {
      await kedge.shutdown();
    }
  });

  it("resets a stream whose send window stays zero for h2_stream_send_timeout (CANCEL) and cancels its backend calls", async () => {
    const kedge = await startTestKedge(config({ h2_stream_send_timeout: "1s" }));
    try {
      const cancelledBefore = backendCancelled;
      const greeterBefore = greeter.cancelled;
      const started = performance.now();
      const clients = await Promise.all([stalledClient(kedge.ports.h2c, false, getBody(false)), stalledClient(kedge.ports.tls, true, grpcCountTo())]);
      const resetOf = (c: StalledClient) => c.frames.find((f) => f.type === 3 && f.id === 1)?.payload.readUInt32BE(0);
      await until("both streams to be reset", () => clients.every((c) => resetOf(c) !== undefined), 5000);
      const elapsed = performance.now() - started;
      expect(elapsed).toBeGreaterThan(900);
      expect(clients.map(resetOf)).toEqual([0x8, 0x8]);
      await until("the HTTP backend response to be cancelled", () => backendCancelled === cancelledBefore + 1, 5000);
      await until("the gRPC backend call to be cancelled", () => greeter.cancelled === greeterBefore + 1, 5000);
      // The connections themselves stay: the client is there and may open other streams.
      expect(clients.every((c) => !c.socket.destroyed)).toBe(true);
      for (const c of clients) c.socket.destroy();
    } finally {
      await kedge.shutdown();
    }
  });
});
