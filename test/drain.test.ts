import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import * as grpc from "@grpc/grpc-js";
import { mkdtempSync, writeFileSync } from "node:fs";
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureBinary, runBinary, waitFor, type Running } from "./helpers/binary.ts";
import { makeTestPki, type TestPki } from "./helpers/certs.ts";
import { GreeterClient, greeterService } from "./helpers/grpc.ts";

// SIGTERM drains every protocol: the compiled binary (kedge, and winch in front of it) stops
// accepting, sends GOAWAY, lets unary, server-, client- and bidi-streaming calls, HTTP/2 and
// HTTP/1.1 requests in flight finish, and exits as soon as they have; past graceful_shutdown
// what is left ends with UNAVAILABLE "… is shutting down".

const dir = mkdtempSync(join(tmpdir(), "kedge-drain-"));
let pki: TestPki;
let slowGrpc: grpc.Server;
let slowGrpcPort: number;
let slowHttp: http.Server;
let slowHttpPort: number;
/** How long the backends take to answer: set per test. */
let delayMs = 3000;

/** The Greeter, each answer `delayMs` late: a call is in flight for that long. */
async function startSlowGreeter(): Promise<void> {
  slowGrpc = new grpc.Server();
  const later = (f: () => void) => setTimeout(f, delayMs);
  slowGrpc.addService(greeterService, {
    sayHello: (call: grpc.ServerUnaryCall<{ name: string }, unknown>, cb: grpc.sendUnaryData<unknown>) => later(() => cb(null, { message: `Hello ${call.request.name}!` })),
    countTo: (call: grpc.ServerWritableStream<{ n: number }, unknown>) => {
      call.write({ i: 1 });
      later(() => {
        for (let i = 2; i <= call.request.n; i++) call.write({ i });
        call.end();
      });
    },
    sum: (call: grpc.ServerReadableStream<{ n: number }, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      let total = 0;
      call.on("data", (m: { n: number }) => (total += m.n));
      call.on("end", () => later(() => cb(null, { total })));
    },
    chat: (call: grpc.ServerDuplexStream<{ text: string }, unknown>) => {
      let pending = 0;
      let ended = false;
      call.on("data", (m: { text: string }) => {
        pending++;
        later(() => {
          call.write({ echo: m.text });
          if (--pending === 0 && ended) call.end();
        });
      });
      call.on("end", () => {
        ended = true;
        if (pending === 0) call.end();
      });
    },
    sleep: () => {},
    big: () => {},
  });
  slowGrpcPort = await new Promise<number>((resolve, reject) =>
    slowGrpc.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
}

beforeAll(async () => {
  ensureBinary();
  pki = makeTestPki();
  await startSlowGreeter();
  slowHttp = http.createServer((req, res) => setTimeout(() => res.writeHead(200, { "content-type": "text/plain" }).end(`slow ${req.url}`), delayMs));
  await new Promise<void>((resolve) => slowHttp.listen(0, "127.0.0.1", resolve));
  slowHttpPort = (slowHttp.address() as net.AddressInfo).port;
});

afterAll(() => {
  slowGrpc?.forceShutdown();
  slowHttp?.closeAllConnections();
  slowHttp?.close();
});

function startKedge(graceful: string): Running {
  const config = join(dir, `kedge-${graceful}.json`);
  writeFileSync(config, JSON.stringify({
    server: {
      bind_address: "127.0.0.1", h2c_port: 0, http_tls_port: 0, http_port: 0, log_level: "warn", graceful_shutdown: graceful,
      tls_cert_file: pki.serverCertFile, tls_key_file: pki.serverKeyFile,
    },
    http: { backends: [{ name: "web", static: { addresses: [`127.0.0.1:${slowHttpPort}`] } }], routes: [{ backend_name: "web" }] },
    grpc: { backends: [{ name: "greeter", static: { addresses: [`127.0.0.1:${slowGrpcPort}`] } }], routes: [{ backend_name: "greeter" }] },
  }));
  return runBinary(["--config", config], dir);
}

const portOf = (p: Running, name: string) => Number(new RegExp(`\\b${name}=(\\d+)`).exec(p.stdout())![1]);

function grpcClient(port: number, useTls: boolean): grpc.Client {
  return useTls
    ? new GreeterClient(`localhost:${port}`, grpc.credentials.createSsl(Buffer.from(pki.ca)))
    : new GreeterClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
}

type Outcome = { ok: unknown } | { code: number; details: string };
const ser = (v: unknown) => Buffer.from(JSON.stringify(v));
const de = (b: Buffer) => JSON.parse(b.toString());

/** The four call kinds, started now; each resolves with its result or its status. */
function startCalls(client: grpc.Client): Record<"unary" | "serverStream" | "clientStream" | "bidi", Promise<Outcome>> {
  const settle = (resolve: (o: Outcome) => void) => (err: grpc.ServiceError | null, res?: unknown) => resolve(err ? { code: err.code, details: err.details } : { ok: res });
  const unary = new Promise<Outcome>((resolve) => client.makeUnaryRequest("/e2e.helloworld.Greeter/SayHello", ser, de, { name: "drain" }, settle(resolve)));
  const serverStream = new Promise<Outcome>((resolve) => {
    const got: number[] = [];
    const call = client.makeServerStreamRequest("/e2e.helloworld.Greeter/CountTo", ser, de, { n: 3 });
    call.on("data", (m: { i: number }) => got.push(m.i));
    call.on("error", (e: grpc.ServiceError) => resolve({ code: e.code, details: e.details }));
    call.on("end", () => resolve({ ok: got }));
  });
  const clientStream = new Promise<Outcome>((resolve) => {
    const call = client.makeClientStreamRequest("/e2e.helloworld.Greeter/Sum", ser, de, settle(resolve));
    for (const n of [1, 2, 3]) call.write({ n });
    call.end();
  });
  const bidi = new Promise<Outcome>((resolve) => {
    const got: string[] = [];
    const call = client.makeBidiStreamRequest("/e2e.helloworld.Greeter/Chat", ser, de);
    call.on("data", (m: { echo: string }) => {
      got.push(m.echo);
      // The client still talks after SIGTERM: its stream was taken before the GOAWAY.
      if (got.length === 1) call.write({ text: "after" });
      else call.end();
    });
    call.on("error", (e: grpc.ServiceError) => resolve({ code: e.code, details: e.details }));
    call.on("end", () => resolve({ ok: got }));
    call.write({ text: "before" });
  });
  return { unary, serverStream, clientStream, bidi };
}

/** A GET over HTTP/2 (node:http2), resolving with status and body, or the error's message. */
function h2Get(port: number, useTls: boolean, path: string): Promise<{ status: number; body: string } | { error: string }> {
  const session = useTls ? http2.connect(`https://localhost:${port}`, { ca: pki.ca }) : http2.connect(`http://127.0.0.1:${port}`);
  return new Promise((resolve) => {
    session.on("error", (e) => resolve({ error: e.message }));
    const req = session.request({ ":path": path });
    let status = 0;
    let body = "";
    req.setEncoding("utf8");
    req.on("response", (h) => (status = Number(h[":status"])));
    req.on("data", (c: string) => (body += c));
    req.on("end", () => {
      session.close();
      resolve({ status, body });
    });
    req.on("error", (e) => {
      session.destroy();
      resolve({ error: e.message });
    });
    req.end();
  });
}

/** A GET over HTTP/1.1 keep-alive (node:http), with its Connection header. */
function h1Get(port: number, path: string): Promise<{ status: number; body: string; connection: string | undefined }> {
  const agent = new http.Agent({ keepAlive: true });
  return new Promise((resolve, reject) => {
    http.get({ host: "127.0.0.1", port, path, agent }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => {
        agent.destroy();
        resolve({ status: res.statusCode ?? 0, body, connection: res.headers.connection });
      });
    }).on("error", reject);
  });
}

