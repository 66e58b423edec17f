import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import http2 from "node:http2";
import { plainServer, startTestKedge, type TestKedge } from "./helpers/kedge.ts";
import { data, frame, rawH2Server, status200 } from "./helpers/h2-wire.ts";
import { GreeterClient, startGreeter, unary, type GreeterServer } from "./helpers/grpc.ts";
import * as grpc from "@grpc/grpc-js";

// Backends that send what node:http2 would refuse to pass on, or break HTTP/2 outright: kedge
// answers its client with a gRPC status, never crashes, and keeps serving calls to healthy backends.

let kedge: TestKedge;
let healthy: GreeterServer;
const literal = (name: string, value: string) => Buffer.from([0x00, name.length, ...Buffer.from(name), value.length, ...Buffer.from(value)]);
const message = Buffer.from([0, 0, 0, 0, 2, 0x68, 0x69]);

const servers = {
  // Connection-specific fields are malformed in HTTP/2 (RFC 9113 §8.2.2); node:http2 throws if asked to send them.
  hopByHop: rawH2Server((f, conn) => {
    if (f.type !== 1) return;
    const head = Buffer.concat([Buffer.from([0x88]), literal("content-type", "application/grpc"), literal("connection", "close"), literal("te", "gzip"), literal("x-ok", "1")]);
    conn.send(frame(1, 0x4, f.id, head), data(f.id, 0, message), frame(1, 0x5, f.id, Buffer.concat([literal("grpc-status", "0"), literal("keep-alive", "5")])));
  }),
  // A header block kedge cannot decode: the connection is dead, the call gets UNAVAILABLE.
  badHpack: rawH2Server((f, conn) => {
    if (f.type === 1) conn.send(frame(1, 0x4, f.id, Buffer.from([0x80])));
  }),
  // Response headers without :status.
  noStatus: rawH2Server((f, conn) => {
    if (f.type === 1) conn.send(frame(1, 0x5, f.id, literal("grpc-status", "0")));
  }),
  // DATA before any response headers.
  dataFirst: rawH2Server((f, conn) => {
    if (f.type === 1) conn.send(data(f.id, 0x1, message));
  }),
  // Headers node:http2 refuses to send: content-type twice (ERR_HTTP2_HEADER_SINGLE_VALUE).
  twoTypes: rawH2Server((f, conn) => {
    if (f.type !== 1) return;
    const head = Buffer.concat([Buffer.from([0x88]), literal("content-type", "application/grpc"), literal("content-type", "text/plain")]);
    conn.send(frame(1, 0x4, f.id, head), data(f.id, 0, message), frame(1, 0x5, f.id, literal("grpc-status", "0")));
  }),
  // Trailers-only answer with a status: passed through as it is.
  trailersOnly: rawH2Server((f, conn) => {
    if (f.type === 1) conn.send(status200(f.id, 0x1, "9"));
  }),
};

beforeAll(async () => {
  healthy = await startGreeter("healthy");
  const names = Object.keys(servers) as Array<keyof typeof servers>;
  kedge = await startTestKedge({
    server: { ...plainServer, h2c_port: 0 },
    grpc: {
      backends: [
        ...names.map((n) => ({ name: n.toLowerCase(), static: { addresses: [`127.0.0.1:${servers[n].port}`] } })),
        { name: "healthy", static: { addresses: [`127.0.0.1:${healthy.port}`] } },
      ],
      routes: [...names.map((n) => ({ backend_name: n.toLowerCase(), authority_host_matcher: `${n.toLowerCase()}.test` })), { backend_name: "healthy" }],
    },
  });
});

afterAll(async () => {
  await kedge?.shutdown();
  healthy?.kill();
  for (const s of Object.values(servers)) s.listener.stop(true);
});

/** One raw gRPC call through kedge: response headers, body, trailers. */
function call(authority: string): Promise<{ headers: http2.IncomingHttpHeaders; body: Buffer; trailers: http2.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://127.0.0.1:${kedge.ports.h2c}`);
    session.on("error", reject);
    const req = session.request({ ":method": "POST", ":path": "/fault.Svc/Call", ":authority": authority, "content-type": "application/grpc", te: "trailers" });
    let headers: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    req.on("response", (h) => (headers = h));
    req.on("trailers", (t) => (trailers = t));
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("error", reject);
    req.on("end", () => {
      session.close();
      resolve({ headers, body: Buffer.concat(chunks), trailers });
    });
    req.end(message);
  });
}

const statusOf = (r: Awaited<ReturnType<typeof call>>) => r.trailers["grpc-status"] ?? r.headers["grpc-status"];

describe("gRPC backends that misbehave", () => {
  it("drops connection-specific fields a backend sends and passes the rest", async () => {
    const r = await call("hopbyhop.test");
    expect(r.headers["x-ok"]).toBe("1");
    expect(r.headers.connection).toBeUndefined();
    expect(r.headers.te).toBeUndefined();
    expect(r.headers["x-kedge-backend-name"]).toBe("hopbyhop");
    expect(r.body).toEqual(message);
    expect(r.trailers["grpc-status"]).toBe("0");
    expect(r.trailers["keep-alive"]).toBeUndefined();
  });

  it("answers UNAVAILABLE, with the reason, when the backend breaks HTTP/2", async () => {
    const cases: Array<[string, RegExp]> = [
      ["badhpack.test", /connection to backend lost: index 0/],
      ["nostatus.test", /response without a valid :status/],
      ["datafirst.test", /DATA before response headers/],
      ["twotypes.test", /sent headers kedge cannot forward/],
    ];
    for (const [authority, reason] of cases) {
      const r = await call(authority);
      expect([authority, statusOf(r)]).toEqual([authority, "14"]);
      expect(decodeURIComponent(String(r.trailers["grpc-message"] ?? r.headers["grpc-message"]))).toMatch(reason);
    }
  });

  it("passes a trailers-only status through", async () => {
    expect(statusOf(await call("trailersonly.test"))).toBe("9");
  });

  it("stays up for everyone else", async () => {
    const client = new GreeterClient(`127.0.0.1:${kedge.ports.h2c}`, grpc.credentials.createInsecure());
    try {
      expect((await unary(client, "sayHello", { name: "after" })).response?.server).toBe("healthy");
    } finally {
      client.close();
    }
  });
});
