import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import http from "node:http";
import net from "node:net";
import { startTestKedge, type TestKedge } from "./helpers/kedge.ts";
import { startUpstream, type Upstream } from "./helpers/upstream.ts";

// One request, one answer: whatever answers a request before its body has all arrived (kedge
// itself, its access check, a backend that answers early), the client reads exactly one final
// response for it, and a connection kept alive serves the next request as usual.

const token = "one-answer-token";
const auth = `Proxy-Authorization: Bearer ${token}\r\n`;
let upstream: Upstream;
let early: http.Server;
let closedPort: number;
let kedge: TestKedge;

beforeAll(async () => {
  upstream = await startUpstream("app");
  // Answers as soon as the head is in, without reading the body.
  early = http.createServer((_req, res) => res.end("early"));
  await new Promise<void>((r) => early.listen(0, "127.0.0.1", r));
  const unused = net.createServer();
  await new Promise<void>((r) => unused.listen(0, "127.0.0.1", r));
  closedPort = (unused.address() as net.AddressInfo).port;
  await new Promise<void>((r) => unused.close(() => r()));
  kedge = await startTestKedge({
    server: { bind_address: "127.0.0.1", http_port: 0, admin_port: 0, log_level: "error", client_idle_timeout: "2s" },
    auth: { bearer_token: token },
    http: {
      backends: [
        { name: "app", static: { addresses: [`127.0.0.1:${upstream.port}`] } },
        { name: "early", static: { addresses: [`127.0.0.1:${(early.address() as net.AddressInfo).port}`] } },
        { name: "down", static: { addresses: [`127.0.0.1:${closedPort}`] }, timeouts: { connect: "1s" } },
      ],
      routes: [
        { backend_name: "app", host_matcher: "app.test" },
        { backend_name: "early", host_matcher: "early.test" },
        { backend_name: "down", host_matcher: "down.test" },
      ],
    },
  });
});

afterAll(async () => {
  await kedge?.shutdown();
  await upstream?.close();
  early?.close();
});

interface Conversation {
  got: string;
  closed: boolean;
}

/**
 * Plays `steps` on a fresh connection (a string is written, a number is a pause in ms), then reads
 * everything kedge sends until it closes or stays quiet for `quietMs`.
 */
function converse(steps: Array<string | number>, quietMs = 800): Promise<Conversation> {
  return new Promise((resolve) => {
    let got = "";
    let quiet: ReturnType<typeof setTimeout> | undefined;
    const socket = net.connect(kedge.ports.http, "127.0.0.1");
    const finish = (closed: boolean) => {
      clearTimeout(quiet);
      socket.destroy();
      resolve({ got, closed });
    };
    const waitQuiet = () => {
      clearTimeout(quiet);
      quiet = setTimeout(() => finish(false), quietMs);
    };
    let played = false;
    socket.on("data", (d: Buffer) => {
      got += d.toString("latin1");
      if (played) waitQuiet();
    });
    socket.on("error", () => {});
    socket.on("close", () => finish(true));
    socket.on("connect", async () => {
      for (const step of steps) {
        if (typeof step === "number") await Bun.sleep(step);
        else if (!socket.destroyed) socket.write(step);
      }
      played = true;
      waitQuiet();
    });
  });
}

const statusesOf = (got: string) => [...got.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));
const finalsOf = (got: string) => statusesOf(got).filter((s) => s >= 200);

interface Framing {
  name: string;
  field: string;
  body: string;
}

const framings: Framing[] = [
  { name: "Content-Length", field: "Content-Length: 5\r\n", body: "hello" },
  { name: "chunked", field: "Transfer-Encoding: chunked\r\n", body: "5\r\nhello\r\n0\r\n\r\n" },
];

interface EarlyAnswer {
  what: string;
  host: string;
  credentials: string;
  status: number;
  /** The request passed routing and access: a client waiting for it gets its 100. */
  accepted: boolean;
}

const earlyAnswers: EarlyAnswer[] = [
  { what: "kedge's own answer (no route)", host: "nope.test", credentials: auth, status: 502, accepted: false },
  { what: "a refused credential (401)", host: "app.test", credentials: "", status: 401, accepted: false },
  { what: "an unreachable backend (502)", host: "down.test", credentials: auth, status: 502, accepted: true },
  { what: "a backend that answers before reading the body", host: "early.test", credentials: auth, status: 200, accepted: true },
];

const next = `GET /next HTTP/1.1\r\nHost: app.test\r\n${auth}\r\n`;

