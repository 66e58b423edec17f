import { afterAll, beforeAll, expect, it } from "bun:test";
import net from "node:net";
import { plainServer, startTestKedge, type TestKedge } from "./helpers/kedge.ts";

// Response heads are laid out in one buffer shared by every connection and sent from it; whatever
// a socket does not take at once must be copied before it is queued. A client that stops reading
// while its pipelined responses pile up is where that happens: every byte must still arrive as sent.

const requests = 300;
const bodyBytes = 30_000;
const bodyOf = (i: number) => `<${i}>`.padEnd(bodyBytes, String.fromCharCode(97 + (i % 26)));

let upstream: ReturnType<typeof Bun.serve>;
let kedge: TestKedge;

beforeAll(async () => {
  upstream = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: (req) => new Response(bodyOf(Number(new URL(req.url).pathname.slice(3)))) });
  kedge = await startTestKedge({
    server: plainServer,
    http: { backends: [{ name: "big", static: { addresses: [`127.0.0.1:${upstream.port}`] } }], routes: [{ backend_name: "big" }] },
  });
});

afterAll(async () => {
  await kedge?.shutdown();
  upstream?.stop(true);
});

it("a client that stops reading gets every pipelined response intact once it reads again", async () => {
  const socket = net.connect(kedge.ports.http, "127.0.0.1");
  const chunks: Buffer[] = [];
  let received = 0;
  socket.on("data", (d: Buffer) => {
    chunks.push(d);
    received += d.length;
  });
  await new Promise((ok) => socket.on("connect", ok));
  socket.pause();
  socket.write(Array.from({ length: requests }, (_, i) => `GET /r/${i} HTTP/1.1\r\nHost: a\r\n\r\n`).join(""));
  // Long enough for kedge's writes to the full socket to come back short and be queued.
  await Bun.sleep(1000);
  socket.resume();
  const expected = requests * bodyBytes;
  const deadline = Date.now() + 20_000;
  while (received < expected && Date.now() < deadline) await Bun.sleep(20);
  await Bun.sleep(100);
  socket.destroy();

  const all = Buffer.concat(chunks).toString("latin1");
  let at = 0;
  for (let i = 0; i < requests; i++) {
    const headEnd = all.indexOf("\r\n\r\n", at);
    expect(headEnd).toBeGreaterThan(0);
    const head = all.slice(at, headEnd);
    expect(head).toStartWith("HTTP/1.1 200 OK\r\n");
    const length = Number(/\r\ncontent-length: (\d+)/i.exec(head)?.[1]);
    expect(length).toBe(bodyBytes);
    const body = all.slice(headEnd + 4, headEnd + 4 + length);
    if (body !== bodyOf(i)) throw new Error(`response ${i}: body differs from what the backend sent (starts ${JSON.stringify(body.slice(0, 20))})`);
    at = headEnd + 4 + length;
  }
  expect(at).toBe(all.length);
});
