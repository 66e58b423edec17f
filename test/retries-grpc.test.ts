import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import * as grpc from "@grpc/grpc-js";
import { captureAccessLines } from "./helpers/access-lines.ts";
import { GreeterClient, greeterService, startGreeter, unary, type GreeterServer } from "./helpers/grpc.ts";
import { rawH2Server, rstStream } from "./helpers/h2-wire.ts";
import { plainServer, startTestKedge, type TestKedge } from "./helpers/kedge.ts";
import { seriesTotal } from "./helpers/prometheus.ts";

// A gRPC route's retry policy over real sockets, with grpc-js on both sides: a call is sent again
// while nothing of its answer reached the client and its messages are held, on UNAVAILABLE, a
// reset stream or a per-try timeout; never once a message went to the client.

interface Flaky {
  port: number;
  /** Each call: its method and, for client streams, the sum of what it received. */
  calls: Array<{ method: string; total?: number }>;
  close(): void;
}

const unavailable = { code: grpc.status.UNAVAILABLE, details: "try later" } as grpc.ServiceError;

/** A Greeter that answers UNAVAILABLE to everything: server streams after `n` messages. */
async function startFlaky(): Promise<Flaky> {
  const calls: Flaky["calls"] = [];
  const server = new grpc.Server();
  server.addService(greeterService, {
    sayHello: (_call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      calls.push({ method: "sayHello" });
      cb(unavailable);
    },
    countTo: (call: grpc.ServerWritableStream<{ n: number }, unknown>) => {
      calls.push({ method: "countTo" });
      for (let i = 1; i <= call.request.n; i++) call.write({ i, server: "flaky" });
      call.emit("error", unavailable);
    },
    sum: (call: grpc.ServerReadableStream<{ n: number }, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      const record = { method: "sum", total: 0 };
      calls.push(record);
      call.on("data", (m: { n: number }) => (record.total += m.n));
      call.on("end", () => cb(unavailable));
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return { port, calls, close: () => server.forceShutdown() };
}

/** A Greeter whose SayHello never answers. */
async function startSilent(): Promise<Flaky> {
  const calls: Flaky["calls"] = [];
  const server = new grpc.Server();
  server.addService(greeterService, {
    sayHello: () => void calls.push({ method: "sayHello" }),
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return { port, calls, close: () => server.forceShutdown() };
}

let kedge: TestKedge;
let good: GreeterServer;
let flaky: Flaky;
let flakyAlone: Flaky;
let silent: Flaky;
let capture: ReturnType<typeof captureAccessLines>;
// Resets every stream as soon as its HEADERS arrive.
const resetting = rawH2Server((f, conn) => {
  if (f.type === 1) conn.send(rstStream(f.id, 2));
});
const clients: grpc.Client[] = [];

const at = (...ports: number[]) => ({ static: { addresses: ports.map((p) => `127.0.0.1:${p}`) } });

function client(authority: string): grpc.Client {
  const c = new GreeterClient(`127.0.0.1:${kedge.ports.h2c}`, grpc.credentials.createInsecure(), { "grpc.default_authority": authority });
  clients.push(c);
  return c;
}

async function metrics(): Promise<string> {
  return (await fetch(`http://127.0.0.1:${kedge.ports.admin}/metrics`)).text();
}

const withId = (id: string) => {
  const m = new grpc.Metadata();
  m.set("x-kedge-request-id", id);
  return m;
};

beforeAll(async () => {
  capture = captureAccessLines();
  good = await startGreeter("good");
  flaky = await startFlaky();
  flakyAlone = await startFlaky();
  silent = await startSilent();
  kedge = await startTestKedge({
    server: { ...plainServer, h2c_port: 0 },
    grpc: {
      backends: [
        { name: "mixed", ...at(flaky.port, good.port) },
        { name: "flaky-alone", ...at(flakyAlone.port) },
        { name: "slow", ...at(silent.port, good.port) },
        { name: "resetting", ...at(resetting.port, good.port) },
      ],
      routes: [
        { backend_name: "flaky-alone", authority_host_matcher: "alone.test", retry: { attempts: 2, on: [503] } },
        { backend_name: "slow", authority_host_matcher: "slow.test", retry: { per_try_timeout: "0.3s", on: [504] } },
        { backend_name: "resetting", authority_host_matcher: "reset.test", retry: { on: ["reset"] } },
        { backend_name: "mixed", authority_host_matcher: "no-policy.test" },
        { backend_name: "mixed", retry: { attempts: 2, on: ["503"] } },
      ],
    },
    observability: { access_log: { enabled: true } },
  });
});

afterAll(async () => {
  for (const c of clients) c.close();
  await kedge?.shutdown();
  good?.kill();
  flaky?.close();
  flakyAlone?.close();
  silent?.close();
  resetting.listener.stop(true);
  capture?.stop();
});

const callsOf = (f: Flaky, method: string) => f.calls.filter((c) => c.method === method);

describe("grpc retry policy", () => {
  it("sends a unary call answered UNAVAILABLE to the other endpoint", async () => {
    const before = flaky.calls.length;
    const c = client("greeter.test");
    for (let i = 0; i < 4; i++) {
      const { response, error } = await unary(c, "sayHello", { name: `n${i}` }, withId(`grpc-retry-${i}`));
      expect(error).toBeUndefined();
      expect(response.server).toBe("good");
    }
    const failed = flaky.calls.length - before;
    expect(failed).toBeGreaterThanOrEqual(1);
    expect(seriesTotal(await metrics(), "kedge_retries_total", 'backend_name="mixed",reason="503"')).toBe(failed);
    const lines = await Promise.all([0, 1, 2, 3].map((i) => capture.lineFor(`grpc-retry-${i}`)));
    const retried = lines.filter((l) => l.attempts !== undefined);
    expect(retried.length).toBe(failed);
    for (const l of retried) expect([l.attempts, l.retry_reasons, l.grpc_status]).toEqual([2, ["503"], 0]);
  });

  it("passes UNAVAILABLE on where the route has no policy", async () => {
    const before = flaky.calls.length;
    const c = client("no-policy.test");
    let unavailableCalls = 0;
    for (let i = 0; i < 4; i++) if ((await unary(c, "sayHello", { name: "x" })).error?.code === grpc.status.UNAVAILABLE) unavailableCalls++;
    expect(unavailableCalls).toBe(flaky.calls.length - before);
    expect(unavailableCalls).toBeGreaterThanOrEqual(1);
  });

  it("retries a server stream before its first message, never after", async () => {
    const c = client("alone.test") as any;
    const stream = (n: number) =>
      new Promise<{ messages: number; code?: number }>((resolve) => {
        let messages = 0;
        const s = c.countTo({ n });
        s.on("data", () => messages++);
        s.on("error", (e: grpc.ServiceError) => resolve({ messages, code: e.code }));
        s.on("end", () => resolve({ messages }));
      });
    expect(await stream(0)).toEqual({ messages: 0, code: grpc.status.UNAVAILABLE });
    expect(callsOf(flakyAlone, "countTo").length).toBe(2);
    expect(await stream(1)).toEqual({ messages: 1, code: grpc.status.UNAVAILABLE });
    expect(callsOf(flakyAlone, "countTo").length).toBe(3);
  });

  it("sends a client stream again with every message it held", async () => {
    const c = client("alone.test") as any;
    const code = await new Promise<number>((resolve) => {
      const s = c.sum((err: grpc.ServiceError | null) => resolve(err?.code ?? 0));
      for (const n of [1, 2, 3]) s.write({ n });
      s.end();
    });
    expect(code).toBe(grpc.status.UNAVAILABLE);
    expect(callsOf(flakyAlone, "sum").map((c) => c.total)).toEqual([6, 6]);
  });

  it("sends a call again when the backend resets its stream", async () => {
    const c = client("reset.test");
    for (let i = 0; i < 4; i++) expect((await unary(c, "sayHello", { name: "r" })).response?.server).toBe("good");
    const resets = resetting.connections.reduce((n, conn) => n + conn.streamIds.length, 0);
    expect(resets).toBeGreaterThanOrEqual(1);
    expect(seriesTotal(await metrics(), "kedge_retries_total", 'backend_name="resetting",reason="reset"')).toBe(resets);
  });

  it("gives up on a backend silent past per_try_timeout and takes the other's answer", async () => {
    const c = client("slow.test");
    const results = await Promise.all([0, 1, 2, 3].map(() => unary(c, "sayHello", { name: "s" })));
    expect(results.map((r) => r.response?.server)).toEqual(["good", "good", "good", "good"]);
    expect(silent.calls.length).toBeGreaterThanOrEqual(1);
    expect(seriesTotal(await metrics(), "kedge_retries_total", 'backend_name="slow",reason="timeout"')).toBe(silent.calls.length);
  });
});
