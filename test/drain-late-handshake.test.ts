import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import tls from "node:tls";
import { makeTestPki, type TestPki } from "./helpers/certs.ts";
import { plainServer, startTestKedge } from "./helpers/kedge.ts";
import { frame, settings, type Frame } from "./helpers/h2-wire.ts";
import { until } from "./helpers/wait.ts";

// A TLS connection joins its listener's connection set only once its handshake is done. One whose
// handshake finishes while kedge drains (it connected just before the listener stopped; with
// workers, a client re-dialling after one worker's GOAWAY lands on another's socket as that one
// stops) must be sent GOAWAY too: else it is served like any other, on this draining kedge's config,
// until the drain ends and closes it mid-request.

/**
 * A TCP relay to `port` that lets the client's ClientHello through, then holds what the client
 * sends once the server has answered (its Finished, then its requests) until release(): the
 * server's side of the handshake cannot finish before then.
 */
async function handshakeGate(port: number): Promise<{ port: number; release(): void; close(): void }> {
  let release = () => {};
  const server = net.createServer((client) => {
    const upstream = net.connect(port, "127.0.0.1");
    let serverSpoke = false;
    let released = false;
    const held: Buffer[] = [];
    upstream.on("data", (d) => {
      serverSpoke = true;
      client.write(d);
    });
    client.on("data", (d: Buffer) => {
      if (!serverSpoke || released) upstream.write(d);
      else held.push(d);
    });
    release = () => {
      released = true;
      for (const d of held.splice(0)) upstream.write(d);
    };
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
    client.on("error", () => {});
    upstream.on("error", () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { port: (server.address() as net.AddressInfo).port, release: () => release(), close: () => server.close() };
}

let pki: TestPki;
/** Paths the backend was asked for. */
const seen: string[] = [];
/** The response to /hold, answered when the test says: a request in flight keeps the drain going. */
let held: http.ServerResponse | undefined;
let backend: http.Server;

beforeAll(async () => {
  pki = makeTestPki();
  backend = http.createServer((req, res) => {
    seen.push(req.url ?? "");
    if (req.url === "/hold") held = res;
    else res.end("served");
  });
  await new Promise<void>((resolve) => backend.listen(0, "127.0.0.1", resolve));
});

afterAll(() => {
  backend?.closeAllConnections();
  backend?.close();
});

/** The status of one GET on `session`, or the code of the error that ended it. */
function get(session: http2.ClientHttp2Session, path: string): Promise<number | string> {
  return new Promise((resolve) => {
    const req = session.request({ ":path": path });
    req.on("response", (h) => resolve(Number(h[":status"])));
    req.on("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    req.resume();
    req.end();
  });
}

/** HPACK: a literal field without indexing, new name (RFC 7541 §6.2.2), no Huffman coding. */
function literal(name: string, value: string): Buffer {
  return Buffer.concat([Buffer.from([0, name.length]), Buffer.from(name), Buffer.from([value.length]), Buffer.from(value)]);
}

/** The frames in `bytes`, a whole stream from the server's preface on. */
function framesIn(bytes: Buffer): Frame[] {
  const frames: Frame[] = [];
  for (let at = 0; at + 9 <= bytes.length; ) {
    const length = bytes.readUIntBE(at, 3);
    frames.push({ type: bytes[at + 3], flags: bytes[at + 4], id: bytes.readUInt32BE(at + 5) & 0x7fffffff, payload: bytes.subarray(at + 9, at + 9 + length) });
    at += 9 + length;
  }
  return frames;
}

describe("drain: a TLS connection whose handshake finishes after shutdown began", () => {
  it("HTTP/2: gets kedge's SETTINGS, then GOAWAY with last stream 0, and its request never reaches the backend", async () => {
    const kedge = await startTestKedge({
      server: { ...plainServer, http_tls_port: 0, tls_cert_file: pki.serverCertFile, tls_key_file: pki.serverKeyFile, graceful_shutdown: "10s" },
      http: { backends: [{ name: "app", static: { addresses: [`127.0.0.1:${(backend.address() as net.AddressInfo).port}`] } }], routes: [{ backend_name: "app" }] },
    });
    // A request in flight on an earlier connection keeps the drain going while the late one arrives.
    const early = http2.connect(`https://localhost:${kedge.ports.tls}`, { ca: pki.ca });
    early.on("error", () => {});
    const inFlight = get(early, "/hold");
    await until("the backend to hold /hold", () => held !== undefined);

    const gate = await handshakeGate(kedge.ports.tls);
    const late = tls.connect({ host: "127.0.0.1", port: gate.port, servername: "localhost", ca: pki.ca, ALPNProtocols: ["h2"] });
    const received: Buffer[] = [];
    late.on("data", (d: Buffer) => received.push(d));
    const ended = new Promise<void>((resolve) => late.on("close", () => resolve()));
    // The client's side of the handshake is done; kedge's waits at the gate with the request behind it.
    await new Promise<void>((resolve) => late.once("secureConnect", () => resolve()));
    const request = Buffer.concat([Buffer.from([0x82, 0x87]), literal(":path", "/late"), literal(":authority", "localhost")]);
    late.write(Buffer.concat([Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), settings(), frame(1, 0x5, 1, request)]));

    const stopped = kedge.shutdown();
    try {
      gate.release();
      let closed = false;
      void ended.then(() => (closed = true));
      await until("the late connection to close or its request to be served", () => closed || seen.includes("/late"));
      expect(seen).toEqual(["/hold"]);
      await ended;
      held!.end("held");
      expect(await inFlight).toBe(200); // the drain still lets what was in flight finish
      const frames = framesIn(Buffer.concat(received));
      expect(frames[0]?.type).toBe(4); // SETTINGS: the server's preface comes first (RFC 9113 §3.4)
      const goaways = frames.filter((f) => f.type === 7);
      expect(goaways.map((f) => f.payload.readUInt32BE(0))).toEqual([0]); // no stream was taken
      expect(frames.filter((f) => f.type === 1)).toEqual([]); // no response HEADERS
    } finally {
      held?.end();
      await stopped;
      early.destroy();
      late.destroy();
      gate.close();
    }
  });
});
