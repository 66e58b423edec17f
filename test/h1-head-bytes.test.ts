import { afterAll, beforeAll, expect, it } from "bun:test";
import net from "node:net";
import { plainServer, startTestKedge, type TestKedge } from "./helpers/kedge.ts";

// Heads are laid out in a 64 KiB buffer shared by every connection (net/head-writer), the peers'
// field lines copied from the bytes they arrived in; a head that does not fit gets a buffer of its
// own. Both directions here carry heads past that size, and bytes outside ASCII (obs-text).

const bigValue = (n: number, seed: number) => Array.from({ length: n }, (_, i) => String.fromCharCode(97 + ((i * 7 + seed) % 26))).join("");

let backend: net.Server;
let kedge: TestKedge;
/** The request heads the backend received, as text. */
const received: string[] = [];

beforeAll(async () => {
  // A raw backend: it answers every request with a head just under the 64 KiB kedge reads and a short body.
  backend = net.createServer((socket) => {
    let buf = "";
    socket.on("data", (d: Buffer) => {
      buf += d.toString("latin1");
      let end: number;
      while ((end = buf.indexOf("\r\n\r\n")) >= 0) {
        received.push(buf.slice(0, end + 4));
        buf = buf.slice(end + 4);
        const big = received.at(-1)!.startsWith("GET /obs ") ? "" : `x-big-1: ${bigValue(40_000, 1)}\r\nx-big-2: ${bigValue(25_450, 2)}\r\n`;
        socket.write(Buffer.from(`HTTP/1.1 200 OK\r\n${big}x-obs: caf\xe9 \x80\xff\r\ncontent-length: 5\r\n\r\nhello`, "latin1"));
      }
    });
  });
  await new Promise<void>((ok) => backend.listen(0, "127.0.0.1", ok));
  const port = (backend.address() as net.AddressInfo).port;
  kedge = await startTestKedge({
    server: { ...plainServer, max_request_header_bytes: 200_000 },
    http: { backends: [{ name: "raw", static: { addresses: [`127.0.0.1:${port}`] } }], routes: [{ backend_name: "raw" }] },
  });
});

afterAll(async () => {
  await kedge?.shutdown();
  backend?.close();
});

/** Sends `request` on a new connection; resolves with everything read once `responses` bodies came. */
async function exchange(request: string, responses: number): Promise<string> {
  const socket = net.connect(kedge.ports.http, "127.0.0.1");
  let text = "";
  const done = new Promise<void>((ok) =>
    socket.on("data", (d) => {
      text += d.toString("latin1");
      if (text.split("\r\n\r\nhello").length - 1 >= responses) ok();
    }),
  );
  socket.write(request);
  await done;
  socket.destroy();
  return text;
}

it("passes on a backend's response head bigger than the shared head buffer, byte for byte, then reuses the buffer", async () => {
  const text = await exchange("GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n", 2);
  const heads = text.split("\r\n\r\nhello").slice(0, 2);
  for (const head of heads) {
    expect(head).toStartWith("HTTP/1.1 200 OK\r\n");
    expect(head).toContain(`\r\nx-big-1: ${bigValue(40_000, 1)}\r\n`);
    expect(head).toContain(`\r\nx-big-2: ${bigValue(25_450, 2)}\r\n`);
    expect(head).toContain("\r\nx-kedge-backend-name: raw\r\n");
    expect(head.length).toBeGreaterThan(64 * 1024);
  }
  // A small head after the big ones comes out of the shared buffer again, intact.
  const small = await fetch(`http://127.0.0.1:${kedge.ports.http}/small`, { headers: { "x-small": "yes" } });
  expect(small.status).toBe(200);
  expect(await small.text()).toBe("hello");
});

it("passes header bytes outside ASCII through unchanged, both ways", async () => {
  received.length = 0;
  const socket = net.connect(kedge.ports.http, "127.0.0.1");
  let text = "";
  const done = new Promise<void>((ok) =>
    socket.on("data", (d) => {
      text += d.toString("latin1");
      if (text.includes("\r\n\r\nhello")) ok();
    }),
  );
  socket.write(Buffer.from("GET /obs HTTP/1.1\r\nHost: a\r\nX-Name: M\xfcller \x80\xff\r\n\r\n", "latin1"));
  await done;
  socket.destroy();
  expect(received[0]).toContain("\r\nX-Name: M\xfcller \x80\xff\r\n");
  expect(text).toContain("\r\nx-obs: caf\xe9 \x80\xff\r\n");
});

it("sends the backend a request head bigger than the shared head buffer, byte for byte", async () => {
  received.length = 0;
  const a = bigValue(70_000, 3);
  const text = await exchange(`GET /big HTTP/1.1\r\nHost: a\r\nX-Long: ${a}\r\nAccept: */*\r\n\r\n`, 1);
  expect(text).toStartWith("HTTP/1.1 200 OK\r\n");
  expect(received).toHaveLength(1);
  const head = received[0];
  expect(head).toStartWith("GET /big HTTP/1.1\r\nhost: a\r\n");
  expect(head).toContain(`\r\nX-Long: ${a}\r\nAccept: */*\r\n`);
  expect(head).toContain("\r\nx-forwarded-for: 127.0.0.1\r\n");
  expect(head).toEndWith("\r\n\r\n");
});