function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    s.on("connect", () => {
      s.destroy();
      resolve(false);
    });
    s.on("error", () => resolve(true));
  });
}

describe("drain on SIGTERM", () => {
  for (const listener of ["h2c", "tls"] as const) {
    it(`lets every gRPC call kind and HTTP request in flight finish, refuses new connections, and exits 0 once they are done (${listener})`, async () => {
      delayMs = 3000;
      const k = startKedge("10s");
      try {
        await waitFor(() => /h2c=\d+/.test(k.stdout()), "kedge to listen", k);
        const port = portOf(k, listener);
        const useTls = listener === "tls";
        const grpcs = grpcClient(port, useTls);
        const calls = startCalls(grpcs);
        const h2 = h2Get(port, useTls, "/h2");
        const h1 = h1Get(portOf(k, "http"), "/h1");
        await Bun.sleep(500);
        const sigterm = performance.now();
        k.proc.kill("SIGTERM");
        await Bun.sleep(300);
        expect(await refused(port)).toBe(true);
        expect(await calls.unary).toEqual({ ok: { message: "Hello drain!" } });
        expect(await calls.serverStream).toEqual({ ok: [1, 2, 3] });
        expect(await calls.clientStream).toEqual({ ok: { total: 6 } });
        expect(await calls.bidi).toEqual({ ok: ["before", "after"] });
        expect(await h2).toEqual({ status: 200, body: "slow /h2" });
        expect(await h1).toEqual({ status: 200, body: "slow /h1", connection: "close" });
        const done = performance.now();
        expect(await k.proc.exited).toBe(0);
        const exited = performance.now();
        expect(exited - done).toBeLessThan(2000);
        expect(exited - sigterm).toBeLessThan(8000);
        grpcs.close();
      } finally {
        k.proc.kill("SIGKILL");
      }
    });
  }

  it("past graceful_shutdown ends what is left with UNAVAILABLE \"kedge is shutting down\" and exits", async () => {
    delayMs = 5000;
    const k = startKedge("1s");
    try {
      await waitFor(() => /h2c=\d+/.test(k.stdout()), "kedge to listen", k);
      const h2cCalls = startCalls(grpcClient(portOf(k, "h2c"), false));
      const tlsCalls = startCalls(grpcClient(portOf(k, "tls"), true));
      const h2 = h2Get(portOf(k, "h2c"), false, "/h2");
      await Bun.sleep(500);
      const sigterm = performance.now();
      k.proc.kill("SIGTERM");
      for (const calls of [h2cCalls, tlsCalls]) {
        for (const outcome of await Promise.all(Object.values(calls))) {
          expect(outcome).toEqual({ code: grpc.status.UNAVAILABLE, details: "kedge is shutting down" });
        }
      }
      expect(await h2).toMatchObject({ status: 503 });
      expect(await k.proc.exited).toBe(0);
      expect(performance.now() - sigterm).toBeLessThan(2500);
    } finally {
      k.proc.kill("SIGKILL");
    }
  });

  it("winch: lets unary, server-, client- and bidi-streaming calls and HTTP requests through its proxy finish, then exits 0", async () => {
    delayMs = 3000;
    const k = startKedge("10s");
    let w: Running | undefined;
    try {
      await waitFor(() => /tls=\d+/.test(k.stdout()), "kedge to listen", k);
      const config = join(dir, "winch.json");
      writeFileSync(config, JSON.stringify({
        server: { bind_address: "127.0.0.1", http_port: 0, grpc_port: 0, ca_files: [pki.caFile], log_level: "warn" },
        routes: [{ direct: { key: "slow.test", url: `https://localhost:${portOf(k, "tls")}` } }],
      }));
      w = runBinary(["winch", "--config", config], dir);
      await waitFor(() => /grpc=\d+/.test(w!.stdout()), "winch to listen", w);
      const grpcPort = portOf(w, "grpc");
      const client = new GreeterClient(`127.0.0.1:${grpcPort}`, grpc.credentials.createInsecure(), { "grpc.default_authority": "slow.test" });
      const calls = startCalls(client);
      const viaProxy = new Promise<{ status: number; body: string }>((resolve, reject) => {
        http.get({ host: "127.0.0.1", port: portOf(w!, "http"), path: "http://slow.test/winch" }, (res) => {
          let body = "";
          res.setEncoding("utf8");
          res.on("data", (c: string) => (body += c));
          res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
        }).on("error", reject);
      });
      await Bun.sleep(500);
      w.proc.kill("SIGTERM");
      await Bun.sleep(300);
      expect(await refused(grpcPort)).toBe(true);
      expect(await calls.unary).toEqual({ ok: { message: "Hello drain!" } });
      expect(await calls.serverStream).toEqual({ ok: [1, 2, 3] });
      expect(await calls.clientStream).toEqual({ ok: { total: 6 } });
      expect(await calls.bidi).toEqual({ ok: ["before", "after"] });
      expect(await viaProxy).toEqual({ status: 200, body: "slow /winch" });
      const done = performance.now();
      expect(await w.proc.exited).toBe(0);
      expect(performance.now() - done).toBeLessThan(2000);
      client.close();
    } finally {
      w?.proc.kill("SIGKILL");
      k.proc.kill("SIGKILL");
    }
  });
});
