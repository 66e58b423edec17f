import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import * as grpc from "@grpc/grpc-js";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import type { H2SessionStats } from "../src/upstream/h2-session.ts";
import { GreeterClient, startGreeter, unary, type GreeterServer } from "./helpers/grpc.ts";
import { plainServer, startTestKedge, type TestKedge } from "./helpers/kedge.ts";
import { until } from "./helpers/wait.ts";

// The upstream HTTP/2 session's life: GOAWAY from a server that ages its connections, and a
// backend that restarts. Both must be invisible to kedge's clients.

let aging: GreeterServer;
let restarting: GreeterServer;
let restartPort: number;
let kedge: TestKedge;
let client: grpc.Client;
// Answers every call on its second and later sessions; on its first it answers stream 1 and
// refuses stream 3 with GOAWAY(last-stream-id 1), as a server shutting down between two calls does.
let refuser: http2.Http2Server;
const refuserStreams: Array<{ session: number; id: number }> = [];

function sessionOf(backend: string): H2SessionStats {
  const view = kedge.runtime().grpcBackends.get(backend)!.view();
  return view[0].pool;
}


beforeAll(async () => {
  // grpc-js sends GOAWAY once a connection is 300 ms old and lets its streams finish for 5 s.
  aging = await startGreeter("aging", undefined, {
    serverOptions: { "grpc.max_connection_age_ms": 300, "grpc.max_connection_age_grace_ms": 5000 },
  });
  let sessions = 0;
  refuser = http2.createServer();
  refuser.on("session", (session) => {
    const n = ++sessions;
    session.on("stream", (stream, headers) => {
      refuserStreams.push({ session: n, id: stream.id! });
      stream.on("error", () => {});
      if (n === 1 && stream.id! > 1) return session.goaway(http2.constants.NGHTTP2_NO_ERROR, 1);
      stream.resume();
      stream.on("end", () => {
        const body = Buffer.from(JSON.stringify({ path: headers[":path"], session: n }));
        stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
        stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
        stream.end(Buffer.concat([Buffer.from([0, 0, 0, 0, body.length]), body]));
      });
    });
  });
  await new Promise<void>((r) => refuser.listen(0, "127.0.0.1", r));
  restarting = await startGreeter("before");
  restartPort = restarting.port;
  kedge = await startTestKedge({
    server: { ...plainServer, h2c_port: 0 },
    grpc: {
      backends: [
        { name: "aging", static: { addresses: [`127.0.0.1:${aging.port}`] } },
        { name: "restarting", static: { addresses: [`127.0.0.1:${restartPort}`] } },
        { name: "refuser", static: { addresses: [`127.0.0.1:${(refuser.address() as AddressInfo).port}`] } },
      ],
      routes: [
        { backend_name: "aging", authority_host_matcher: "aging.test" },
        { backend_name: "restarting", authority_host_matcher: "restarting.test" },
        { backend_name: "refuser", authority_host_matcher: "refuser.test" },
      ],
    },
  });
  client = new GreeterClient(`127.0.0.1:${kedge.ports.h2c}`, grpc.credentials.createInsecure());
});

afterAll(async () => {
  client?.close();
  await kedge?.shutdown();
  aging?.kill();
  restarting?.kill();
  refuser?.close();
});

describe("upstream HTTP/2 sessions", () => {
  it("drains onto a new session on GOAWAY: a long call on the old one and every new call succeed", async () => {
    const authority = { "grpc.default_authority": "aging.test" };
    const agingClient = new GreeterClient(`127.0.0.1:${kedge.ports.h2c}`, grpc.credentials.createInsecure(), authority);
    try {
      const long = unary(agingClient, "sleep", { ms: 1500 });
      const results: Array<Awaited<ReturnType<typeof unary>>> = [];
      const stop = Date.now() + 1500;
      while (Date.now() < stop) {
        results.push(...(await Promise.all(Array.from({ length: 5 }, () => unary(agingClient, "sayHello", { name: "x" })))));
        await Bun.sleep(25);
      }
      const slept = await long;
      expect(slept.error).toBeUndefined();
      expect(slept.response).toEqual({ slept: 1500 });
      expect(results.length).toBeGreaterThan(50);
      expect(results.filter((r) => r.error).map((r) => r.error!.message)).toEqual([]);
      // Several GOAWAYs came and went: kedge opened a new session for each.
      expect(sessionOf("aging").sessionsOpened).toBeGreaterThanOrEqual(3);
    } finally {
      agingClient.close();
    }
  });

  it("replays a call the backend refused unprocessed (above GOAWAY's last-stream-id) on a fresh session", async () => {
    const refuserClient = new GreeterClient(`127.0.0.1:${kedge.ports.h2c}`, grpc.credentials.createInsecure(), {
      "grpc.default_authority": "refuser.test",
    });
    try {
      const [first, second] = await Promise.all([unary(refuserClient, "sayHello", { name: "1" }), unary(refuserClient, "sayHello", { name: "2" })]);
      expect(first.error).toBeUndefined();
      expect(second.error).toBeUndefined();
      const answered = [first.response, second.response].sort((a, b) => a.session - b.session);
      expect(answered.map((r) => r.session)).toEqual([1, 2]);
      // The refused stream reached the server once, on the first session, and was answered on the second.
      expect(refuserStreams.filter((s) => s.session === 1)).toHaveLength(2);
    } finally {
      refuserClient.close();
    }
  });

  it("re-dials a restarted backend in the background, before any call asks for it", async () => {
    const restartingClient = new GreeterClient(`127.0.0.1:${kedge.ports.h2c}`, grpc.credentials.createInsecure(), {
      "grpc.default_authority": "restarting.test",
    });
    try {
      expect((await unary(restartingClient, "sayHello", { name: "a" })).response.server).toBe("before");
      const opened = sessionOf("restarting").sessionsOpened;
      restarting.kill();
      await until("the session to drop", () => !sessionOf("restarting").connected);
      // Down for a few reconnect attempts, then back on the same port.
      await Bun.sleep(400);
      restarting = await startGreeter("after", undefined, { port: restartPort });
      await until("a background reconnect", () => sessionOf("restarting").connected);
      expect(sessionOf("restarting").sessionsOpened).toBe(opened + 1);
      expect((await unary(restartingClient, "sayHello", { name: "b" })).response.server).toBe("after");
    } finally {
      restartingClient.close();
    }
  });
});
