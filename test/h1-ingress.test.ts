import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import net from "node:net";
import { startTestKedge, type TestKedge } from "./helpers/kedge.ts";
import { startUpstream, type Upstream } from "./helpers/upstream.ts";

// kedge's own HTTP/1.1 listener (Bun.listen and its own parser, no node:http): the connection
// semantics clients rely on, each checked on the wire with raw bytes.

let upstream: Upstream;
let kedge: TestKedge;

beforeAll(async () => {
  upstream = await startUpstream("app");
  kedge = await startTestKedge({
    server: { bind_address: "127.0.0.1", http_port: 0, admin_port: 0, log_level: "error", client_idle_timeout: "1s" },
    http: { backends: [{ name: "app", static: { addresses: [`127.0.0.1:${upstream.port}`] } }], routes: [{ backend_name: "app" }] },
  });
});

afterAll(async () => {
  await kedge?.shutdown();
  await upstream?.close();
});

interface Wire {
  /** Everything received so far. */
  received(): string;
  write(bytes: string | Buffer): void;
  /** Resolves once `test` holds for what was received (or rejects after 5 s). */
  until(test: (got: string) => boolean): Promise<string>;
  closed: Promise<string>;
  end(): void;
  destroy(): void;
}

function wire(): Promise<Wire> {
  return new Promise((resolve) => {
    let got = "";
    const waiters: Array<() => void> = [];
    const socket = net.connect(kedge.ports.http, "127.0.0.1");
    const closed = new Promise<string>((r) => socket.on("close", () => r(got)));
    socket.on("error", () => {});
    socket.on("data", (d: Buffer) => {
      got += d.toString("latin1");
      for (const w of waiters.splice(0)) w();
    });
    socket.on("connect", () =>
      resolve({
        received: () => got,
        write: (b) => void socket.write(b),
        until: (test) =>
          new Promise((ok, fail) => {
            const timer = setTimeout(() => fail(new Error(`timed out; got ${JSON.stringify(got.slice(0, 500))}`)), 5000);
            const check = () => (test(got) ? (clearTimeout(timer), ok(got)) : waiters.push(check));
            check();
          }),
        closed,
        end: () => void socket.end(),
        destroy: () => void socket.destroy(),
      }),
    );
  });
}

const statuses = (got: string) => [...got.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => Number(m[1]));
const count = (got: string, re: RegExp) => got.match(re)?.length ?? 0;

