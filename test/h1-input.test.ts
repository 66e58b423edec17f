import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import http2 from "node:http2";
import * as grpc from "@grpc/grpc-js";
import { GreeterClient, startGreeter, unary, type GreeterServer } from "./helpers/grpc.ts";
import { plainServer, startTestKedge, type TestKedge } from "./helpers/kedge.ts";
import { rawHttp } from "./helpers/raw-http.ts";
import { startUpstream, type Upstream } from "./helpers/upstream.ts";

// Request input a backend could read differently from kedge: backslashes and NULs in paths, chunk
// framing with stray bytes, header names with "_" (CGI backends read "x_user" as "x-user").

let upstream: Upstream;
let greeter: GreeterServer;
let strict: TestKedge;
let lenient: TestKedge;
let dropping: TestKedge;

function config(server: Record<string, unknown>) {
  return {
    server: { ...plainServer, h2c_port: 0, ...server },
    http: { backends: [{ name: "app", static: { addresses: [`127.0.0.1:${upstream.port}`] } }], routes: [{ backend_name: "app" }] },
    grpc: { backends: [{ name: "greeter", static: { addresses: [`127.0.0.1:${greeter.port}`] } }], routes: [{ backend_name: "greeter" }] },
  };
}

beforeAll(async () => {
  upstream = await startUpstream("app");
  greeter = await startGreeter("greeter");
  strict = await startTestKedge(config({}));
  lenient = await startTestKedge(config({ allow_encoded_slashes: true, headers_with_underscores: "ALLOW" }));
  dropping = await startTestKedge(config({ headers_with_underscores: "DROP" }));
});

afterAll(async () => {
  await strict?.shutdown();
  await lenient?.shutdown();
  await dropping?.shutdown();
  await upstream?.close();
  greeter?.kill();
});

/** One raw request (latin1 bytes) on its own connection, and what reached the backend because of it. */
async function send(kedge: TestKedge, request: string) {
  const seen = upstream.seen.length;
  const answer = await rawHttp(kedge.ports.http, Buffer.from(request, "latin1"));
  return { answer, forwarded: upstream.seen.slice(seen) };
}

const get = (path: string, fields = "") => `GET ${path} HTTP/1.1\r\nHost: a\r\n${fields}Connection: close\r\n\r\n`;
const chunked = (body: string) => `POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n${body}`;
const answers = (text: string) => text.match(/HTTP\/1\.1 \d{3}/g)?.length ?? 0;

describe("paths", () => {
  it("refuses a literal backslash like %5C (400), unless allow_encoded_slashes", async () => {
    const refusals = { "/a\\..\\admin": "backslash in the path", "/a%5C..%5Cadmin": "encoded slash (%2F or %5C) in the path" };
    for (const [path, why] of Object.entries(refusals)) {
      const { answer, forwarded } = await send(strict, get(path));
      expect(answer.status).toBe(400);
      expect(answer.headers["x-kedge-error"]).toBe(why);
      expect(forwarded).toEqual([]);
    }
    const { answer, forwarded } = await send(lenient, get("/a\\b"));
    expect(answer.status).toBe(200);
    expect(forwarded.map((s) => s.url)).toEqual(["/a\\b"]);
  });

  it("refuses NUL in the path, encoded or literal (400), whatever the config", async () => {
    for (const kedge of [strict, lenient]) {
      const encoded = await send(kedge, get("/a%00.html"));
      expect(encoded.answer.status).toBe(400);
      expect(encoded.answer.headers["x-kedge-error"]).toBe("NUL (%00) in the path");
      const literal = await send(kedge, get("/a\0.html"));
      expect(literal.answer.status).toBe(400);
      expect(literal.answer.headers["x-kedge-error"]).toBe("invalid byte in the request head");
      expect([...encoded.forwarded, ...literal.forwarded]).toEqual([]);
    }
  });
});

