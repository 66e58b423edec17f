import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import http2 from "node:http2";
import net from "node:net";
import { startTestKedge, type TestKedge } from "./helpers/kedge.ts";
import { startUpstream, type Upstream } from "./helpers/upstream.ts";
import { frame, settings } from "./helpers/h2-wire.ts";
import { curl } from "./helpers/curl.ts";

// kedge's own HTTP/2 server (src/server/h2), from the wire: malformed requests, limits, flow
// control, CONTINUATION, timeouts and max_connections, with node:http2, curl and h2load as
// independent clients and raw frames where a real client would not misbehave.

let upstream: Upstream;
let kedge: TestKedge;

const server = {
  bind_address: "127.0.0.1",
  h2c_port: 0,
  admin_port: 0,
  log_level: "error",
  max_request_headers: 20,
  request_header_timeout: "1s",
  client_idle_timeout: "1s",
};

function config(extra: Record<string, unknown> = {}) {
  return {
    server: { ...server, ...extra },
    http: { backends: [{ name: "app", static: { addresses: [`127.0.0.1:${upstream.port}`] } }], routes: [{ backend_name: "app" }] },
  };
}

beforeAll(async () => {
  upstream = await startUpstream("app");
  kedge = await startTestKedge(config());
});

afterAll(async () => {
  await kedge?.shutdown();
  await upstream?.close();
});

const connectionPreface = Buffer.concat([Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), settings()]);

/** HPACK literal without indexing, literal name (RFC 7541 §6.2.2). */
function lit(name: string, value: string): Buffer {
  return Buffer.concat([Buffer.from([0x00, name.length]), Buffer.from(name), Buffer.from([value.length]), Buffer.from(value)]);
}

/** A request header block: GET http, the path, authority localhost, then `extra`. */
function request(path: string, ...extra: Buffer[]): Buffer {
  return Buffer.concat([Buffer.from([0x82, 0x86]), lit(":path", path), lit(":authority", "localhost"), ...extra]);
}

interface Received {
  type: number;
  flags: number;
  id: number;
  payload: Buffer;
}

/** A raw HTTP/2 connection: writes the preface and `frames`, collects what kedge sends until `done` says so (or 5 s). */
function exchangeFrames(frames: Buffer[], done: (got: Received[]) => boolean, port = kedge.ports.h2c): Promise<{ frames: Received[]; closed: boolean }> {
  return new Promise((resolve) => {
    const got: Received[] = [];
    let buffered = Buffer.alloc(0);
    const socket = net.connect(port, "127.0.0.1", () => socket.write(Buffer.concat([connectionPreface, ...frames])));
    const finish = (closed: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ frames: got, closed });
    };
    const timer = setTimeout(() => finish(false), 5000);
    socket.on("data", (d: Buffer) => {
      buffered = Buffer.concat([buffered, d]);
      while (buffered.length >= 9) {
        const length = buffered.readUIntBE(0, 3);
        if (buffered.length < 9 + length) break;
        got.push({ type: buffered[3], flags: buffered[4], id: buffered.readUInt32BE(5) & 0x7fffffff, payload: buffered.subarray(9, 9 + length) });
        buffered = buffered.subarray(9 + length);
      }
      if (done(got)) finish(false);
    });
    socket.on("error", () => {});
    socket.on("close", () => finish(true));
  });
}

const resetOf = (got: Received[], id: number) => got.find((f) => f.type === 3 && f.id === id)?.payload.readUInt32BE(0);
const headersOn = (got: Received[], id: number) => got.some((f) => f.type === 1 && f.id === id);

