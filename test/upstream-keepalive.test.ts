import { afterAll, beforeAll, expect, it } from "bun:test";
import http from "node:http";
import type { Socket } from "node:net";
import { plainServer, startTestKedge, type TestKedge } from "./helpers/kedge.ts";

// A pooled keep-alive connection to a backend is reused while it is fresh and closed by kedge once
// it has sat idle for the backend's `timeouts.keepalive`; the next request dials a new one.

let upstream: http.Server;
let kedge: TestKedge;
const sockets: Array<{ socket: Socket; closedAt: number }> = [];

beforeAll(async () => {
  upstream = http.createServer({ keepAliveTimeout: 60_000 }, (_req, res) => res.end("ok"));
  upstream.on("connection", (socket: Socket) => {
    const entry = { socket, closedAt: 0 };
    sockets.push(entry);
    socket.on("close", () => (entry.closedAt = performance.now()));
  });
  await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", r));
  const port = (upstream.address() as { port: number }).port;
  kedge = await startTestKedge({
    server: plainServer,
    http: { backends: [{ name: "pooled", static: { addresses: [`127.0.0.1:${port}`] }, timeouts: { keepalive: "1s" } }], routes: [{ backend_name: "pooled" }] },
  });
});

afterAll(async () => {
  await kedge?.shutdown();
  upstream?.close();
});

async function get(): Promise<void> {
  const res = await fetch(kedge.url("/"));
  expect(res.status).toBe(200);
  expect(await res.text()).toBe("ok");
}

it("reuses an idle backend connection, closes it after the keepalive timeout, then dials anew", async () => {
  await get();
  await Bun.sleep(300);
  await get();
  expect(sockets).toHaveLength(1);
  const lastUse = performance.now();
  const deadline = lastUse + 5_000;
  while (sockets[0].closedAt === 0 && performance.now() < deadline) await Bun.sleep(50);
  expect(sockets[0].closedAt).toBeGreaterThan(0);
  // Not before the timeout, and not seconds after it: kedge checks idle connections a few times a second.
  expect(sockets[0].closedAt - lastUse).toBeGreaterThan(900);
  expect(sockets[0].closedAt - lastUse).toBeLessThan(2_000);
  await get();
  expect(sockets).toHaveLength(2);
});
