import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { useSilentDns } from "./helpers/dns-server.ts";
import { plainServer, startTestKedge, type TestKedge } from "./helpers/kedge.ts";
import { startUpstream, type Upstream } from "./helpers/upstream.ts";

// The HTTP twin of test/grpc-reload-race.test.ts: a request routed to a backend that a reload
// replaces while the request waits for the backend's first DNS answer (which never comes) is sent
// to the backend that replaced it.

let silentDns: { close: () => void };
let upstream: Upstream;
let kedge: TestKedge;

beforeAll(async () => {
  silentDns = await useSilentDns();
  upstream = await startUpstream("successor");
  kedge = await startTestKedge({
    server: plainServer,
    http: { backends: [{ name: "web", srv: { dns_name: "_http._tcp.web.test" } }], routes: [{ backend_name: "web" }] },
  });
});

afterAll(async () => {
  await kedge?.shutdown();
  await upstream?.close();
  silentDns?.close();
});

describe("an HTTP request caught by a reload", () => {
  it("is sent to the backend that replaced the one it was routed to", async () => {
    const pending = fetch(`http://127.0.0.1:${kedge.ports.http}/caught`);
    await Bun.sleep(300); // the request now waits for web's first resolution
    kedge.writeConfig({
      server: plainServer,
      http: { backends: [{ name: "web", static: { addresses: [`127.0.0.1:${upstream.port}`] } }], routes: [{ backend_name: "web" }] },
    });
    await kedge.reload();
    const res = await pending;
    expect([res.status, res.headers.get("x-kedge-error")]).toEqual([200, null]);
    expect(res.headers.get("x-kedge-backend-name")).toBe("web");
    expect(await res.text()).toContain("successor");
  });
});
