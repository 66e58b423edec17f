import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import * as grpc from "@grpc/grpc-js";
import http2 from "node:http2";
import { makeTestPki, type TestPki } from "./helpers/certs.ts";
import { GreeterClient, startGreeter, unary, type GreeterServer } from "./helpers/grpc.ts";
import { plainServer, startTestKedge, type TestKedge } from "./helpers/kedge.ts";

let pki: TestPki;
let greeters: GreeterServer[];
let kedge: TestKedge;
let client: grpc.Client;
let doomed: GreeterServer;
let secure: GreeterServer;
// A backend that ignores grpc-timeout and never answers (grpc-js servers enforce deadlines
// themselves, which would hide whether kedge does); counts the streams cancelled on it.
let blackhole: http2.Http2Server;
let blackholeCancelled = 0;
/** Bytes the firehose backend wrote before HTTP/2 flow control stopped it (-1 until it stops). */
let firehoseWritten = -1;

beforeAll(async () => {
  pki = makeTestPki();
  greeters = await Promise.all(["g1", "g2", "g3"].map((n) => startGreeter(n)));
  doomed = await startGreeter("doomed");
  secure = await startGreeter("secure", { ca: pki.ca, cert: pki.serverCert, key: pki.serverKey });
  blackhole = http2.createServer();
  blackhole.on("stream", (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => {
    stream.on("error", () => {});
    if (headers[":path"] === "/firehose.Stream/Flood") {
      // Streams gRPC messages as fast as flow control allows: stops when write() says the peer is full.
      stream.respond({ ":status": 200, "content-type": "application/grpc" });
      const message = Buffer.concat([Buffer.from([0, 0, 1, 0, 0]), Buffer.alloc(65536, 120)]);
      let written = 0;
      const pump = () => {
        while (written < 512 * 1024 * 1024) {
          written += message.length;
          if (!stream.write(message)) {
            firehoseWritten = written;
            return;
          }
        }
      };
      pump();
      return;
    }
    stream.on("close", () => blackholeCancelled++);
    stream.resume();
  });
  await new Promise<void>((r) => blackhole.listen(0, "127.0.0.1", r));
  kedge = await startTestKedge({
    server: { ...plainServer, http_tls_port: 0, grpc_tls_port: 0, h2c_port: 0, tls_cert_file: pki.serverCertFile, tls_key_file: pki.serverKeyFile },
    grpc: {
      backends: [
        { name: "greeters", static: { addresses: greeters.map((g) => `127.0.0.1:${g.port}`) } },
        { name: "one", static: { addresses: [`127.0.0.1:${greeters[0].port}`] } },
        { name: "down", static: { addresses: ["127.0.0.1:1"] } },
        { name: "half_down", static: { addresses: ["127.0.0.1:1", `127.0.0.1:${greeters[2].port}`] } },
        {
          name: "secure",
          static: { addresses: [`127.0.0.1:${secure.port}`] },
          security: { ca_files: [pki.caFile], server_name: "localhost", client_cert_file: pki.clientCertFile, client_key_file: pki.clientKeyFile },
        },
        { name: "doomed", static: { addresses: [`127.0.0.1:${doomed.port}`] } },
        { name: "blackhole", static: { addresses: [`127.0.0.1:${(blackhole.address() as import("node:net").AddressInfo).port}`] } },
      ],
      adhoc_rules: [
        { dns_name_matcher: "*.adhoc.test", dns_name_replace: { pattern: "^.*$", substitution: "127.0.0.1" }, port: { allowed: [greeters[1].port] } },
      ],
      routes: [
        { backend_name: "down", authority_host_matcher: "down.test" },
        { backend_name: "half_down", authority_host_matcher: "half-down.test" },
        { backend_name: "doomed", authority_host_matcher: "doomed.test" },
        { backend_name: "secure", authority_host_matcher: "secure.test" },
        { backend_name: "blackhole", authority_host_matcher: "blackhole.test" },
        { backend_name: "one", authority_host_matcher: "port.test", authority_port_matcher: 9999 },
        { backend_name: "one", service_name_matcher: "e2e.helloworld.Greeter/Sum" },
        { backend_name: "one", metadata_matcher: { "x-pin": "one" } },
        { backend_name: "greeters", service_name_matcher: "e2e.helloworld.Greeter", authority_host_matcher: "localhost" },
      ],
    },
  });
  client = new GreeterClient(`localhost:${kedge.ports.tls}`, grpc.credentials.createSsl(Buffer.from(pki.ca)), {
    "grpc.max_receive_message_length": -1,
    "grpc.max_send_message_length": -1,
  });
});

afterAll(async () => {
  client.close();
  await kedge.shutdown();
  await Promise.all([...greeters, secure].map((g) => g.close()));
  blackhole.close();
});

/** A SayHello with another :authority, over TLS verified for localhost. */
async function callWithAuthority(authority: string, method = "sayHello", request: unknown = { name: "x" }) {
  const other = new GreeterClient(`127.0.0.1:${kedge.ports.tls}`, grpc.credentials.createSsl(Buffer.from(pki.ca)), {
    "grpc.ssl_target_name_override": "localhost",
    "grpc.default_authority": authority,
  });
  const r = await unary(other, method, request);
  other.close();
  return r;
}

describe("grpc proxying", () => {
  it("proxies a unary call over TLS and names the backend in the response headers", async () => {
    const r = await unary(client, "sayHello", { name: "kedge" });
    expect(r.error).toBeUndefined();
    expect(r.response.message).toBe("Hello kedge!");
    expect(r.headers?.get("x-kedge-backend-name")).toEqual(["greeters"]);
  });

  it("serves gRPC on kedge Go's dedicated gRPC TLS port and on the h2c port", async () => {
    const viaGrpcPort = new GreeterClient(`localhost:${kedge.ports.grpc_tls}`, grpc.credentials.createSsl(Buffer.from(pki.ca)));
    const viaH2c = new GreeterClient(`localhost:${kedge.ports.h2c}`, grpc.credentials.createInsecure());
    const [a, b] = await Promise.all([unary(viaGrpcPort, "sayHello", { name: "tls" }), unary(viaH2c, "sayHello", { name: "h2c" })]);
    viaGrpcPort.close();
    viaH2c.close();
    expect(a.response?.message).toBe("Hello tls!");
    expect(b.response?.message).toBe("Hello h2c!");
  });

  it("balances calls round robin across endpoints", async () => {
    const servers: string[] = [];
    for (let i = 0; i < 9; i++) servers.push((await unary(client, "sayHello", { name: "rr" })).response.server);
    expect(servers.filter((s) => s === "g1").length).toBe(3);
    expect(new Set(servers)).toEqual(new Set(["g1", "g2", "g3"]));
  });

  it("passes an application error with its trailers through, binary ones included", async () => {
    const r = await unary(client, "sayHello", { name: "fail" });
    expect(r.error?.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(r.error?.details).toBe("greeting refused");
    expect(r.error?.metadata.get("x-detail")).toEqual(["because"]);
    expect(r.error?.metadata.get("x-detail-bin")).toEqual([Buffer.from([1, 2, 3])]);
  });

  it("streams server → client", async () => {
    const call = (client as any).countTo({ n: 50 });
    const seen: number[] = [];
    await new Promise<void>((resolve, reject) => {
      call.on("data", (m: { i: number }) => seen.push(m.i));
      call.on("end", resolve);
      call.on("error", reject);
    });
    expect(seen).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
  });

  it("streams client → server and routes by exact method", async () => {
    const result = await new Promise<any>((resolve, reject) => {
      const call = (client as any).sum((err: Error | null, res: unknown) => (err ? reject(err) : resolve(res)));
      for (let i = 1; i <= 100; i++) call.write({ n: i });
      call.end();
    });
    expect(result).toEqual({ total: 5050, server: "g1" });
  });

  it("streams both ways", async () => {
    const call = (client as any).chat();
    const echoes: string[] = [];
    const done = new Promise<void>((resolve, reject) => {
      call.on("data", (m: { echo: string }) => {
        echoes.push(m.echo);
        if (echoes.length < 20) call.write({ text: `m${echoes.length}` });
        else call.end();
      });
      call.on("end", resolve);
      call.on("error", reject);
    });
    call.write({ text: "m0" });
    await done;
    expect(echoes).toEqual(Array.from({ length: 20 }, (_, i) => `m${i}`));
  });

  it("routes by metadata", async () => {
    const md = new grpc.Metadata();
    md.set("x-pin", "one");
    for (let i = 0; i < 3; i++) expect((await unary(client, "sayHello", { name: "pinned" }, md)).response.server).toBe("g1");
  });

  it("speaks TLS to a gRPC backend with a CA, SNI and a client certificate", async () => {
    expect((await callWithAuthority("secure.test")).response?.server).toBe("secure");
  });

  it("fails over to another endpoint when one cannot be reached", async () => {
    for (let i = 0; i < 4; i++) expect((await callWithAuthority("half-down.test")).response?.server).toBe("g3");
  });

  it("routes by :authority port", async () => {
    expect((await callWithAuthority("port.test:9999")).response?.server).toBe("g1");
    expect((await callWithAuthority("port.test:9998")).error?.code).toBe(grpc.status.UNIMPLEMENTED);
  });

  it("proxies adhoc to the host named in :authority when the rule allows its port", async () => {
    const ok = await callWithAuthority(`svc.adhoc.test:${greeters[1].port}`);
    expect(ok.response?.server).toBe("g2");
    const refused = await callWithAuthority(`svc.adhoc.test:${greeters[0].port}`);
    expect(refused.error?.code).toBe(grpc.status.PERMISSION_DENIED);
  });

  it("answers UNIMPLEMENTED for a call no route matches", async () => {
    const r = await callWithAuthority("nowhere.test");
    expect(r.error?.code).toBe(grpc.status.UNIMPLEMENTED);
    expect(r.error?.details).toBe("unknown route to service");
  });

  it("answers UNAVAILABLE, not a hang, when the backend is down", async () => {
    const r = await callWithAuthority("down.test");
    expect(r.error?.code).toBe(grpc.status.UNAVAILABLE); // a hang would end in DEADLINE_EXCEEDED
    expect(r.error?.details).toContain("down");
  });

  it("enforces grpc-timeout itself: DEADLINE_EXCEEDED to a client that does not, and the backend call is cancelled", async () => {
    const session = http2.connect(`https://localhost:${kedge.ports.tls}`, { ca: pki.ca });
    const body = Buffer.from(JSON.stringify({ ms: 30_000 }));
    const frame = Buffer.concat([Buffer.from([0, 0, 0, 0, body.length]), body]);
    const req = session.request({
      ":method": "POST", ":path": "/e2e.helloworld.Greeter/Sleep", ":authority": "blackhole.test",
      "content-type": "application/grpc", te: "trailers", "grpc-timeout": "200m",
    });
    req.end(frame);
    const status = await new Promise<string>((resolve) => {
      req.on("response", (h) => h["grpc-status"] && resolve(String(h["grpc-status"])));
      req.on("trailers", (t) => resolve(String(t["grpc-status"])));
      req.resume();
    });
    session.close();
    expect(status).toBe(String(grpc.status.DEADLINE_EXCEEDED));
    for (let i = 0; i < 100 && blackholeCancelled === 0; i++) await Bun.sleep(20);
    expect(blackholeCancelled).toBe(1);
  });

  it("respects flow control: a client that does not read stops the backend instead of kedge buffering", async () => {
    const session = http2.connect(`https://localhost:${kedge.ports.tls}`, { ca: pki.ca });
    const req = session.request({ ":method": "POST", ":path": "/firehose.Stream/Flood", ":authority": "blackhole.test", "content-type": "application/grpc", te: "trailers" });
    req.end(Buffer.from([0, 0, 0, 0, 0]));
    req.pause(); // never read
    for (let i = 0; i < 250 && firehoseWritten < 0; i++) await Bun.sleep(20);
    req.close();
    session.close();
    expect(firehoseWritten).toBeGreaterThan(0);
    // Windows and socket buffers along the way hold a few MB; unbounded buffering would reach 512 MB.
    expect(firehoseWritten).toBeLessThan(32 * 1024 * 1024);
  });

  it("propagates a client's cancellation to the backend", async () => {
    const before = greeters.reduce((n, g) => n + g.cancelled, 0);
    const call = (client as any).sleep({ ms: 30_000 }, () => {});
    await Bun.sleep(200);
    call.cancel();
    for (let i = 0; i < 100 && greeters.reduce((n, g) => n + g.cancelled, 0) === before; i++) await Bun.sleep(20);
    expect(greeters.reduce((n, g) => n + g.cancelled, 0)).toBe(before + 1);
  });

  it("carries a 16 MB message each way", async () => {
    const payload = "k".repeat(16 * 1024 * 1024);
    const r = await unary(client, "big", { payload });
    expect(r.error).toBeUndefined();
    expect(r.response.length).toBe(payload.length);
    expect(r.response.payload === payload).toBe(true);
  });

  it("handles 1,000 concurrent calls", async () => {
    const results = await Promise.all(Array.from({ length: 1000 }, (_, i) => unary(client, "sayHello", { name: `n${i}` })));
    expect(results.filter((r) => r.error).map((r) => r.error!.message)).toEqual([]);
    expect(results[999].response.message).toBe("Hello n999!");
  });

  it("ends a call with UNAVAILABLE when the backend dies mid-stream", async () => {
    const other = new GreeterClient(`127.0.0.1:${kedge.ports.tls}`, grpc.credentials.createSsl(Buffer.from(pki.ca)), {
      "grpc.ssl_target_name_override": "localhost",
      "grpc.default_authority": "doomed.test",
    });
    const call = (other as any).chat();
    const code = await new Promise<number>((resolve) => {
      call.on("data", () => doomed.kill());
      call.on("error", (e: grpc.ServiceError) => resolve(e.code));
      call.on("end", () => resolve(-1));
      call.write({ text: "hello" });
    });
    other.close();
    expect([grpc.status.UNAVAILABLE, grpc.status.INTERNAL]).toContain(code);
  });

  it("counts calls by backend, method and grpc-status in /metrics", async () => {
    const metrics = await (await fetch(`http://127.0.0.1:${kedge.ports.admin}/metrics`)).text();
    expect(metrics).toMatch(/kedge_grpc_requests_total\{backend_name="greeters",grpc_method="\/e2e\.helloworld\.Greeter\/SayHello",grpc_code="0",route="\d+"\} \d+/);
    expect(metrics).toMatch(/kedge_grpc_requests_total\{backend_name="greeters",grpc_method="\/e2e\.helloworld\.Greeter\/SayHello",grpc_code="9",route="\d+"\} 1\n/);
    expect(metrics).toMatch(/kedge_grpc_requests_total\{backend_name="none",grpc_method="unrouted",grpc_code="12",route="none"\} \d+/);
    expect(metrics).toMatch(/kedge_grpc_requests_total\{backend_name="blackhole",grpc_method="\/e2e\.helloworld\.Greeter\/Sleep",grpc_code="4",route="\d+"\} 1\n/);
  });
});