describe("chunked request bodies", () => {
  const broken: Array<[string, string, string]> = [
    ["a bare CR in a chunk extension", "5;name=a\rb\r\nhello\r\n0\r\n\r\n", "control character in a chunk extension"],
    ["a NUL in a chunk extension", "5;name=a\0b\r\nhello\r\n0\r\n\r\n", "control character in a chunk extension"],
    ["a CR after the chunk size", "5\r\r\nhello\r\n0\r\n\r\n", 'malformed chunk size "5\\r"'],
    ["a vertical tab after the chunk size", "5\x0b\r\nhello\r\n0\r\n\r\n", 'malformed chunk size "5\\u000b"'],
    ["a no-break space after the chunk size", "5\xa0;x\r\nhello\r\n0\r\n\r\n", 'malformed chunk size "5\xa0"'],
    ["a space after the chunk size without an extension", "5 \r\nhello\r\n0\r\n\r\n", 'malformed chunk size "5 "'],
  ];
  for (const [name, body, reason] of broken) {
    it(`refuses ${name}: one 400 that says why, the connection closed, nothing forwarded whole`, async () => {
      const { answer, forwarded } = await send(strict, `${chunked(body)}GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n`);
      expect(answer.status).toBe(400);
      expect(answer.headers["x-kedge-error"]).toBe(reason);
      expect(answers(answer.text)).toBe(1);
      expect(forwarded.filter((s) => s.url === "/smuggled" || s.bodyBytes > 0)).toEqual([]);
    });
  }

  it("takes extensions after optional whitespace, and drops them", async () => {
    const { answer, forwarded } = await send(strict, chunked("5 ;a=b\r\nhello\r\n5\t; q=\"x y\"\r\nworld\r\n0\r\n\r\n"));
    expect(answer.status).toBe(200);
    expect(forwarded.map((s) => s.bodyBytes)).toEqual([10]);
  });
});

