import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import http2 from "node:http2";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { H2Session } from "../src/upstream/h2-session.ts";
import { FrameBuffer, type StreamError } from "../src/h2/frames.ts";
import { encodeHeaders } from "../src/h2/hpack.ts";
import type { H2Headers } from "../src/h2/hpack.ts";
import type { H2Stream, StreamHandler } from "../src/upstream/h2/stream.ts";
import { makeTestPki, type TestPki } from "./helpers/certs.ts";
import { data, frame, goaway, ping, rawH2Server, rstStream, settings, status200, writtenFrames, type RawConnection } from "./helpers/h2-wire.ts";
import { until } from "./helpers/wait.ts";

// kedge's upstream HTTP/2 client against nghttpd (nghttp2's server: Huffman strings, a dynamic
// table, its own flow control), against Bun's node:http2 server, and against a scripted server
// that breaks the protocol on purpose.

interface Outcome {
  headers?: H2Headers;
  body: Buffer;
  trailers?: H2Headers;
  err?: StreamError;
}

/** A handler that records the exchange; `outcome` settles when the stream closes. */
function recorder(onData?: (chunk: Uint8Array, stream: H2Stream) => void) {
  const chunks: Buffer[] = [];
  let settle!: (o: Outcome) => void;
  const result: Outcome = { body: Buffer.alloc(0) };
  const r = {
    stream: undefined as unknown as H2Stream,
    outcome: new Promise<Outcome>((resolve) => (settle = resolve)),
    received: () => chunks.reduce((n, c) => n + c.length, 0),
    handler: {
      response: (h) => (result.headers = h),
      data: (bytes, start, end) => {
        const c = Buffer.from(bytes.subarray(start, end));
        chunks.push(c);
        onData?.(c, r.stream);
      },
      trailers: (t) => (result.trailers = t),
      end: () => {},
      close: (err) => settle({ ...result, body: Buffer.concat(chunks), err }),
      drain: () => {},
    } as StreamHandler,
  };
  return r;
}

function send(session: H2Session, method: string, path: string, r = recorder()) {
  r.stream = session.request(encodeHeaders({ ":method": method, ":scheme": session.options.tls ? "https" : "http", ":path": path, ":authority": "backend.test" }), r.handler);
  return r;
}

function get(session: H2Session, path: string) {
  const r = send(session, "GET", path);
  r.stream.end();
  return r.outcome;
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

async function startNghttpd(dir: string, extra: string[], tls?: TestPki): Promise<{ port: number; proc: Subprocess }> {
  const port = await freePort();
  const args = ["nghttpd", "-a", "127.0.0.1", "-d", dir, ...extra, ...(tls ? [String(port), tls.serverKeyFile, tls.serverCertFile] : ["--no-tls", String(port)])];
  const proc = Bun.spawn(args, { stdout: "ignore", stderr: "pipe" });
  await until("nghttpd to listen", async () => {
    try {
      (await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {} } })).end();
      return true;
    } catch {
      return false;
    }
  });
  return { port, proc };
}

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

