import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import * as grpc from "@grpc/grpc-js";
import type { H2SessionStats } from "../src/upstream/h2-session.ts";
import { GreeterClient, startGreeter, unary, type GreeterServer } from "./helpers/grpc.ts";
import { plainServer, startTestKedge, type TestKedge } from "./helpers/kedge.ts";

// The upstream HTTP/2 session's life: GOAWAY from a server that ages its connections, and a
// backend that restarts. Both must be invisible to kedge's clients.

let aging: GreeterServer;
let restarting: GreeterServer;
let restartPort: number;
let kedge: TestKedge;
let client: grpc.Client;

function sessionOf(backend: string): H2SessionStats {
  const view = kedge.runtime().grpcBackends.get(backend)!.view();
  return view[0].pool;
}

async function until(what: string, check: () => boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(20);
  }
}

beforeAll(async () => {
  // grpc-js sends GOAWAY once a connection is 300 ms old and lets its streams finish for 5 s.
  aging = await startGreeter("aging", undefined, {
    serverOptions: { "grpc.max_connection_age_ms": 300, "grpc.max_connection_age_grace_ms": 5000 },
  });
  restarting = await startGreeter("before");
  restartPort = restarting.port;
  kedge = await startTestKedge({
    server: { ...plainServer, h2c_port: 0 },
    grpc: {
      backends: [
        { name: "aging", static: { addresses: [`127.0.0.1:${aging.port}`] } },
        { name: "restarting", static: { addresses: [`127.0.0.1:${restartPort}`] } },
      ],
      routes: [
        { backend_name: "aging", authority_host_matcher: "aging.test" },
        { backend_name: "restarting", authority_host_matcher: "restarting.test" },
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