describe("header names with underscores (server.headers_with_underscores)", () => {
  it("REJECT (the default): HTTP/1.1 gets 400 naming the field, nothing is forwarded", async () => {
    const { answer, forwarded } = await send(strict, get("/u", "X_User: mallory\r\n"));
    expect(answer.status).toBe(400);
    expect(answer.headers["x-kedge-error"]).toBe('header name "x_user" holds an underscore (server.headers_with_underscores: REJECT)');
    expect(answer.headers["x-kedge-error-type"]).toBe("bad-request");
    expect(forwarded).toEqual([]);
  });

  it("ALLOW forwards them as sent", async () => {
    const { answer, forwarded } = await send(lenient, get("/u", "X_User: mallory\r\nX-Other: 1\r\n"));
    expect(answer.status).toBe(200);
    expect(forwarded[0].headers.x_user).toBe("mallory");
  });

  it("DROP removes them and forwards the rest, whether the head is copied or rebuilt", async () => {
    // A repeated field makes kedge rebuild the head from parsed fields rather than copy its lines.
    for (const fields of ["X_User: mallory\r\nX-Other: 1\r\n", "X_User: mallory\r\nX-Other: 1\r\nX-Other: 2\r\nx_user: again\r\n"]) {
      const { answer, forwarded } = await send(dropping, get("/u", fields));
      expect(answer.status).toBe(200);
      expect(forwarded).toHaveLength(1);
      expect(forwarded[0].headers.x_user).toBeUndefined();
      expect(forwarded[0].headers["x-other"]).toBeDefined();
    }
  });

  async function h2Get(kedge: TestKedge, headers: Record<string, string>) {
    const session = http2.connect(`http://127.0.0.1:${kedge.ports.h2c}`);
    try {
      const req = session.request({ ":path": "/h2", ":authority": "a", ...headers });
      const [head, body] = await Promise.all([
        new Promise<http2.IncomingHttpHeaders>((resolve) => req.once("response", resolve)),
        new Promise<string>((resolve) => {
          let text = "";
          req.on("data", (d) => (text += d));
          req.on("end", () => resolve(text));
        }),
      ]);
      return { head, body };
    } finally {
      session.close();
    }
  }

  it("applies to HTTP/2 requests too: 400 with x-kedge-error, or dropped", async () => {
    const seen = upstream.seen.length;
    const refused = await h2Get(strict, { x_user: "mallory" });
    expect(Number(refused.head[":status"])).toBe(400);
    expect(refused.head["x-kedge-error"]).toBe('header name "x_user" holds an underscore (server.headers_with_underscores: REJECT)');
    expect(upstream.seen.length).toBe(seen);
    const dropped = await h2Get(dropping, { x_user: "mallory", "x-other": "1" });
    expect(Number(dropped.head[":status"])).toBe(200);
    expect(upstream.seen.at(-1)?.headers.x_user).toBeUndefined();
    expect(upstream.seen.at(-1)?.headers["x-other"]).toBe("1");
  });

  it("DROP takes them out of every request on one HTTP/2 connection, the same header block sent again included", async () => {
    const session = http2.connect(`http://127.0.0.1:${dropping.ports.h2c}`);
    try {
      const seen = upstream.seen.length;
      for (let i = 0; i < 3; i++) {
        const req = session.request({ ":path": "/again", ":authority": "a", x_user: "mallory", "x-other": "1" });
        const status = await new Promise<unknown>((resolve) => req.once("response", (h) => resolve(h[":status"])));
        req.resume();
        await new Promise((resolve) => req.once("end", resolve));
        expect(status).toBe(200);
      }
      const forwarded = upstream.seen.slice(seen);
      expect(forwarded.map((r) => [r.headers.x_user, r.headers["x-other"]])).toEqual([[undefined, "1"], [undefined, "1"], [undefined, "1"]]);
    } finally {
      session.close();
    }
  });

  it("DROP takes them out of gRPC metadata, call after call on one connection", async () => {
    // A backend that writes down what reached it and answers each call with one message.
    const received: http2.IncomingHttpHeaders[] = [];
    const backend = http2.createServer();
    backend.on("stream", (stream: http2.ServerHttp2Stream, headers) => {
      received.push(headers);
      stream.resume();
      stream.on("end", () => {
        stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
        stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
        const message = Buffer.from(JSON.stringify({ message: "ok" }));
        const prefix = Buffer.alloc(5);
        prefix.writeUInt32BE(message.length, 1);
        stream.end(Buffer.concat([prefix, message]));
      });
    });
    await new Promise<void>((resolve) => backend.listen(0, "127.0.0.1", resolve));
    const kedge = await startTestKedge({
      server: { ...plainServer, h2c_port: 0, headers_with_underscores: "DROP" },
      grpc: { backends: [{ name: "rec", static: { addresses: [`127.0.0.1:${(backend.address() as { port: number }).port}`] } }], routes: [{ backend_name: "rec" }] },
    });
    const client = new GreeterClient(`127.0.0.1:${kedge.ports.h2c}`, grpc.credentials.createInsecure());
    try {
      for (let i = 0; i < 3; i++) {
        const metadata = new grpc.Metadata();
        metadata.set("x_user", "mallory");
        metadata.set("x-other", "1");
        expect((await unary(client, "sayHello", { name: "u" }, metadata)).response).toEqual({ message: "ok" });
      }
      expect(received.map((h) => [h.x_user, h["x-other"]])).toEqual([[undefined, "1"], [undefined, "1"], [undefined, "1"]]);
    } finally {
      client.close();
      await kedge.shutdown();
      backend.close();
    }
  });

  it("applies to gRPC metadata too: INTERNAL (HTTP 400's gRPC code) naming the key, or passed with ALLOW", async () => {
    const call = async (kedge: TestKedge) => {
      const client = new GreeterClient(`127.0.0.1:${kedge.ports.h2c}`, grpc.credentials.createInsecure());
      try {
        const metadata = new grpc.Metadata();
        metadata.set("x_user", "mallory");
        return await unary(client, "sayHello", { name: "u" }, metadata);
      } finally {
        client.close();
      }
    };
    const refused = await call(strict);
    expect(refused.error?.code).toBe(grpc.status.INTERNAL);
    expect(refused.error?.details).toContain('header name "x_user" holds an underscore');
    expect((await call(lenient)).response).toBeDefined();
    expect((await call(dropping)).response).toBeDefined();
  });
});
