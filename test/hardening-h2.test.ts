import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import http2 from "node:http2";
import net from "node:net";
import { startTestKedge, type TestKedge } from "./helpers/kedge.ts";
import { startUpstream, type Upstream } from "./helpers/upstream.ts";
import { frame } from "./helpers/h2-wire.ts";

// Hostile HTTP/2 clients written frame by frame on a raw socket (a real client library would not
// misbehave): rapid reset, PING and SETTINGS floods. kedge must cut the attacker off, keep
// serving a well-behaved client on another connection, and not pass the flood to the backend.

let upstream: Upstream;
let kedge: TestKedge;

beforeAll(async () => {
  upstream = await startUpstream("app");
  kedge = await startTestKedge({
    server: { bind_address: "127.0.0.1", h2c_port: 0, admin_port: 0, log_level: "error", h2_max_concurrent_streams: 64 },
    http: { backends: [{ name: "app", static: { addresses: [`127.0.0.1:${upstream.port}`] } }], routes: [{ backend_name: "app" }] },
  });
});

afterAll(async () => {
  await kedge?.shutdown();
  await upstream?.close();
});

const preface = Buffer.concat([Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), frame(4, 0, 0, Buffer.alloc(0))]);
// HPACK: :method GET, :scheme http, :path /flood (literal), :authority localhost (literal, no indexing).
const path = Buffer.from("/flood");
const authority = Buffer.from("localhost");
const requestBlock = Buffer.concat([Buffer.from([0x82, 0x86, 0x04, path.length]), path, Buffer.from([0x01, authority.length]), authority]);
const cancel = Buffer.from([0, 0, 0, 8]);

/** Opens a raw HTTP/2 connection, writes `frames`, and resolves with whether kedge closed it and the first GOAWAY's error code. */
function attack(frames: Buffer): Promise<{ closed: boolean; goaway: number | undefined }> {
  return new Promise((resolve) => {
    const socket = net.connect(kedge.ports.h2c, "127.0.0.1", () => socket.write(Buffer.concat([preface, frames])));
    let buffered = Buffer.alloc(0);
    let goaway: number | undefined;
    socket.on("data", (d: Buffer) => {
      buffered = Buffer.concat([buffered, d]);
      while (buffered.length >= 9) {
        const length = buffered.readUIntBE(0, 3);
        if (buffered.length < 9 + length) break;
        if (buffered[3] === 7) goaway ??= buffered.readUInt32BE(9 + 4);
        buffered = buffered.subarray(9 + length);
      }
    });
    socket.on("error", () => {});
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ closed: false, goaway });
    }, 5000);
    socket.on("close", () => {
      clearTimeout(timer);
      resolve({ closed: true, goaway });
    });
  });
}

/** A well-behaved HTTP/2 client's request on its own connection. */
async function wellBehaved(): Promise<number> {
  const client = http2.connect(`http://127.0.0.1:${kedge.ports.h2c}`);
  client.on("error", () => {});
  try {
    return await new Promise<number>((resolve, reject) => {
      const req = client.request({ ":path": "/fine" });
      req.on("response", (h) => resolve(Number(h[":status"])));
      req.on("error", reject);
      req.resume();
    });
  } finally {
    client.close();
  }
}

describe("HTTP/2 under hostile load", () => {
  it("advertises h2_max_concurrent_streams", async () => {
    const client = http2.connect(`http://127.0.0.1:${kedge.ports.h2c}`);
    client.on("error", () => {});
    await new Promise((r) => client.once("remoteSettings", r));
    expect(client.remoteSettings.maxConcurrentStreams).toBe(64);
    client.close();
  });

  it("cuts off a rapid-reset client (CVE-2023-44487) with ENHANCE_YOUR_CALM before the flood reaches the backend", async () => {
    const floods = upstream.seen.filter((s) => s.url === "/flood").length;
    const frames: Buffer[] = [];
    for (let i = 0; i < 5000; i++) frames.push(frame(1, 0x5, 1 + 2 * i, requestBlock), frame(3, 0, 1 + 2 * i, cancel));
    const result = await attack(Buffer.concat(frames));
    expect(result.closed).toBe(true);
    expect(result.goaway).toBe(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
    expect(await wellBehaved()).toBe(200);
    // At most the allowance (200 a second) and what was in flight reached the backend, not 5,000.
    expect(upstream.seen.filter((s) => s.url === "/flood").length - floods).toBeLessThan(500);
  });

  it("cuts off a PING flood and a SETTINGS flood, and keeps serving others", async () => {
    const pings = Buffer.concat(Array.from({ length: 50_000 }, () => frame(6, 0, 0, Buffer.alloc(8))));
    expect((await attack(pings)).closed).toBe(true);
    const settings = Buffer.concat(Array.from({ length: 50_000 }, () => frame(4, 0, 0, Buffer.from([0, 3, 0, 0, 0, 100]))));
    expect((await attack(settings)).closed).toBe(true);
    expect(await wellBehaved()).toBe(200);
  });

  it("keeps serving a client that cancels streams at an ordinary rate", async () => {
    const client = http2.connect(`http://127.0.0.1:${kedge.ports.h2c}`);
    client.on("error", () => {});
    for (let i = 0; i < 100; i++) {
      const req = client.request({ ":path": "/slow-chunks?n=2&ms=50" });
      req.on("error", () => {});
      await new Promise((r) => req.once("response", r));
      req.close(http2.constants.NGHTTP2_CANCEL);
    }
    const status = await new Promise<number>((resolve, reject) => {
      const req = client.request({ ":path": "/after-cancels" });
      req.on("response", (h) => resolve(Number(h[":status"])));
      req.on("error", reject);
      req.resume();
    });
    expect(status).toBe(200);
    expect(client.destroyed).toBe(false);
    client.close();
  });
});
