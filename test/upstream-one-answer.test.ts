import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import http from "node:http";
import net from "node:net";
import { plainServer, startTestKedge, type TestKedge } from "./helpers/kedge.ts";
import { until } from "./helpers/wait.ts";

// kedge's HTTP/1.1 client to backends: one request, one answer. The response_header timeout is the
// backend's delay, not the client's upload; a connection that said more than its answer is never
// reused; a head with bare-LF line ends is read at once.

/** A raw TCP backend: `answer(n)` is what it writes, as it is, for each request head on its n-th connection (from 1). */
interface RawBackend {
  port: number;
  connections(): number;
  close(): void;
}

async function rawBackend(answer: (connection: number, socket: net.Socket) => void): Promise<RawBackend> {
  let connections = 0;
  const server = net.createServer((socket) => {
    const n = ++connections;
    let got = "";
    socket.on("error", () => {});
    socket.on("data", (d) => {
      got += d.toString("latin1");
      // One answer per request head; the requests here have no body.
      while (got.includes("\r\n\r\n")) {
        got = got.slice(got.indexOf("\r\n\r\n") + 4);
        answer(n, socket);
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { port: (server.address() as net.AddressInfo).port, connections: () => connections, close: () => server.close() };
}

const backends: RawBackend[] = [];
let slowReader: http.Server;
let early: http.Server;
let earlyOpen = 0;
let kedge: TestKedge;

const garbage = "HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\ngarbage";
const reply = (body: string) => `HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body}`;

beforeAll(async () => {
  backends.push(
    // A response and, in the same write, bytes beyond it.
    await rawBackend((n, s) => void s.write(reply(`conn-${n}`) + garbage)),
    // A response, then more bytes a moment later.
    await rawBackend((n, s) => {
      s.write(reply(`conn-${n}`));
      setTimeout(() => s.write(garbage), 50);
    }),
    // Bare LF line ends throughout the head.
    await rawBackend((_n, s) => void s.write("HTTP/1.1 200 OK\nContent-Length: 2\nX-Lf: yes\n\nhi")),
    // Bare LF only on the blank line, and a body that holds a CRLFCRLF of its own.
    await rawBackend((_n, s) => void s.write("HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\nab\r\n\r\n")),
    // A bare CR is not a line end: refused, at once.
    await rawBackend((_n, s) => void s.write("HTTP/1.1 200 OK\r\nX-A: 1\rContent-Length: 2\r\n\r\nhi")),
  );
  // Reads the whole body before answering.
  slowReader = http.createServer((req, res) => {
    let bytes = 0;
    req.on("data", (c: Buffer) => (bytes += c.length));
    req.on("end", () => res.end(`read ${bytes}`));
  });
  await new Promise<void>((r) => slowReader.listen(0, "127.0.0.1", r));
  // Answers without reading the body.
  early = http.createServer((_req, res) => res.end("early"));
  early.on("connection", (socket: net.Socket) => {
    earlyOpen++;
    socket.on("close", () => earlyOpen--);
  });
  await new Promise<void>((r) => early.listen(0, "127.0.0.1", r));
  const at = (port: number) => ({ static: { addresses: [`127.0.0.1:${port}`] } });
  const names = ["trailing", "late", "lf", "lf-blank", "bare-cr"];
  kedge = await startTestKedge({
    server: plainServer,
    http: {
      backends: [
        ...backends.map((b, i) => ({ name: names[i], ...at(b.port), timeouts: { response_header: "10s" } })),
        { name: "upload", ...at((slowReader.address() as net.AddressInfo).port), timeouts: { response_header: "1s" } },
        { name: "early", ...at((early.address() as net.AddressInfo).port) },
      ],
      routes: [...names, "upload", "early"].map((name) => ({ backend_name: name, host_matcher: `${name}.test` })),
    },
  });
});

afterAll(async () => {
  await kedge?.shutdown();
  for (const b of backends) b.close();
  slowReader?.close();
  early?.closeAllConnections();
  early?.close();
});

const get = (host: string) => fetch(kedge.url("/"), { headers: { host }, signal: AbortSignal.timeout(5000) });

describe("response_header timeout", () => {
  it("counts from the end of the request body: an upload slower than it is not a backend timeout", async () => {
    const body = new ReadableStream<Uint8Array>({
      async start(controller) {
        for (let i = 0; i < 5; i++) {
          controller.enqueue(new TextEncoder().encode("x"));
          await Bun.sleep(500);
        }
        controller.close();
      },
    });
    const started = performance.now();
    const res = await fetch(kedge.url("/"), { method: "POST", headers: { host: "upload.test" }, body, duplex: "half" } as RequestInit);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe("read 5");
    expect(performance.now() - started).toBeGreaterThan(2000); // the upload did outlast response_header
  });
});

describe("a backend connection that says more than its answer", () => {
  for (const [host, backend, what] of [
    ["trailing.test", 0, "in the same read"],
    ["late.test", 1, "a moment after it"],
  ] as const) {
    it(`is closed, not reused, when bytes follow a complete response ${what}`, async () => {
      const first = await get(host);
      expect(await first.text()).toBe("conn-1");
      await Bun.sleep(200);
      const second = await get(host);
      expect(await second.text()).toBe("conn-2");
      expect(backends[backend].connections()).toBe(2);
    });
  }
});

describe("a backend that answers before the request body was all sent", () => {
  it("has its connection closed at once: what is left of the request cannot be framed for the next one", async () => {
    const res = await fetch(kedge.url("/"), { method: "POST", headers: { host: "early.test" }, body: "x".repeat(100) });
    expect(res.status).toBe(200);
    expect(await res.text()).toBe("early");
    const body = new ReadableStream<Uint8Array>({
      async start(controller) {
        controller.enqueue(new TextEncoder().encode("first part"));
        await Bun.sleep(1500);
        controller.close();
      },
    });
    const streamed = await fetch(kedge.url("/"), { method: "POST", headers: { host: "early.test" }, body, duplex: "half" } as RequestInit);
    expect(await streamed.text()).toBe("early");
    await until("kedge closed its connections to the early backend", () => earlyOpen === 0, 3000);
  });
});

describe("a response head with bare-LF line ends", () => {
  it("is read at once, as RFC 9112 §2.2 lets a recipient, and reaches the client with CRLF line ends", async () => {
    const started = performance.now();
    const res = await get("lf.test");
    expect(res.status).toBe(200);
    expect(res.headers.get("x-lf")).toBe("yes");
    expect(await res.text()).toBe("hi");
    const blank = await get("lf-blank.test");
    expect(await blank.text()).toBe("ab\r\n\r\n");
    expect(performance.now() - started).toBeLessThan(3000);
    // The client gets a well-formed head whatever the backend's line ends.
    const raw = await new Promise<string>((resolve) => {
      let got = "";
      const s = net.connect(kedge.ports.http, "127.0.0.1", () => s.write("GET / HTTP/1.1\r\nHost: lf.test\r\nConnection: close\r\n\r\n"));
      s.on("data", (d) => (got += d.toString("latin1")));
      s.on("close", () => resolve(got));
    });
    const head = raw.slice(0, raw.indexOf("\r\n\r\n") + 2);
    expect(head).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(head.replace(/\r\n/g, "")).not.toMatch(/[\r\n]/);
  });

  it("is refused 502 at once when a bare CR is in it", async () => {
    const res = await get("bare-cr.test");
    expect(res.status).toBe(502);
    expect(res.headers.get("x-kedge-error-type")).toBe("backend-transport-closed");
    expect(res.headers.get("x-kedge-error")).toContain("invalid HTTP");
  });
});
