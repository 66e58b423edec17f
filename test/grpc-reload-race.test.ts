import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import * as grpc from "@grpc/grpc-js";
import { GreeterClient, startGreeter, unary, type GreeterServer } from "./helpers/grpc.ts";
import { useSilentDns } from "./helpers/dns-server.ts";
import { plainServer, startTestKedge, type TestKedge } from "./helpers/kedge.ts";

// A call routed to a backend that a reload replaces before the call is sent (here: while it waits
// for the backend's first DNS answer, which never comes) goes to the backend that replaced it,
// instead of failing with "no endpoints" on the retired one.

let silentDns: { close: () => void };
let greeter: GreeterServer;
let kedge: TestKedge;

beforeAll(async () => {
  silentDns = await useSilentDns();
  greeter = await startGreeter("successor");
  kedge = await startTestKedge({
    server: { ...plainServer, h2c_port: 0 },
    grpc: {
      backends: [{ name: "svc", srv: { dns_name: "_grpc._tcp.svc.test" } }],
      routes: [{ backend_name: "svc" }],
    },
  });
});

afterAll(async () => {
  await kedge?.shutdown();
  greeter?.kill();
  silentDns?.close();
});

describe("a gRPC call caught by a reload", () => {
  it("is sent to the backend that replaced the one it was routed to", async () => {
    const client = new GreeterClient(`127.0.0.1:${kedge.ports.h2c}`, grpc.credentials.createInsecure());
    try {
      const call = unary(client, "sayHello", { name: "caught" });
      await Bun.sleep(300); // the call now waits for svc's first resolution
      kedge.writeConfig({
        server: { ...plainServer, h2c_port: 0 },
        grpc: {
          backends: [{ name: "svc", static: { addresses: [`127.0.0.1:${greeter.port}`] } }],
          routes: [{ backend_name: "svc" }],
        },
      });
      await kedge.reload();
      const r = await call;
      expect(r.error?.message).toBeUndefined();
      expect(r.response?.server).toBe("successor");
    } finally {
      client.close();
    }
  });
});