async function h2Get(path: string, headers: http2.OutgoingHttpHeaders = {}, options: http2.ClientSessionOptions = {}): Promise<{ status: number; headers: http2.IncomingHttpHeaders; body: Buffer }> {
  const client = http2.connect(`http://127.0.0.1:${kedge.ports.h2c}`, options);
  client.on("error", () => {});
  try {
    return await new Promise((resolve, reject) => {
      const req = client.request({ ":path": path, ...headers });
      const chunks: Buffer[] = [];
      let head: http2.IncomingHttpHeaders = {};
      req.on("response", (h) => (head = h));
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => resolve({ status: Number(head[":status"]), headers: head, body: Buffer.concat(chunks) }));
      req.on("error", reject);
      req.end();
    });
  } finally {
    client.close();
  }
}

describe("kedge's HTTP/2 server", () => {
  it("resets malformed requests with PROTOCOL_ERROR, never forwards them, and serves the next stream on the connection", async () => {
    const before = upstream.seen.length;
    const bad: Array<[number, Buffer, number]> = [
      [1, request("/bad-connection", lit("connection", "keep-alive")), 0x5],
      [3, Buffer.concat([Buffer.from([0x82, 0x86]), lit(":authority", "localhost")]), 0x5], // no :path
      [5, request("/bad-te", lit("te", "gzip")), 0x5],
      [7, request("/bad-pseudo", lit(":status", "200")), 0x5],
      [9, request("/bad-length", lit("content-length", "12x")), 0x5],
    ];
    const frames = bad.map(([id, block, flags]) => frame(1, flags, id, block));
    // A body shorter than its content-length.
    frames.push(frame(1, 0x4, 11, Buffer.concat([Buffer.from([0x83, 0x86]), lit(":path", "/short-body"), lit(":authority", "localhost"), lit("content-length", "5")])));
    frames.push(frame(0, 0x1, 11, Buffer.from("abc")));
    frames.push(frame(1, 0x5, 13, request("/fine-after-bad")));
    const { frames: got } = await exchangeFrames(frames, (g) => headersOn(g, 13) && g.some((f) => f.id === 13 && f.flags & 0x1));
    for (const id of [1, 3, 5, 7, 9, 11]) expect([id, resetOf(got, id)]).toEqual([id, 1]);
    expect(headersOn(got, 13)).toBe(true);
    const urls = upstream.seen.slice(before).map((s) => s.url);
    expect(urls).toEqual(["/fine-after-bad"]);
  });

  it("checks each stream's body against its own content-length, one after another on a connection", async () => {
    const before = upstream.seen.length;
    const withLength = (path: string, length: string) => Buffer.concat([Buffer.from([0x83, 0x86]), lit(":path", path), lit(":authority", "localhost"), lit("content-length", length)]);
    const frames = [
      frame(1, 0x4, 1, withLength("/five-sent-three", "5")),
      frame(0, 0x1, 1, Buffer.from("abc")),
      frame(1, 0x4, 3, withLength("/three-sent-three", "3")),
      frame(0, 0x1, 3, Buffer.from("abc")),
      frame(1, 0x4, 5, withLength("/five-sent-five", "5")),
      frame(0, 0x1, 5, Buffer.from("abcde")),
    ];
    const { frames: got } = await exchangeFrames(frames, (g) => [3, 5].every((id) => g.some((f) => f.id === id && f.flags & 0x1)));
    expect(resetOf(got, 1)).toBe(1); // PROTOCOL_ERROR
    expect(headersOn(got, 3) && headersOn(got, 5)).toBe(true);
    expect(upstream.seen.slice(before).map((s) => s.url).sort()).toEqual(["/five-sent-five", "/three-sent-three"]);
  });

  it("decodes a header block split over HEADERS and CONTINUATION frames", async () => {
    const block = request("/continued", lit("x-one", "1".repeat(40)), lit("x-two", "2".repeat(40)));
    const cut = 30;
    const frames = [frame(1, 0x1, 1, block.subarray(0, cut)), frame(9, 0, 1, block.subarray(cut, 60)), frame(9, 0x4, 1, block.subarray(60))];
    const { frames: got } = await exchangeFrames(frames, (g) => g.some((f) => f.id === 1 && f.flags & 0x1));
    expect(headersOn(got, 1)).toBe(true);
    const seen = upstream.seen.find((s) => s.url === "/continued");
    expect(seen?.headers["x-two"]).toBe("2".repeat(40));
  });

  it("ends the connection with a GOAWAY when a CONTINUATION belongs to no header block", async () => {
    const { frames: got, closed } = await exchangeFrames([frame(9, 0x4, 1, Buffer.from([0x82]))], () => false);
    expect(closed).toBe(true);
    const goaway = got.find((f) => f.type === 7);
    expect(goaway?.payload.readUInt32BE(4)).toBe(1); // PROTOCOL_ERROR
  });

  it("answers 431 beyond max_request_headers and 414 beyond max_request_uri_bytes, with the reason", async () => {
    const many: http2.OutgoingHttpHeaders = {};
    for (let i = 0; i < 30; i++) many[`x-field-${i}`] = "v";
    const tooMany = await h2Get("/many-headers", many);
    expect(tooMany.status).toBe(431);
    expect(String(tooMany.headers["x-kedge-error"])).toContain("20 fields");
    const long = await h2Get(`/${"a".repeat(9000)}`);
    expect(long.status).toBe(414);
    expect(upstream.seen.some((s) => s.url === "/many-headers" || s.url.length > 8000)).toBe(false);
  });

  it("joins cookie fields split for HPACK into one field for an HTTP/1.1 backend (RFC 9113 §8.2.3)", async () => {
    const { frames: got } = await exchangeFrames([frame(1, 0x5, 1, request("/cookies", lit("cookie", "a=1"), lit("cookie", "b=2")))], (g) => g.some((f) => f.id === 1 && f.flags & 0x1));
    expect(headersOn(got, 1)).toBe(true);
    expect(upstream.seen.find((s) => s.url === "/cookies")?.headers.cookie).toBe("a=1; b=2");
  });

  it("carries 1 MB each way through a client's 16 KB window and kedge's own", async () => {
    const client = http2.connect(`http://127.0.0.1:${kedge.ports.h2c}`, { settings: { initialWindowSize: 16_384 } });
    client.on("error", () => {});
    const body = Buffer.alloc(1 << 20);
    for (let i = 0; i < body.length; i++) body[i] = (i * 7 + (i >> 11)) & 0xff;
    try {
      const echoed = await new Promise<Buffer>((resolve, reject) => {
        const req = client.request({ ":method": "POST", ":path": "/echo" });
        const chunks: Buffer[] = [];
        req.on("data", (c: Buffer) => chunks.push(c));
        req.on("end", () => resolve(Buffer.concat(chunks)));
        req.on("error", reject);
        req.end(body);
      });
      expect(echoed.length).toBe(body.length);
      expect(echoed.equals(body)).toBe(true);
    } finally {
      client.close();
    }
  });

  it("tells an HTTP/1.1 client on the h2c port that it speaks HTTP/2 only", async () => {
    // curl refuses an answer that does not start as HTTP/1.1 (kedge's SETTINGS must not come first).
    const r = await curl([`http://127.0.0.1:${kedge.ports.h2c}/`]);
    expect(r.status).toBe(505);
    expect(r.headers["x-kedge-error"]).toContain("prior knowledge");
  });

  it("closes a connection that sends no preface within request_header_timeout", async () => {
    const closed = await new Promise<boolean>((resolve) => {
      const socket = net.connect(kedge.ports.h2c, "127.0.0.1");
      socket.on("error", () => {});
      const timer = setTimeout(() => (socket.destroy(), resolve(false)), 5000);
      socket.on("close", () => (clearTimeout(timer), resolve(true)));
    });
    expect(closed).toBe(true);
  });

  it("sends GOAWAY to a connection idle past client_idle_timeout", async () => {
    const client = http2.connect(`http://127.0.0.1:${kedge.ports.h2c}`);
    client.on("error", () => {});
    const goaway = new Promise<number>((resolve) => client.once("goaway", (code: number) => resolve(code)));
    await new Promise<void>((resolve, reject) => {
      const req = client.request({ ":path": "/before-idle" });
      req.on("response", () => resolve());
      req.on("error", reject);
      req.resume();
    });
    const timeout = new Promise<string>((resolve) => setTimeout(() => resolve("no goaway"), 5000));
    expect(await Promise.race([goaway, timeout])).toBe(0);
    client.destroy();
  });

  it("refuses connections beyond max_connections with GOAWAY and serves again when they go", async () => {
    const limited = await startTestKedge(config({ max_connections: 2 }));
    const open = (): Promise<{ client: http2.ClientHttp2Session; status: number }> =>
      new Promise((resolve, reject) => {
        const client = http2.connect(`http://127.0.0.1:${limited.ports.h2c}`);
        client.on("error", () => {});
        const req = client.request({ ":path": "/limited" });
        req.on("error", reject);
        req.on("response", (h) => resolve({ client, status: Number(h[":status"]) }));
        req.resume();
      });
    try {
      const first = await open();
      const second = await open();
      expect([first.status, second.status]).toEqual([200, 200]);
      const third = await exchangeFrames([frame(1, 0x5, 1, request("/over-limit"))], () => false, limited.ports.h2c);
      expect(third.closed).toBe(true);
      expect(third.frames.find((f) => f.type === 7)?.payload.readUInt32BE(4)).toBe(7); // REFUSED_STREAM
      expect(headersOn(third.frames, 1)).toBe(false);
      first.client.close();
      await Bun.sleep(200);
      const again = await open();
      expect(again.status).toBe(200);
      for (const c of [second, again]) c.client.close();
      expect(await (await fetch(`http://127.0.0.1:${limited.ports.admin}/metrics`)).text()).toMatch(/kedge_connections_refused_total\{reason="max_connections"\} [1-9]/);
    } finally {
      await limited.shutdown();
    }
  });

  it("on shutdown, tells a client GOAWAY and finishes its request in flight", async () => {
    const k = await startTestKedge(config());
    const client = http2.connect(`http://127.0.0.1:${k.ports.h2c}`);
    client.on("error", () => {});
    try {
      const goaway = new Promise<number>((resolve) => client.once("goaway", (code: number) => resolve(code)));
      const answer = new Promise<{ status: number; text: string }>((resolve, reject) => {
        const req = client.request({ ":path": "/slow-chunks?n=3&ms=200" });
        let status = 0;
        let text = "";
        req.setEncoding("utf8");
        req.on("response", (h) => (status = Number(h[":status"])));
        req.on("data", (c: string) => (text += c));
        req.on("end", () => resolve({ status, text }));
        req.on("error", reject);
      });
      await Bun.sleep(100);
      const down = k.shutdown();
      expect(await goaway).toBe(0);
      expect(await answer).toEqual({ status: 200, text: "chunk 0\nchunk 1\nchunk 2\n" });
      await down;
    } finally {
      client.destroy();
    }
  });

  it("serves curl over h2c and h2load's 2,000 requests on 10 streams at a time, all 200", async () => {
    // Spawned, not spawnSync: kedge runs in this process and must keep serving meanwhile.
    const run = async (cmd: string[]) => {
      const p = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe" });
      const out = await new Response(p.stdout).text();
      await p.exited;
      return out;
    };
    expect(await run(["curl", "-s", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_version} %{http_code}", `http://127.0.0.1:${kedge.ports.h2c}/curl`])).toBe("2 200");
    const out = await run(["h2load", "-n", "2000", "-c", "2", "-m", "10", `http://127.0.0.1:${kedge.ports.h2c}/h2load`]);
    expect(out).toMatch(/requests: 2000 total, 2000 started, 2000 done, 2000 succeeded, 0 failed, 0 errored/);
    expect(out).toMatch(/status codes: 2000 2xx/);
  });
});
