import { afterAll, afterEach, beforeAll, describe, expect, it } from "bun:test";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { captureAccessLines } from "./helpers/access-lines.ts";
import { plainServer, startTestKedge, type TestKedge } from "./helpers/kedge.ts";
import { promtool, seriesTotal } from "./helpers/prometheus.ts";
import { until } from "./helpers/wait.ts";

// A route's retry policy over real sockets: which HTTP requests are sent again (idempotent, body
// held), on what (503, a reset, a per-try timeout), where (another endpoint), how many at once
// (the budget), and how a retry shows in /metrics and the access line.

interface Seen {
  method: string;
  body: string;
  /** Order of arrival across every endpoint of the test. */
  at: number;
}

interface Backend {
  name: string;
  port: number;
  seen: Seen[];
  close(): Promise<void>;
}

type Answer = (seen: Seen, res: http.ServerResponse, req: http.IncomingMessage) => void;

/** A real HTTP/1.1 endpoint: reads each whole request, records it, then answers as told. */
let arrivals = 0;

async function endpoint(name: string, answer: Answer): Promise<Backend> {
  const seen: Seen[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const s = { method: req.method ?? "", body: Buffer.concat(chunks).toString(), at: ++arrivals };
      seen.push(s);
      answer(s, res, req);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    name,
    port: (server.address() as AddressInfo).port,
    seen,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const ok: Answer = (s, res) => {
  res.writeHead(200, { "x-upstream": "ok" });
  res.end(`${s.method} ${s.body.length}`);
};
const unavailable = (name: string): Answer => (_s, res) => {
  res.writeHead(503, { "x-upstream": name });
  res.end("try later");
};
const count = (b: Backend, method: string) => b.seen.filter((s) => s.method === method).length;

let capture: ReturnType<typeof captureAccessLines>;
const started: Array<{ shutdown(): Promise<void> } | Backend> = [];

async function kedgeFor(backends: Backend[], retry: Record<string, unknown> | undefined): Promise<TestKedge> {
  const k = await startTestKedge({
    server: plainServer,
    http: {
      backends: [{ name: "pair", static: { addresses: backends.map((b) => `127.0.0.1:${b.port}`) } }],
      routes: [
        { backend_name: "pair", path_rules: ["/no-policy"] },
        { backend_name: "pair", retry },
      ],
    },
    observability: { access_log: { enabled: true } },
  });
  started.push(k);
  return k;
}

async function metrics(k: TestKedge): Promise<string> {
  return (await fetch(`http://127.0.0.1:${k.ports.admin}/metrics`)).text();
}

beforeAll(() => {
  capture = captureAccessLines();
});

afterEach(async () => {
  for (const s of started.splice(0).reverse()) await ("shutdown" in s ? s.shutdown() : s.close());
});

afterAll(() => capture.stop());

describe("http retry policy", () => {
  it("sends a GET answered 503 to the other endpoint; the client sees only the answer that worked", async () => {
    const down = await endpoint("down", unavailable("down"));
    const up = await endpoint("up", ok);
    started.push(down, up);
    const k = await kedgeFor([down, up], { attempts: 2, on: ["503"] });
    for (let i = 0; i < 4; i++) {
      const res = await fetch(k.url("/a"), { headers: { "x-kedge-request-id": `get-${i}` } });
      expect(res.status).toBe(200);
      expect(await res.text()).toBe("GET 0");
    }
    const failed = count(down, "GET");
    expect(failed).toBeGreaterThanOrEqual(1);
    expect(count(up, "GET")).toBe(4);
    const text = await metrics(k);
    expect(seriesTotal(text, "kedge_retries_total", 'reason="503"')).toBe(failed);
    expect(seriesTotal(text, "kedge_retries_total", 'backend_name="pair"')).toBe(failed);
    expect(await promtool(text)).toEqual({ code: 0, out: "" });
    const lines = await Promise.all([0, 1, 2, 3].map((i) => capture.lineFor(`get-${i}`)));
    const retried = lines.filter((l) => l.attempts !== undefined);
    expect(retried.length).toBe(failed);
    for (const l of retried) expect([l.attempts, l.retry_reasons, l.status]).toEqual([2, ["503"], 200]);
    for (const l of lines.filter((l) => l.attempts === undefined)) expect(l.retry_reasons).toBeUndefined();
  });

  it("never sends a POST again, and a route without a policy passes the 503 on", async () => {
    const down = await endpoint("down", unavailable("down"));
    const up = await endpoint("up", ok);
    started.push(down, up);
    const k = await kedgeFor([down, up], { attempts: 3, on: [502, 503, 504, "reset"] });
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await fetch(k.url("/a"), { method: "POST", body: "payload" })).status);
    for (let i = 0; i < 4; i++) statuses.push((await fetch(k.url("/no-policy"))).status);
    expect(statuses.filter((s) => s === 503).length).toBe(4);
    expect(down.seen.length + up.seen.length).toBe(8);
    expect(seriesTotal(await metrics(k), "kedge_retries_total")).toBe(0);
  });

  it("answers with the last attempt's 503 when every attempt fails", async () => {
    const a = await endpoint("a", unavailable("a"));
    const b = await endpoint("b", unavailable("b"));
    started.push(a, b);
    const k = await kedgeFor([a, b], { attempts: 2, on: ["503"] });
    const res = await fetch(k.url("/a"));
    expect(res.status).toBe(503);
    expect([a.seen.length, b.seen.length]).toEqual([1, 1]);
    const last = a.seen[0].at > b.seen[0].at ? "a" : "b";
    expect(res.headers.get("x-upstream")).toBe(last);
    expect(await res.text()).toBe("try later");
  });

  it("sends an idempotent body again whole while it is at most 64 KiB, and a larger one only once", async () => {
    const a = await endpoint("a", unavailable("a"));
    const b = await endpoint("b", unavailable("b"));
    started.push(a, b);
    const k = await kedgeFor([a, b], { attempts: 2, on: ["503"] });
    const bodies = () => [...a.seen, ...b.seen].sort((x, y) => x.at - y.at).map((s) => s.body);
    const small = "s".repeat(60_000);
    expect((await fetch(k.url("/put"), { method: "PUT", body: small })).status).toBe(503);
    expect(bodies().map((body) => body === small)).toEqual([true, true]);
    // A body of unknown length (chunked) is kept too while it fits.
    const chunked = new ReadableStream({
      start(c) {
        c.enqueue(new TextEncoder().encode("part one,"));
        c.enqueue(new TextEncoder().encode("part two"));
        c.close();
      },
    });
    expect((await fetch(k.url("/put"), { method: "PUT", body: chunked, duplex: "half" } as RequestInit)).status).toBe(503);
    expect(bodies().slice(2)).toEqual(["part one,part two", "part one,part two"]);
    const large = "l".repeat(100_000);
    expect((await fetch(k.url("/put"), { method: "PUT", body: large })).status).toBe(503);
    expect(a.seen.length + b.seen.length).toBe(5);
  });

  it("sends a GET again when the endpoint resets the connection after reading the request", async () => {
    const reset = await endpoint("reset", (_s, _res, req) => req.socket.destroy());
    const up = await endpoint("up", ok);
    started.push(reset, up);
    const k = await kedgeFor([reset, up], { on: ["reset"] });
    for (let i = 0; i < 4; i++) expect((await fetch(k.url("/a"))).status).toBe(200);
    expect(reset.seen.length).toBeGreaterThanOrEqual(1);
    expect(up.seen.length).toBe(4);
    expect(seriesTotal(await metrics(k), "kedge_retries_total", 'reason="reset"')).toBe(reset.seen.length);
    // Without a policy the reset is the client's 502.
    const statuses: number[] = [];
    for (let i = 0; i < 2; i++) statuses.push((await fetch(k.url("/no-policy"))).status);
    expect(statuses.sort()).toEqual([200, 502]);
  });

  it("gives up on an endpoint silent past per_try_timeout and takes the other's answer", async () => {
    const silent = await endpoint("silent", () => {});
    const up = await endpoint("up", ok);
    started.push(silent, up);
    const k = await kedgeFor([silent, up], { per_try_timeout: "0.3s", on: [504] });
    const statuses = await Promise.all([0, 1, 2, 3].map(async (i) => (await fetch(k.url("/a"), { headers: { "x-kedge-request-id": `slow-${i}` } })).status));
    expect(statuses).toEqual([200, 200, 200, 200]);
    expect(silent.seen.length).toBe(2);
    expect(seriesTotal(await metrics(k), "kedge_retries_total", 'reason="timeout"')).toBe(2);
    const lines = await Promise.all([0, 1, 2, 3].map((i) => capture.lineFor(`slow-${i}`)));
    expect(lines.filter((l) => l.attempts === 2).map((l) => l.retry_reasons)).toEqual([["timeout"], ["timeout"]]);
  });

  it("keeps retries in flight within budget_percent of the backend's requests in flight", async () => {
    const total = 24;
    const held: http.ServerResponse[] = [];
    let releaseUp = () => {};
    const upReleased = new Promise<void>((r) => (releaseUp = r));
    // Every first attempt is in before the first 503 goes out, so the budget sees all of them in flight.
    const down = await endpoint("down", (_s, res) => {
      held.push(res);
      void until("every first attempt", () => down.seen.length + up.seen.length >= total).then(() => unavailable("down")(_s, res, undefined as never));
    });
    const up = await endpoint("up", (s, res) => void upReleased.then(() => ok(s, res, undefined as never)));
    started.push(down, up);
    const k = await kedgeFor([down, up], { attempts: 2, on: [503], budget_percent: 25 });
    const answers = Promise.all(Array.from({ length: total }, async () => (await fetch(k.url("/a"))).status));
    // Each 503 is retried or refused by the budget; the retries wait at "up" with the first attempts it got.
    let decided = 0;
    await until("every 503 retried or refused", async () => {
      const text = await metrics(k);
      decided = seriesTotal(text, "kedge_retries_total");
      return decided + seriesTotal(text, "kedge_retry_budget_exceeded_total") >= total / 2;
    });
    await until("the retries at up", () => up.seen.length === total / 2 + decided);
    releaseUp();
    const statuses = await answers;
    const text = await metrics(k);
    const retries = seriesTotal(text, "kedge_retries_total");
    // 25% of 24 requests in flight: 6 retries, however many 503s came back.
    expect(retries).toBe(6);
    expect(seriesTotal(text, "kedge_retry_budget_exceeded_total", 'backend_name="pair"')).toBe(total / 2 - 6);
    expect(up.seen.length).toBe(total / 2 + retries);
    expect(statuses.filter((s) => s === 503).length).toBe(total / 2 - retries);
    expect(held.length).toBe(total / 2);
  });

  it("counts kedge's own re-sends of what never reached the backend", async () => {
    const up = await endpoint("up", ok);
    started.push(up);
    const dead = await endpoint("dead", ok);
    await dead.close();
    const k = await kedgeFor([dead, up], undefined);
    for (let i = 0; i < 2; i++) expect((await fetch(k.url("/no-policy"))).status).toBe(200);
    expect(seriesTotal(await metrics(k), "kedge_retries_total", 'reason="connect-failure"')).toBeGreaterThanOrEqual(1);
  });
});