describe("against nghttpd", () => {
  let dir: string;
  let big: Buffer;
  let pki: TestPki;
  const procs: Subprocess[] = [];
  const sessions: H2Session[] = [];
  const session = (port: number, tls?: H2Session["options"]["tls"]) => {
    const s = new H2Session({ host: "127.0.0.1", port, connectTimeoutMs: 2000, tls });
    sessions.push(s);
    return s;
  };

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "kedge-nghttpd-"));
    writeFileSync(join(dir, "hello.txt"), "hello from nghttpd\n");
    big = randomBytes(3 * 1024 * 1024);
    writeFileSync(join(dir, "big.bin"), big);
    pki = makeTestPki();
  });
  afterAll(() => {
    for (const s of sessions) s.close();
    for (const p of procs) p.kill();
  });

  it("reads responses whose headers nghttpd compresses with Huffman strings and its dynamic table", async () => {
    const { port, proc } = await startNghttpd(dir, []);
    procs.push(proc);
    const s = session(port);
    const answers = [];
    for (let i = 0; i < 4; i++) answers.push(await get(s, "/hello.txt"));
    for (const a of answers) {
      expect(a.err).toBeUndefined();
      expect(a.headers?.[":status"]).toBe("200");
      expect(a.headers?.["content-length"]).toBe("19");
      expect(a.headers?.server).toMatch(/^nghttpd nghttp2\//);
      expect(a.body.toString()).toBe("hello from nghttpd\n");
    }
    expect((await get(s, "/missing")).headers?.[":status"]).toBe("404");
    expect(s.stats.sessionsOpened).toBe(1); // one connection carried them all
  });

  it("takes a body three times its receive window, and holds back while paused (flow control)", async () => {
    const { port, proc } = await startNghttpd(dir, []);
    procs.push(proc);
    const s = session(port);
    let paused = false;
    const r = send(s, "GET", "/big.bin", recorder((_, stream) => {
      if (!paused) stream.pause();
      paused = true;
    }));
    const stream = r.stream;
    stream.end();
    await until("the first bytes", () => r.received() > 0);
    await Bun.sleep(300);
    // Paused: nghttpd may send what the 1 MiB stream window allows, and no more.
    const whilePaused = r.received();
    expect(whilePaused).toBeLessThanOrEqual(1024 * 1024);
    await Bun.sleep(100);
    expect(r.received()).toBe(whilePaused);
    stream.resume();
    const a = await r.outcome;
    expect(a.err).toBeUndefined();
    expect(a.body.length).toBe(big.length);
    expect(sha(a.body)).toBe(sha(big));
  });

  it("sends a body through a 1 KiB window and queues streams over MAX_CONCURRENT_STREAMS=1", async () => {
    const { port, proc } = await startNghttpd(dir, ["-w", "10", "-m", "1"]);
    procs.push(proc);
    const s = session(port);
    const upload = send(s, "POST", "/hello.txt");
    const stream = upload.stream;
    const body = randomBytes(200 * 1024);
    const accepted = stream.write(body);
    stream.end();
    const gets = Array.from({ length: 4 }, () => get(s, "/hello.txt"));
    const a = await upload.outcome;
    expect(accepted).toBe(false); // 200 KiB cannot fit a 1 KiB window at once
    expect(a.err).toBeUndefined();
    expect(a.headers?.[":status"]).toBe("200");
    for (const g of await Promise.all(gets)) expect(g.body.toString()).toBe("hello from nghttpd\n");
  });

  it("speaks TLS with ALPN h2, verifying the backend's certificate", async () => {
    const { port, proc } = await startNghttpd(dir, [], pki);
    procs.push(proc);
    const ok = await get(session(port, { ca: pki.ca, serverName: "localhost" }), "/hello.txt");
    expect(ok.err).toBeUndefined();
    expect(ok.body.toString()).toBe("hello from nghttpd\n");
    const untrusted = await get(session(port, { serverName: "localhost" }), "/hello.txt");
    expect(untrusted.err?.dialFailed).toBe(true);
    expect(untrusted.err?.message).toMatch(/TLS|certificate|self.signed|issuer/i);
  });
});

