import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import type { Socket, TCPSocketListener } from "bun";
import tls from "node:tls";
import { makeTestPki, type TestPki } from "./helpers/certs.ts";
import { frame, settings, type Frame } from "./helpers/h2-wire.ts";
import { startTestKedge, type TestKedge } from "./helpers/kedge.ts";
import { until } from "./helpers/wait.ts";

// kedge writes a client's HTTP/2 frames once per event-loop turn, not once per socket callback:
// answers that come back on different backend connections in the same turn leave in one write,
// which over TLS is one record (one SSL_write, one sendto) instead of one per answer.

const streams = 10;
const body = "hello world\n";

let pki: TestPki;
let kedge: TestKedge;
let backend: TCPSocketListener<undefined>;
/** Counts the TLS records kedge sends through it; sits between the test's client and kedge's TLS port. */
let relay: TCPSocketListener<RelayState>;
let serverRecords = 0;

/** HTTP/1.1 backend that answers no request until `streams` are in, then all of them in one go (each on its own connection). */
function startBatchBackend(): TCPSocketListener<undefined> {
  const waiting: Socket<undefined>[] = [];
  const answer = `HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\n\r\n${body}`;
  return Bun.listen<undefined>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      data(socket) {
        if (waiting.push(socket) < streams) return;
        for (const s of waiting.splice(0)) s.write(answer);
      },
    },
  });
}

interface RelayState {
  kedge?: Socket<undefined>;
  early: Uint8Array[];
}

function startRecordCountingRelay(port: number): TCPSocketListener<RelayState> {
  return Bun.listen<RelayState>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(client) {
        client.data = { early: [] };
        let pending = Buffer.alloc(0);
        void Bun.connect<undefined>({
          hostname: "127.0.0.1",
          port,
          socket: {
            data(_up, chunk) {
              // TLS records: type (1), version (2), length (2), payload.
              pending = Buffer.concat([pending, chunk]);
              while (pending.length >= 5 && pending.length >= 5 + pending.readUInt16BE(3)) {
                if (pending[0] === 23) serverRecords++;
                pending = pending.subarray(5 + pending.readUInt16BE(3));
              }
              client.write(chunk);
            },
            close: () => void client.end(),
          },
        }).then((up) => {
          client.data.kedge = up;
          for (const b of client.data.early.splice(0)) up.write(b);
        });
      },
      data(client, chunk) {
        if (client.data.kedge) client.data.kedge.write(chunk);
        else client.data.early.push(Buffer.from(chunk));
      },
      close: (client) => void client.data.kedge?.end(),
    },
  });
}

beforeAll(async () => {
  pki = makeTestPki();
  backend = startBatchBackend();
  kedge = await startTestKedge({
    server: { bind_address: "127.0.0.1", http_tls_port: 0, admin_port: 0, log_level: "error", tls_cert_file: pki.serverCertFile, tls_key_file: pki.serverKeyFile },
    http: { backends: [{ name: "app", static: { addresses: [`127.0.0.1:${backend.port}`] } }], routes: [{ backend_name: "app" }] },
  });
  relay = startRecordCountingRelay(kedge.ports.tls);
});

afterAll(async () => {
  await kedge?.shutdown();
  relay?.stop(true);
  backend?.stop(true);
});

/** GET https://localhost/ in HPACK: :method GET, :scheme https, :path / (static), :authority literal. */
function getRequest(id: number): Buffer {
  return frame(1, 0x4 | 0x1, id, Buffer.from([0x82, 0x87, 0x84, 0x01, 9, ...Buffer.from("localhost")]));
}

describe("HTTP/2 writes to a client", () => {
  it("answers that arrive on different backend connections in one turn leave in one TLS record", async () => {
    const frames: Frame[] = [];
    let buffered = Buffer.alloc(0);
    const socket = tls.connect({ host: "127.0.0.1", port: relay.port, servername: "localhost", ca: pki.ca, ALPNProtocols: ["h2"] });
    socket.on("error", () => {});
    socket.on("data", (d: Buffer) => {
      buffered = Buffer.concat([buffered, d]);
      while (buffered.length >= 9 && buffered.length >= 9 + buffered.readUIntBE(0, 3)) {
        const length = buffered.readUIntBE(0, 3);
        frames.push({ type: buffered[3], flags: buffered[4], id: buffered.readUInt32BE(5) & 0x7fffffff, payload: Buffer.from(buffered.subarray(9, 9 + length)) });
        buffered = buffered.subarray(9 + length);
      }
    });
    await new Promise<void>((resolve) => socket.once("secureConnect", () => resolve()));
    expect(socket.alpnProtocol).toBe("h2");
    socket.write(Buffer.concat([Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), settings()]));
    // kedge's SETTINGS and its ACK of ours: the greeting is over (session tickets went before it).
    await until("kedge's SETTINGS ACK", () => frames.some((f) => f.type === 4 && (f.flags & 1) !== 0));
    serverRecords = 0;

    socket.write(Buffer.concat(Array.from({ length: streams }, (_, i) => getRequest(2 * i + 1))));
    const ended = () => frames.filter((f) => f.type === 0 && (f.flags & 1) !== 0).length;
    await until("every answer", () => ended() === streams);

    for (let i = 0; i < streams; i++) {
      const id = 2 * i + 1;
      const headers = frames.filter((f) => f.type === 1 && f.id === id);
      expect(headers).toHaveLength(1);
      expect(headers[0].payload[0]).toBe(0x88); // :status 200, static index 8
      expect(Buffer.concat(frames.filter((f) => f.type === 0 && f.id === id).map((f) => f.payload)).toString()).toBe(body);
    }
    // One write per answer would be `streams` records.
    expect(serverRecords).toBe(1);
    socket.destroy();
  });
});
