import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import * as grpc from "@grpc/grpc-js";
import { mkdtempSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GreeterClient, greeterService, startGreeter, unary, type GreeterServer } from "./helpers/grpc.ts";
import { plainServer, startTestKedge, type TestKedge } from "./helpers/kedge.ts";
import { seriesTotal } from "./helpers/prometheus.ts";
import { rawHttp } from "./helpers/raw-http.ts";
import { startUpstream, type Upstream } from "./helpers/upstream.ts";
import { until } from "./helpers/wait.ts";

// Every finished HTTP request, CONNECT tunnel and gRPC call is counted exactly once, on its
// success and on each error path: the requests counter and the latency histogram move by one,
// the in-flight gauge and every endpoint's outstanding count come back to zero.

const token = "record-once-token-0123456789";
const auth = `bearer ${token}`;
let up: Upstream;
let greeter: GreeterServer;
let kedge: TestKedge;
let client: grpc.Client;

beforeAll(async () => {
  const tokenFile = join(mkdtempSync(join(tmpdir(), "kedge-record-")), "token");
  writeFileSync(tokenFile, `${token}\n`);
  up = await startUpstream("up");
  greeter = await startGreeter("greeter");
  const upAt = `127.0.0.1:${up.port}`;
  kedge = await startTestKedge({
    server: { ...plainServer, h2c_port: 0 },
    auth: { bearer_token_file: tokenFile },
    http: {
      backends: [
        { name: "up", static: { addresses: [upAt] } },
        { name: "single", static: { addresses: [upAt] }, max_connections_per_endpoint: 1 },
        { name: "dead", static: { addresses: ["127.0.0.1:1"] } },
      ],
      routes: [
        { backend_name: "up", host_matcher: "up.test" },
        { backend_name: "single", host_matcher: "single.test" },
        { backend_name: "dead", host_matcher: "dead.test" },
      ],
    },
    grpc: {
      backends: [
        { name: "greeter", static: { addresses: [`127.0.0.1:${greeter.port}`] } },
        { name: "dead_grpc", static: { addresses: ["127.0.0.1:1"] } },
      ],
      routes: [
        { backend_name: "greeter", service_name_matcher: "e2e.helloworld.Greeter", authority_host_matcher: "greeter.test" },
        { backend_name: "dead_grpc", service_name_matcher: "e2e.helloworld.Greeter", authority_host_matcher: "dead.test" },
      ],
    },
  });
  const h2c = `127.0.0.1:${kedge.ports.h2c}`;
  client = new GreeterClient(h2c, grpc.credentials.createInsecure(), { "grpc.default_authority": "greeter.test" });
});

afterAll(async () => {
  client.close();
  await kedge.shutdown();
  await up.close();
  await greeter.close();
});

/** The sum of a metric's series on /metrics, optionally only those whose labels contain `having`. */
async function total(name: string, having = ""): Promise<number> {
  return seriesTotal(await (await fetch(`http://127.0.0.1:${kedge.ports.admin}/metrics`)).text(), name, having);
}

function outstanding(): number {
  const runtime = kedge.runtime();
  let sum = 0;
  for (const backends of [runtime.httpBackends, runtime.grpcBackends]) for (const b of backends.values()) for (const e of b.view()) sum += e.outstanding;
  return sum;
}

type Family = "http" | "grpc";

/** Runs `act`, waits for it to be over in kedge, then checks it was counted once (each of `times` requests). */
async function countedOnce(family: Family, act: () => Promise<unknown>, times = 1): Promise<void> {
  const counter = `kedge_${family}_requests_total`;
  const histogram = `kedge_${family}_request_duration_seconds_count`;
  const before = [await total(counter), await total(histogram)];
  await act();
  await until(`${family} requests no longer in flight`, async () => (await total("kedge_active_streams", `protocol="${family}"`)) === 0 && outstanding() === 0);
  await Bun.sleep(50); // a second count, if there were one, would come on the way out
  expect([(await total(counter)) - before[0], (await total(histogram)) - before[1]]).toEqual([times, times]);
  expect(await total("kedge_active_streams", `protocol="${family}"`)).toBe(0);
  expect(outstanding()).toBe(0);
}

const request = (host: string, path = "/", authorization: string | undefined = auth) =>
  rawHttp(kedge.ports.http, `GET ${path} HTTP/1.1\r\nhost: ${host}\r\n${authorization ? `proxy-authorization: ${authorization}\r\n` : ""}connection: close\r\n\r\n`);

/** Sends a request and closes the connection once `sent` says the backend has it (or after a moment). */
function abandon(host: string, path: string, sent?: () => boolean): Promise<void> {
  return new Promise((resolve) => {
    const socket = net.connect(kedge.ports.http, "127.0.0.1", () => {
      socket.write(`GET ${path} HTTP/1.1\r\nhost: ${host}\r\nproxy-authorization: ${auth}\r\n\r\n`);
      const started = performance.now();
      const check = setInterval(() => {
        if ((sent ? sent() : performance.now() - started > 300) || performance.now() - started > 3000) {
          clearInterval(check);
          socket.destroy();
          resolve();
        }
      }, 50);
    });
    socket.on("error", () => {});
  });
}