describe("against Bun's node:http2 server", () => {
  it("delivers a request body intact through a small window, and drains the writer", async () => {
    const server = http2.createServer({ settings: { initialWindowSize: 4096 } });
    server.on("stream", (stream: http2.ServerHttp2Stream) => {
      const hash = createHash("sha256");
      stream.on("data", (c: Buffer) => hash.update(c));
      stream.on("end", () => {
        stream.respond({ ":status": 200 }, { waitForTrailers: true });
        stream.on("wantTrailers", () => stream.sendTrailers({ "x-sha": "done" }));
        stream.end(hash.digest("hex"));
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const s = new H2Session({ host: "127.0.0.1", port: (server.address() as { port: number }).port, connectTimeoutMs: 2000 });
    try {
      const body = randomBytes(300 * 1024);
      const r = send(s, "POST", "/");
      const stream = r.stream;
      // Written in pieces the way the relay does: the next piece only after a drain.
      let at = 0;
      const pump = () => {
        while (at < body.length) {
          const piece = body.subarray(at, at + 16 * 1024);
          at += piece.length;
          if (!stream.write(piece)) return;
        }
        stream.end();
      };
      r.handler.drain = pump;
      pump();
      const a = await r.outcome;
      expect(a.err).toBeUndefined();
      expect(a.body.toString()).toBe(sha(body));
      expect(a.trailers?.["x-sha"]).toBe("done");
    } finally {
      s.close();
      server.close();
    }
  });
  it("sends every byte intact when the backend stops reading and the socket takes part of a write, turn after turn", async () => {
    // A backend that grants all the window there is, then reads nothing: kedge's frames back up
    // in its socket, then in its own queue. Frames written on later turns must not overwrite what
    // waits there (they once did: the queue held views of the frame buffer that each turn reuses).
    let backend!: import("node:net").Socket;
    const received: Buffer[] = [];
    const server = createServer((socket) => {
      backend = socket;
      socket.on("data", (c: Buffer) => received.push(c));
      socket.pause();
      const window = Buffer.alloc(4);
      window.writeUInt32BE(0x7fffffff - 65_535);
      socket.write(Buffer.concat([settings([[4, 0x7fffffff]]), frame(8, 0, 0, window)]));
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const s = new H2Session({ host: "127.0.0.1", port: (server.address() as { port: number }).port, connectTimeoutMs: 2000 });
    try {
      const body = randomBytes(24 * 1024 * 1024);
      const r = send(s, "POST", "/");
      const stream = r.stream;
      // 256 KB a turn (under the frame buffer's 1 MB it keeps), the next turn's only after this one's flush.
      let at = 0;
      let waited = false;
      const pump = () => {
        if (at >= body.length) return;
        const piece = body.subarray(at, at + 256 * 1024);
        at += piece.length;
        if (at >= body.length) return stream.end(piece);
        if (stream.write(piece)) setImmediate(pump);
        else if (at > 4 * 1024 * 1024) waited = true; // backed up (not just dialling); drain() calls pump again
      };
      r.handler.drain = pump;
      pump();
      await until("kedge's writes to back up", () => waited, 10_000);
      backend.resume();
      // Read back stream 1's DATA from what the backend received.
      const sent = Buffer.alloc(body.length);
      let got = 0;
      let ended = false;
      await until("the request's END_STREAM at the backend", () => {
        const all = Buffer.concat(received);
        got = 0;
        ended = false;
        for (let i = 24; i + 9 <= all.length; ) {
          const length = all.readUIntBE(i, 3);
          if (i + 9 + length > all.length) break;
          if (all[i + 3] === 0 && all.readUInt32BE(i + 5) === 1) {
            all.copy(sent, got, i + 9, i + 9 + length);
            got += length;
            if (all[i + 4] & 1) ended = true;
          }
          i += 9 + length;
        }
        return ended;
      }, 20_000);
      expect(got).toBe(body.length);
      expect(sha(sent)).toBe(sha(body));
    } finally {
      s.close();
      server.close();
    }
  });

  it("drains a writer told to wait before the connection was up, once its first piece is out", async () => {
    // A client-streaming call's first message arrives before the session is up: write() says
    // wait, and the next message is written only after drain(). The window takes it at once.
    const server = http2.createServer();
    server.on("stream", (stream: http2.ServerHttp2Stream) => {
      const chunks: Buffer[] = [];
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.on("end", () => {
        stream.respond({ ":status": 200 });
        stream.end(Buffer.concat(chunks));
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const s = new H2Session({ host: "127.0.0.1", port: (server.address() as { port: number }).port, connectTimeoutMs: 2000 });
    try {
      const pieces = ["one;", "two;", "three"];
      const r = send(s, "POST", "/");
      const pump = () => {
        while (pieces.length > 0) if (!r.stream.write(Buffer.from(pieces.shift()!))) return;
        r.stream.end();
      };
      r.handler.drain = pump;
      pump();
      expect(pieces.length).toBe(2); // the session was not up: the writer waits for drain()
      const a = await Promise.race([r.outcome, Bun.sleep(3000).then(() => undefined)]);
      expect(a?.err).toBeUndefined();
      expect(a?.body.toString()).toBe("one;two;three");
    } finally {
      s.close();
      server.close();
    }
  });
});

describe("against a backend with MAX_CONCURRENT_STREAMS=1", () => {
  it("opens another connection for a call rather than queue it behind a stream that stays open", async () => {
    const server = http2.createServer({ settings: { maxConcurrentStreams: 1 } });
    let sessions = 0;
    server.on("session", () => sessions++);
    server.on("stream", (stream: http2.ServerHttp2Stream, headers) => {
      stream.on("error", () => {});
      if (headers[":path"] === "/hold") return; // a watch that never answers
      stream.respond({ ":status": 200 });
      stream.end("quick");
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const s = new H2Session({ host: "127.0.0.1", port: (server.address() as { port: number }).port, connectTimeoutMs: 2000 });
    try {
      const held = send(s, "GET", "/hold");
      held.stream.end();
      await until("the held stream to reach the server", () => sessions === 1 && s.stats.activeStreams === 1);
      const quick = await Promise.all([get(s, "/quick"), get(s, "/quick")]);
      expect(quick.map((q) => q.body.toString())).toEqual(["quick", "quick"]);
      expect(sessions).toBeGreaterThanOrEqual(2);
      expect(s.stats.activeStreams).toBe(1); // the held one, still open
      held.stream.cancel();
    } finally {
      s.close();
      server.close();
    }
  });
});

describe("against a backend that breaks HTTP/2", () => {
  const listeners: Array<{ stop(force?: boolean): void }> = [];
  const sessions: H2Session[] = [];
  afterAll(() => {
    for (const s of sessions) s.close();
    for (const l of listeners) l.stop(true);
  });
  function scripted(script: (f: Parameters<Parameters<typeof rawH2Server>[0]>[0], conn: RawConnection) => void, greeting?: Buffer) {
    const server = rawH2Server(script, greeting);
    listeners.push(server.listener);
    const session = new H2Session({ host: "127.0.0.1", port: server.port, connectTimeoutMs: 2000, reconnectBaseMs: 60_000 });
    sessions.push(session);
    return { server, session };
  }
  const goawayCode = (conn: RawConnection) => conn.frames.filter((f) => f.type === 7).map((f) => f.payload.readUInt32BE(4));

  it("fails the dial with a clear error when the endpoint is not an HTTP/2 server", async () => {
    const { session } = scripted(() => {}, Buffer.from("HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n"));
    const a = await get(session, "/");
    expect(a.err?.dialFailed).toBe(true);
    expect(a.err?.unprocessed).toBe(true);
    expect(a.err?.message).toMatch(/frame of \d+ bytes|not an HTTP\/2 server/);
  });

  it("answers PING and ends the connection with COMPRESSION_ERROR on an undecodable header block", async () => {
    const pingData = Buffer.from("12345678");
    const { server, session } = scripted((f, conn) => {
      if (f.type === 1) conn.send(ping(pingData), frame(1, 0x4, f.id, Buffer.from([0x80])));
    });
    const a = await get(session, "/");
    expect(a.err?.unprocessed).toBe(false);
    expect(a.err?.message).toContain("connection to backend lost");
    const conn = server.connections[0];
    await until("GOAWAY", () => goawayCode(conn).length > 0);
    expect(goawayCode(conn)).toEqual([9]); // COMPRESSION_ERROR
    const acks = conn.frames.filter((f) => f.type === 6 && f.flags === 1);
    expect(acks.map((f) => f.payload.toString())).toEqual(["12345678"]);
  });

  // The rules a client of kedge's server is held to (h2spec), met by a backend: the same error for the same violation.
  it.each([
    ["a PING of other than 8 bytes", () => [frame(6, 0, 0, Buffer.alloc(6))], 6],
    ["a PING on a stream", (id: number) => [frame(6, 0, id, Buffer.alloc(8))], 1],
    ["a GOAWAY shorter than 8 bytes", () => [frame(7, 0, 0, Buffer.alloc(4))], 6],
    ["DATA on a stream it ended", (id: number) => [status200(id, 0x1), data(id, 0x1, "late")], 5],
    ["HEADERS on a stream kedge never opened", (id: number) => [status200(id + 2, 0x1)], 1],
    ["RST_STREAM on a stream kedge never opened", (id: number) => [rstStream(id + 2, 8)], 1],
  ])("ends the connection with the error a client of kedge's server would get for %s", async (_what, frames, code) => {
    const { server, session } = scripted((f, conn) => {
      if (f.type === 1) conn.send(...frames(f.id));
    });
    await get(session, "/");
    const conn = server.connections[0];
    await until("GOAWAY", () => goawayCode(conn).length > 0);
    expect(goawayCode(conn)).toEqual([code]);
  });

  it("resets a stream whose PRIORITY frame has the wrong length (FRAME_SIZE_ERROR), as kedge's server does", async () => {
    const { server, session } = scripted((f, conn) => {
      if (f.type === 1) conn.send(frame(2, 0, f.id, Buffer.alloc(4)));
    });
    const a = await get(session, "/");
    expect(a.err?.code).toBe(6);
    const conn = server.connections[0];
    await until("RST_STREAM", () => conn.frames.some((f) => f.type === 3));
    expect(conn.frames.find((f) => f.type === 3)!.payload.readUInt32BE(0)).toBe(6);
    expect(goawayCode(conn)).toEqual([]);
  });

  it("refuses a CONTINUATION flood with ENHANCE_YOUR_CALM before buffering it", async () => {
    const { server, session } = scripted((f, conn) => {
      if (f.type !== 1) return;
      const filler = Buffer.alloc(16 * 1024, 0x82);
      conn.send(frame(1, 0, f.id, Buffer.from([0x88])), ...Array.from({ length: 20 }, () => frame(9, 0, f.id, filler)));
    });
    const a = await get(session, "/");
    expect(a.err).toBeDefined();
    await until("GOAWAY", () => goawayCode(server.connections[0]).length > 0);
    expect(goawayCode(server.connections[0])).toEqual([11]);
  });

  it("passes trailers-only answers, DATA padding and trailers through", async () => {
    const { session } = scripted((f, conn) => {
      if (f.type !== 1) return;
      if (f.id === 1) return conn.send(status200(f.id, 0x1, "5"));
      const padded = Buffer.concat([Buffer.from([3]), Buffer.from("abc"), Buffer.alloc(3)]);
      conn.send(status200(f.id, 0), frame(0, 0x8, f.id, padded), frame(1, 0x5, f.id, Buffer.from([0x00, 11, ...Buffer.from("grpc-status"), 1, 0x30])));
    });
    const only = await get(session, "/");
    expect(only.headers).toEqual({ ":status": "200", "grpc-status": "5" });
    expect(only.err).toBeUndefined();
    const full = await get(session, "/");
    expect(full.body.toString()).toBe("abc");
    expect(full.trailers).toEqual({ "grpc-status": "0" });
    expect(full.err).toBeUndefined();
  });

  it("marks streams refused by RST_STREAM(REFUSED_STREAM) or above GOAWAY's last stream id as unprocessed", async () => {
    const { server, session } = scripted((f, conn) => {
      if (f.type !== 1) return;
      if (f.id === 1) return conn.send(rstStream(1, 7));
      if (f.id === 5) conn.send(goaway(3, 0), status200(3, 0x1));
    });
    const refused = await get(session, "/");
    expect(refused.err?.unprocessed).toBe(true);
    expect(refused.err?.message).toContain("REFUSED_STREAM");
    const [three, five] = await Promise.all([get(session, "/"), get(session, "/")]);
    expect(three.err).toBeUndefined(); // at or below last-stream-id: answered
    expect(five.err?.unprocessed).toBe(true);
    expect(five.err?.message).toContain("GOAWAY");
    expect(server.connections[0].streamIds).toEqual([1, 3, 5]);
    await until("a new connection after GOAWAY", () => server.connections.length === 2);
  });

  it("carries calls already queued on a connection through a graceful close, then says GOAWAY", async () => {
    // The backend's SETTINGS come late: the call waits in the connection when the pool closes.
    const { server, session } = scripted(
      (f, conn) => {
        if (f.type === 4 && f.flags === 0) setTimeout(() => conn.send(settings()), 100);
        if (f.type === 1) conn.send(status200(f.id, 0x1, "0"));
      },
      Buffer.alloc(0),
    );
    const queued = get(session, "/");
    session.close();
    const a = await queued;
    expect(a.err).toBeUndefined();
    expect(a.headers?.["grpc-status"]).toBe("0");
    const conn = server.connections[0];
    await until("GOAWAY(NO_ERROR) once the call is done", () => goawayCode(conn).length > 0);
    expect(goawayCode(conn)).toEqual([0]);
    expect(conn.streamIds).toEqual([1]);
  });

  it("gives up a connection whose backend answers no keepalive PING, and keeps one that does", async () => {
    const holdOpen = (f: Parameters<Parameters<typeof rawH2Server>[0]>[0], conn: RawConnection, answerPings: boolean) => {
      if (f.type === 1) conn.send(status200(f.id, 0)); // a stream that stays open, silent
      if (f.type === 6 && f.flags === 0 && answerPings) conn.send(frame(6, 1, 0, f.payload));
    };
    const keepalive = { keepaliveMs: 100, keepaliveTimeoutMs: 1000 };
    const mute = rawH2Server((f, conn) => holdOpen(f, conn, false));
    const alive = rawH2Server((f, conn) => holdOpen(f, conn, true));
    listeners.push(mute.listener, alive.listener);
    const muteSession = new H2Session({ host: "127.0.0.1", port: mute.port, connectTimeoutMs: 2000, reconnectBaseMs: 60_000, ...keepalive });
    const aliveSession = new H2Session({ host: "127.0.0.1", port: alive.port, connectTimeoutMs: 2000, reconnectBaseMs: 60_000, ...keepalive });
    sessions.push(muteSession, aliveSession);
    const lost = send(muteSession, "GET", "/watch");
    const kept = send(aliveSession, "GET", "/watch");
    let keptClosed = false;
    void kept.outcome.then(() => (keptClosed = true));
    const a = await lost.outcome;
    expect(a.headers?.[":status"]).toBe("200");
    expect(a.err?.message).toContain("answered no PING");
    const pingsTo = (server: typeof mute) => server.connections[0].frames.filter((f) => f.type === 6 && f.flags === 0).length;
    await until("the live backend to answer a few PINGs", () => pingsTo(alive) >= 3);
    expect(keptClosed).toBe(false);
    expect(aliveSession.stats.activeStreams).toBe(1);
    kept.stream.cancel();
    // No calls in flight: no PINGs (servers refuse them without streams).
    const before = pingsTo(alive);
    await Bun.sleep(400);
    expect(pingsTo(alive)).toBe(before);
  });

  it("resets a stream whose DATA overruns the window it was granted, keeping what fitted", async () => {
    const { server, session } = scripted((f, conn) => {
      if (f.type === 1) conn.send(status200(f.id, 0), ...Array.from({ length: 70 }, () => data(f.id, 0, Buffer.alloc(16 * 1024))));
    });
    // Paused at once: kedge grants nothing beyond the first 1 MiB, which the backend ignores.
    const r = send(session, "GET", "/", recorder((_, stream) => stream.pause()));
    r.stream.end();
    const a = await r.outcome;
    expect(a.body.length).toBe(1024 * 1024);
    expect(a.err?.message).toContain("overran the stream window");
    await until("RST_STREAM", () => server.connections[0].frames.some((f) => f.type === 3));
    expect(server.connections[0].frames.find((f) => f.type === 3)!.payload.readUInt32BE(0)).toBe(3); // FLOW_CONTROL_ERROR
  });
});

describe("FrameBuffer", () => {
  it("hands out whole frames after a multi-MiB turn, and frames written after it", () => {
    const out = new FrameBuffer();
    const big = randomBytes(3 * 1024 * 1024);
    for (let at = 0; at < big.length; at += 16_384) out.frame(0, 0, 1, big, at, Math.min(big.length, at + 16_384));
    const first = writtenFrames(out);
    expect(first.length).toBe(big.length + 9 * Math.ceil(big.length / 16_384));
    expect(first.subarray(9, 9 + 16_384)).toEqual(big.subarray(0, 16_384));
    const view = writtenFrames(out); // nothing since: empty (the 3 MiB buffer was let go at the last clear)
    expect(view.length).toBe(0);
    out.words(8, 0, 3, 1000);
    expect([...writtenFrames(out)]).toEqual([0, 0, 4, 8, 0, 0, 0, 0, 3, 0, 0, 3, 0xe8]);
  });
});