describe("one answer per HTTP/1.1 request", () => {
  for (const answer of earlyAnswers) {
    it(`answers once when the body comes 0.5 s after ${answer.what}, and the next request on a kept connection is served`, async () => {
      const cases = framings.flatMap((framing) => [false, true].map((expectContinue) => ({ framing, expectContinue })));
      await Promise.all(
        cases.map(async ({ framing, expectContinue }) => {
          const label = `${framing.name}${expectContinue ? " with Expect: 100-continue" : ""}`;
          const head = `POST /upload HTTP/1.1\r\nHost: ${answer.host}\r\n${answer.credentials}${framing.field}${expectContinue ? "Expect: 100-continue\r\n" : ""}\r\n`;
          const { got, closed } = await converse([head, 500, framing.body, 200, next]);
          const finals = finalsOf(got);
          expect(finals[0], label).toBe(answer.status);
          // A 100 only ever for a request kedge accepted, and only to a client that asked.
          const continues = statusesOf(got).filter((s) => s === 100).length;
          expect(continues, label).toBe(expectContinue && answer.accepted ? 1 : 0);
          const firstHead = got.slice(got.indexOf(`HTTP/1.1 ${answer.status}`)).split("\r\n\r\n")[0];
          if (/^connection: close$/im.test(firstHead)) {
            expect(finals, label).toEqual([answer.status]);
            expect(closed, label).toBe(true);
          } else {
            expect(finals, label).toEqual([answer.status, 200]);
            expect(got, label).toContain('"url":"/next"');
          }
        }),
      );
    });
  }

  it("closes after answering a client that still waits for its 100, rather than guess whether its body comes", async () => {
    const { got, closed } = await converse([`POST /upload HTTP/1.1\r\nHost: nope.test\r\n${auth}Content-Length: 5\r\nExpect: 100-continue\r\n\r\n`]);
    expect(statusesOf(got)).toEqual([502]);
    expect(got).toMatch(/^connection: close$/im);
    expect(closed).toBe(true);
  });

  it("keeps the connection after an early answer and reads the rest of a small body off it", async () => {
    const { got, closed } = await converse([`POST /upload HTTP/1.1\r\nHost: nope.test\r\n${auth}Content-Length: 5\r\n\r\n`, 500, "hello", 200, next]);
    expect(finalsOf(got)).toEqual([502, 200]);
    expect(got).not.toMatch(/^connection: close$/im);
    expect(closed).toBe(false);
  });

  it("closes instead of reading a large body the answer did not need", async () => {
    const { got, closed } = await converse([`POST /upload HTTP/1.1\r\nHost: nope.test\r\n${auth}Content-Length: 10000000\r\n\r\n`, 300, "x".repeat(1000)]);
    expect(statusesOf(got)).toEqual([502]);
    expect(got).toMatch(/^connection: close$/im);
    expect(closed).toBe(true);
  });

  it("closes when a chunked body answered early runs past the drain limit", async () => {
    const chunk = `${(64 * 1024).toString(16)}\r\n${"x".repeat(64 * 1024)}\r\n`;
    const { got, closed } = await converse([`POST /upload HTTP/1.1\r\nHost: nope.test\r\n${auth}Transfer-Encoding: chunked\r\n\r\n`, 300, ...Array(8).fill(chunk), next], 1500);
    expect(finalsOf(got)).toEqual([502]);
    expect(closed).toBe(true);
  });
});

describe("100 Continue", () => {
  it("is sent once routing and the access check accepted the request, and never to a refused one", async () => {
    const refused = await Promise.all(
      [
        `POST /x HTTP/1.1\r\nHost: nope.test\r\n${auth}Content-Length: 5\r\nExpect: 100-continue\r\n\r\n`,
        `POST /x HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n`,
        `POST /x HTTP/1.1\r\nHost: app.test\r\nProxy-Authorization: Bearer wrong\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n`,
      ].map((head) => converse([head])),
    );
    expect(refused.map((r) => statusesOf(r.got))).toEqual([[502], [401], [401]]);
    const accepted = await converse([`POST /x HTTP/1.1\r\nHost: app.test\r\n${auth}Content-Length: 5\r\nExpect: 100-continue\r\n\r\n`, 300, "hello"]);
    expect(statusesOf(accepted.got)).toEqual([100, 200]);
    expect(accepted.got).toContain('"bodyBytes":5');
  });
});

describe("the rest of a body answered early", () => {
  it("is waited for a few seconds at most, then the connection closes", async () => {
    const started = performance.now();
    const { got, closed } = await converse([`POST /upload HTTP/1.1\r\nHost: nope.test\r\n${auth}Content-Length: 5\r\n\r\nhel`], 15_000);
    expect(statusesOf(got)).toEqual([502]);
    expect(closed).toBe(true);
    expect(performance.now() - started).toBeLessThan(12_000);
  });
});

describe("a request body that stalls", () => {
  it("is answered 408 and the connection closed once the client is silent past client_idle_timeout", async () => {
    const started = performance.now();
    const { got, closed } = await converse([`POST /upload HTTP/1.1\r\nHost: app.test\r\n${auth}Content-Length: 10\r\n\r\nabc`], 15_000);
    expect(statusesOf(got)).toEqual([408]);
    expect(got).toContain("x-kedge-error: request body stalled past client_idle_timeout");
    expect(closed).toBe(true);
    expect(performance.now() - started).toBeLessThan(10_000);
  });

  it("is not cut while its bytes keep coming, however long the upload takes", async () => {
    const trickle = Array.from({ length: 5 }, () => [700, "xx"]).flat();
    const { got } = await converse([`POST /upload HTTP/1.1\r\nHost: app.test\r\n${auth}Content-Length: 10\r\n\r\n`, ...trickle]);
    expect(statusesOf(got)).toEqual([200]);
    expect(got).toContain('"bodyBytes":10');
  });
});