describe("HTTP requests are counted once", () => {
  it("answered by the backend", () => countedOnce("http", async () => expect((await request("up.test")).status).toBe(200)));
  it("with no route", () => countedOnce("http", async () => expect((await request("nowhere.test")).status).toBe(502)));
  it("refused by authentication", () => countedOnce("http", async () => expect((await request("up.test", "/", "bearer nope")).status).toBe(401)));
  it("to a backend that cannot be reached", () => countedOnce("http", async () => expect((await request("dead.test")).status).toBe(502)));
  it("abandoned by the client mid-response", () => countedOnce("http", () => abandon("up.test", "/slow-chunks?n=20&ms=100", () => up.seen.some((r) => r.url.startsWith("/slow-chunks")))));

  it("abandoned by the client while it waited for the endpoint's only connection", async () => {
    const slow = "/slow-chunks?n=10&ms=100";
    const seen = () => up.seen.filter((r) => r.url === slow).length;
    const before = seen();
    await countedOnce(
      "http",
      async () => {
        // The first request holds the one connection for a second; the second waits in the pool's queue and is abandoned there.
        const first = request("single.test", slow);
        await until("the first request reached the backend", () => seen() > before);
        await abandon("single.test", "/queued");
        expect((await first).status).toBe(200);
      },
      2,
    );
  });
});

/** A CONNECT and what came back; the tunnel is closed at once. */
function connect(target: string, authorization: string | undefined = auth, closeEarly = false): Promise<string> {
  return new Promise((resolve) => {
    let answer = "";
    const socket = net.connect(kedge.ports.http, "127.0.0.1", () => {
      socket.write(`CONNECT ${target} HTTP/1.1\r\nhost: ${target}\r\n${authorization ? `proxy-authorization: ${authorization}\r\n` : ""}\r\n`);
      if (closeEarly) socket.destroy();
    });
    socket.on("data", (chunk) => {
      answer += chunk.toString("latin1");
      if (answer.includes("\r\n\r\n")) socket.destroy();
    });
    socket.on("error", () => {});
    socket.on("close", () => resolve(answer.split("\r\n")[0]));
  });
}

describe("CONNECT tunnels are counted once", () => {
  it("opened to the backend", () => countedOnce("http", async () => expect(await connect(`up.test:${up.port}`)).toContain(" 200 ")));
  it("with no route", () => countedOnce("http", async () => expect(await connect("nowhere.test:443")).toContain(" 502 ")));
  it("refused by authentication", () => countedOnce("http", async () => expect(await connect(`up.test:${up.port}`, "bearer nope")).toContain(" 401 ")));
  it("to a backend that cannot be reached", () => countedOnce("http", async () => expect(await connect("dead.test:80")).toContain(" 502 ")));
  it("abandoned by the client before it opened", () => countedOnce("http", () => connect(`up.test:${up.port}`, auth, true)));
});

const withAuth = () => {
  const md = new grpc.Metadata();
  md.set("proxy-authorization", auth);
  return md;
};

const wrongToken = () => {
  const md = new grpc.Metadata();
  md.set("proxy-authorization", "bearer nope");
  return md;
};

/** The grpc-status of a SayHello to `authority` through kedge. */
async function statusAt(authority: string): Promise<number | undefined> {
  const at = new GreeterClient(`127.0.0.1:${kedge.ports.h2c}`, grpc.credentials.createInsecure(), { "grpc.default_authority": authority });
  const { error } = await unary(at, "sayHello", { name: "x" }, withAuth());
  at.close();
  return error?.code;
}

describe("gRPC calls are counted once", () => {
  it("answered by the backend", () => countedOnce("grpc", async () => expect((await unary(client, "sayHello", { name: "x" }, withAuth())).error).toBeUndefined()));

  it("with no route", () => countedOnce("grpc", async () => expect(await statusAt("nowhere.test")).toBe(grpc.status.UNIMPLEMENTED)));
  it("refused by authentication", () => countedOnce("grpc", async () => expect((await unary(client, "sayHello", { name: "x" }, wrongToken())).error?.code).toBe(grpc.status.UNAUTHENTICATED)));
  it("to a backend that cannot be reached", () => countedOnce("grpc", async () => expect(await statusAt("dead.test")).toBe(grpc.status.UNAVAILABLE)));

  it("cancelled by the client", () =>
    countedOnce("grpc", async () => {
      const cancelledBefore = greeter.cancelled;
      const call = client.makeUnaryRequest(greeterService.sleep.path, greeterService.sleep.requestSerialize, greeterService.sleep.responseDeserialize, { ms: 10_000 }, withAuth(), () => {});
      await Bun.sleep(300);
      call.cancel();
      await until("the backend saw the cancel", () => greeter.cancelled > cancelledBefore);
    }));

  it("past its deadline", () =>
    countedOnce("grpc", async () => {
      const { error } = await new Promise<{ error?: grpc.ServiceError }>((resolve) =>
        client.makeUnaryRequest(greeterService.sleep.path, greeterService.sleep.requestSerialize, greeterService.sleep.responseDeserialize, { ms: 5_000 }, withAuth(), { deadline: Date.now() + 300 }, (error) => resolve({ error: error ?? undefined })),
      );
      expect(error?.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    }));
});