describe("kedge's HTTP/1.1 listener", () => {
  it("answers pipelined requests in order on one connection", async () => {
    const w = await wire();
    w.write(["/one", "/two", "/three"].map((p) => `GET ${p} HTTP/1.1\r\nHost: a\r\n\r\n`).join(""));
    const got = await w.until((g) => count(g, /"upstream":"app"/g) === 3);
    const urls = [...got.matchAll(/"url":"([^"]+)"/g)].map((m) => m[1]);
    expect(urls).toEqual(["/one", "/two", "/three"]);
    expect(statuses(got)).toEqual([200, 200, 200]);
    w.destroy();
  });

  it("sends 100 Continue to a client that waits for it, then proxies the body", async () => {
    const w = await wire();
    w.write("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    await w.until((g) => g.startsWith("HTTP/1.1 100 Continue\r\n\r\n"));
    w.write("hello");
    const got = await w.until((g) => g.includes("hello"));
    expect(statuses(got)).toEqual([100, 200]);
    w.destroy();
  });

  it("re-frames a chunked request body for the backend and a length-less response as chunked", async () => {
    const w = await wire();
    w.write("POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n4\r\ndefg\r\n0\r\nX-Trailer: t\r\n\r\n");
    const got = await w.until((g) => g.endsWith("0\r\n\r\n"));
    expect(got).toMatch(/transfer-encoding: chunked/i);
    // Chunks are relayed as they come; what matters is the bytes and a well-formed end.
    const body = got.slice(got.indexOf("\r\n\r\n") + 4);
    expect(body).toMatch(/^([0-9a-f]+\r\n[a-g]+\r\n)+0\r\n\r\n$/);
    expect(body.replace(/[0-9]+\r\n|\r\n/g, "")).toBe("abcdefg");
    // The connection stays usable for the next request.
    w.write("GET /after HTTP/1.1\r\nHost: a\r\n\r\n");
    await w.until((g) => g.includes('"url":"/after"'));
    w.destroy();
  });

  it("answers HEAD with headers only and keeps the connection", async () => {
    const w = await wire();
    w.write("HEAD /x HTTP/1.1\r\nHost: a\r\n\r\nGET /y HTTP/1.1\r\nHost: a\r\n\r\n");
    const got = await w.until((g) => g.includes('"url":"/y"'));
    expect(statuses(got)).toEqual([200, 200]);
    expect(count(got, /"upstream"/g)).toBe(1);
    w.destroy();
  });

  it("closes after an HTTP/1.0 response unless the client asked for keep-alive", async () => {
    const once = await wire();
    once.write("GET /old HTTP/1.0\r\nHost: a\r\n\r\n");
    const got = await once.closed;
    expect(got).toMatch(/^HTTP\/1\.1 200/);
    expect(got).toMatch(/connection: close/i);
    expect(got).not.toMatch(/transfer-encoding/i);

    // Keep-alive needs a length to end the body by: /big sends Content-Length.
    const kept = await wire();
    kept.write("GET /big?bytes=10 HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n");
    await kept.until((g) => g.endsWith("a".repeat(10)));
    kept.write("GET /big?bytes=20 HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n");
    const both = await kept.until((g) => g.endsWith("a".repeat(20)));
    expect(statuses(both)).toEqual([200, 200]);
    expect(count(both, /connection: keep-alive/gi)).toBe(2);
    kept.destroy();
  });

  it("closes after the response when the client sent Connection: close", async () => {
    const w = await wire();
    w.write("GET /bye HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET /never HTTP/1.1\r\nHost: a\r\n\r\n");
    const got = await w.closed;
    expect(statuses(got)).toEqual([200]);
    expect(got).not.toContain("/never");
  });

  it("dates the answers it makes itself with the current second, not one kept from earlier", async () => {
    const dateOf = async () => {
      const res = await fetch(kedge.url("/a%2Fb")); // refused by kedge: its own answer, its own Date
      expect(res.status).toBe(400);
      const date = Date.parse(res.headers.get("date") ?? "");
      expect(Math.abs(date - Date.now())).toBeLessThan(1500);
      return date;
    };
    const first = await dateOf();
    await Bun.sleep(1100);
    expect(await dateOf()).toBeGreaterThan(first);
  });

  it("closes a keep-alive connection left idle past client_idle_timeout", async () => {
    const w = await wire();
    w.write("GET /idle HTTP/1.1\r\nHost: a\r\n\r\n");
    await w.until((g) => g.includes('"url":"/idle"'));
    const started = performance.now();
    const got = await w.closed;
    expect(performance.now() - started).toBeGreaterThan(500);
    expect(statuses(got)).toEqual([200]);
  });

  it("streams a large body both ways with backpressure, then serves the next request", async () => {
    const size = 8 * 1024 * 1024;
    const res = await fetch(kedge.url("/echo"), { method: "POST", body: Buffer.alloc(size, 120) });
    expect(res.status).toBe(200);
    expect((await res.arrayBuffer()).byteLength).toBe(size);
    const big = await fetch(kedge.url(`/big?bytes=${size}`));
    expect((await big.arrayBuffer()).byteLength).toBe(size);
    expect((await fetch(kedge.url("/next"))).status).toBe(200);
  });

  it("drops the backend exchange when the client goes mid-response, and keeps serving others", async () => {
    const w = await wire();
    w.write("GET /slow-chunks?n=20&ms=50 HTTP/1.1\r\nHost: a\r\n\r\n");
    await w.until((g) => g.includes("chunk 0"));
    w.destroy();
    expect((await fetch(kedge.url("/still-up"))).status).toBe(200);
  });

  it("refuses a request line of an HTTP version it does not speak with 505", async () => {
    const w = await wire();
    w.write("GET / HTTP/2.0\r\nHost: a\r\n\r\n");
    const got = await w.closed;
    expect(statuses(got)).toEqual([505]);
  });
});
