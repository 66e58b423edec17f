import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import type { TCPSocketListener } from "bun";
import http2 from "node:http2";
import { startTestKedge, type TestKedge } from "./helpers/kedge.ts";

// An HTTP/1.1 backend's response head as an HTTP/2 client gets it: kedge encodes the backend's
// field lines straight into HPACK (no headers object): names lower-cased, values trimmed,
// hop-by-hop fields and the backend's kedge tags left out, repeated fields kept in order,
// credentials never indexed, and Content-Length dropped where Transfer-Encoding overrides it.

/** Raw heads by path; each ends the response with a 2-byte body "ok". */
const heads: Record<string, string> = {
  "/fields":
    "HTTP/1.1 200 OK\r\nServer: test\r\nSet-Cookie: a=1\r\nX-Kedge-Request-Id: from-backend\r\nX-Kedge-Backend-Name: other\r\n" +
    "Set-Cookie: b=2\r\nX-Spaced: \t value with  inner space \t\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n" +
    `X-Long: ${"v".repeat(200)}\r\nContent-Length: 2\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\n\r\nok`,
  "/chunked": "HTTP/1.1 201 Created\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\nX-After: 1\r\n\r\n2\r\nok\r\n0\r\n\r\n",
  "/twice": "HTTP/1.1 200 OK\r\nContent-Type: a\r\ncontent-type: b\r\nContent-Length: 2\r\n\r\nok",
};

let backend: TCPSocketListener<undefined>;
let kedge: TestKedge;

beforeAll(async () => {
  backend = Bun.listen<undefined>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      data(socket, d) {
        const path = d.toString("latin1").split(" ")[1];
        socket.write(heads[path] ?? "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
      },
    },
  });
  kedge = await startTestKedge({
    server: { bind_address: "127.0.0.1", h2c_port: 0, admin_port: 0, log_level: "error" },
    http: { backends: [{ name: "app", static: { addresses: [`127.0.0.1:${backend.port}`] } }], routes: [{ backend_name: "app" }] },
  });
});

afterAll(async () => {
  await kedge?.shutdown();
  backend?.stop(true);
});

interface Answer {
  headers: http2.IncomingHttpHeaders & http2.IncomingHttpStatusHeader;
  sensitive: string[];
  body: string;
}

function get(path: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const client = http2.connect(`http://127.0.0.1:${kedge.ports.h2c}`);
    client.on("error", reject);
    const req = client.request({ ":path": path });
    let body = "";
    let answer: Omit<Answer, "body"> | undefined;
    req.on("response", (headers) => (answer = { headers, sensitive: (headers as Record<symbol, string[]>)[http2.sensitiveHeaders] ?? [] }));
    req.on("data", (d: Buffer) => (body += d.toString()));
    req.on("end", () => {
      client.close();
      resolve({ ...answer!, body });
    });
    req.on("error", reject);
  });
}

describe("an HTTP/1.1 backend's response head to an HTTP/2 client", () => {
  it("carries the backend's fields in lower case, trimmed, less hop-by-hop fields and its kedge tags", async () => {
    const { headers, sensitive, body } = await get("/fields");
    expect(headers[":status"]).toBe(200);
    expect(body).toBe("ok");
    const { ":status": _, "x-kedge-request-id": requestId, ...rest } = Object.fromEntries(Object.entries(headers));
    expect(requestId).not.toBe("from-backend");
    expect(requestId).toMatch(/^[0-9a-f-]+$/);
    expect(rest).toEqual({
      server: "test",
      "set-cookie": ["a=1", "b=2"],
      "x-spaced": "value with  inner space",
      "x-long": "v".repeat(200),
      "content-length": "2",
      date: "Mon, 01 Jan 2024 00:00:00 GMT",
      "x-kedge-backend-name": "app",
    });
    expect(new Set(sensitive)).toEqual(new Set(["set-cookie"])); // RFC 7541 §7.1.3: never indexed
  });

  it("leaves out Content-Length when Transfer-Encoding overrides it (RFC 9112 §6.3)", async () => {
    const { headers, body } = await get("/chunked");
    expect(headers[":status"]).toBe(201);
    expect(headers["content-length"]).toBeUndefined();
    expect(headers["transfer-encoding"]).toBeUndefined();
    expect(headers["x-after"]).toBe("1");
    expect(body).toBe("ok");
  });

  it("refuses a single-value field given twice, in any case: the stream is reset, no head sent", async () => {
    const answer = await get("/twice").catch((e: Error) => e);
    expect(answer).toBeInstanceOf(Error);
    expect((answer as Error).message).toContain("INTERNAL_ERROR");
  });
});
