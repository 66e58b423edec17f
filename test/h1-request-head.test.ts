import { describe, expect, it } from "bun:test";
import { KedgeError } from "../src/errors.ts";
import { BodyReader } from "../src/server/h1/body-reader.ts";
import { findHeadEnd, parseRequestHead, type RequestHead } from "../src/server/h1/request-head.ts";

// kedge's HTTP/1.1 request parser on its own: what it accepts, how it combines repeated fields
// (as node:http did, so the proxy behind it sees the same headers), and the bytes it refuses.

const limits = { maxHeaderBytes: 1024, maxHeaders: 10, maxUriBytes: 100 };

function parse(head: string): RequestHead | KedgeError {
  const bytes = Buffer.from(head, "latin1");
  const end = findHeadEnd(bytes, bytes.length, limits);
  if (typeof end !== "number") return end;
  if (end < 0) throw new Error("incomplete head");
  return parseRequestHead(head.slice(0, end), limits);
}

function ok(head: string): RequestHead {
  const parsed = parse(head);
  if (parsed instanceof KedgeError) throw new Error(`refused: ${parsed.message}`);
  return parsed;
}

const statusOf = (head: string) => {
  const parsed = parse(head);
  return parsed instanceof KedgeError ? parsed.status : 200;
};

describe("HTTP/1.1 request heads", () => {
  it("passes on only WebSocket and SPDY upgrades, asked for in Connection, on HTTP/1.1, without a body", () => {
    const upgradeOf = (version: string, connection: string, upgrade: string, extra = "") =>
      ok(`GET /x ${version}\r\nHost: a\r\nConnection: ${connection}\r\nUpgrade: ${upgrade}\r\n${extra}\r\n`).upgrade;
    expect(upgradeOf("HTTP/1.1", "Upgrade", "websocket")).toBe("websocket");
    expect(upgradeOf("HTTP/1.1", "keep-alive, Upgrade", "WebSocket")).toBe("WebSocket");
    expect(upgradeOf("HTTP/1.1", "upgrade", "SPDY/3.1")).toBe("SPDY/3.1");
    // h2c would let requests no route saw reach the backend over the spliced connection.
    expect(upgradeOf("HTTP/1.1", "Upgrade, HTTP2-Settings", "h2c", "HTTP2-Settings: AAMAAABk\r\n")).toBeUndefined();
    expect(upgradeOf("HTTP/1.1", "Upgrade", "websocket, h2c")).toBeUndefined();
    expect(upgradeOf("HTTP/1.1", "keep-alive", "websocket")).toBeUndefined();
    expect(upgradeOf("HTTP/1.0", "Upgrade", "websocket")).toBeUndefined();
    expect(upgradeOf("HTTP/1.1", "Upgrade", "websocket", "Content-Length: 3\r\n")).toBeUndefined();
    expect(ok("GET /x HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n").upgrade).toBeUndefined();
  });

  it("reads each Host and target as sent, however alike the last one was (the same length, one byte apart, with whitespace)", () => {
    const hosts = ["a.example", "a.example", "b.example", "a.exampld", " a.example\t", "a.example:80", "x", "a.example"];
    for (const host of hosts) expect(ok(`GET / HTTP/1.1\r\nHost: ${host}\r\n\r\n`).headers.host).toBe(host.trim());
    const targets = ["/a", "/a", "/b", "/ab", "/a?x", "/a?y", "*", "/a"];
    for (const target of targets) expect(ok(`GET ${target} HTTP/1.1\r\nHost: a\r\n\r\n`).target).toBe(target);
    const long = "h".repeat(300);
    expect(ok(`GET / HTTP/1.1\r\nHost: ${long}\r\n\r\n`).headers.host).toBe(long);
    expect(ok(`GET / HTTP/1.1\r\nHost: ${long.slice(1)}z\r\n\r\n`).headers.host).toBe(`${long.slice(1)}z`);
  });

  it("reads the request line, lower-cases names and trims values", () => {
    const head = ok("POST /a?b=1 HTTP/1.1\r\nHost: x.example\r\nX-Thing:   spaced value \t\r\nContent-Length: 12\r\n\r\n");
    expect(head.method).toBe("POST");
    expect(head.target).toBe("/a?b=1");
    expect(head.versionMinor).toBe(1);
    expect(head.headers).toEqual({ host: "x.example", "x-thing": "spaced value", "content-length": "12" });
    expect(head.contentLength).toBe(12);
    expect(head.keepAlive).toBe(true);
  });

  it("lower-cases common names in any case and tells them from other names of the same length", () => {
    const head = ok("GET / HTTP/1.1\r\nHOST: h\r\nHosx: 1\r\nACCEPT-encoding: gzip\r\nAccept-Encodinh: 2\r\nUSER-AGENT: u\r\nuser_agent: 3\r\nX-Request-ID: r\r\nContent-type: t\r\n\r\n");
    expect(head.headers).toEqual({ host: "h", hosx: "1", "accept-encoding": "gzip", "accept-encodinh": "2", "user-agent": "u", user_agent: "3", "x-request-id": "r", "content-type": "t" });
    // A name of a common name's length is still checked to be a token.
    expect(statusOf("GET / HTTP/1.1\r\nHost: h\r\nho(t: 1\r\n\r\n")).toBe(400);
    expect(statusOf("GET / HTTP/1.1\r\nHost: h\r\nhost : 1\r\n\r\n")).toBe(400);
  });

  it("combines repeated fields the way node:http does", () => {
    const head = ok(
      "GET / HTTP/1.1\r\nHost: a\r\nAccept: a/b\r\naccept: c/d\r\nCookie: x=1\r\nCookie: y=2\r\nSet-Cookie: s=1\r\nSet-Cookie: t=2\r\nUser-Agent: first\r\nUser-Agent: second\r\n\r\n",
    );
    expect(head.headers.accept).toBe("a/b, c/d");
    expect(head.headers.cookie).toBe("x=1; y=2");
    expect(head.headers["set-cookie"]).toEqual(["s=1", "t=2"]);
    expect(head.headers["user-agent"]).toBe("first");
  });

  it("knows keep-alive, chunked bodies and Expect: 100-continue", () => {
    expect(ok("GET / HTTP/1.1\r\nHost: a\r\nConnection: Keep-Alive, Close\r\n\r\n").keepAlive).toBe(false);
    expect(ok("GET / HTTP/1.0\r\n\r\n").keepAlive).toBe(false);
    expect(ok("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").keepAlive).toBe(true);
    expect(ok("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n").contentLength).toBe(-1);
    expect(ok("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: 100-Continue\r\n\r\n").expectContinue).toBe(true);
    expect(ok("POST / HTTP/1.0\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n").expectContinue).toBe(false);
  });

  it("refuses what a backend could frame differently, with the status RFC 9112 asks for", () => {
    const cases: Array<[string, number]> = [
      ["GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400],
      ["GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", 400],
      ["GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n", 400],
      ["GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1234567890123456\r\n\r\n", 400],
      ["GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501],
      ["GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", 400],
      ["GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n", 400],
      ["GET / HTTP/1.1\r\nHost: a\r\nX: a\nb: c\r\n\r\n", 400],
      ["GET / HTTP/1.1\r\nHost: a\r\n: empty name\r\n\r\n", 400],
      ["GET / HTTP/1.1\r\nHost: a\r\nno colon\r\n\r\n", 400],
      ["GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400],
      ["GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400],
      ["G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400],
      ["GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400],
      ["GET / HTTP/3.0\r\nHost: a\r\n\r\n", 505],
      ["GET / HTTX/1.1\r\nHost: a\r\n\r\n", 400],
      [`GET /${"a".repeat(200)} HTTP/1.1\r\nHost: a\r\n\r\n`, 414],
      [`GET / HTTP/1.1\r\nHost: a\r\n${"X: y\r\n".repeat(10)}\r\n`, 431],
    ];
    for (const [head, status] of cases) expect([JSON.stringify(head), statusOf(head)]).toEqual([JSON.stringify(head), status]);
  });

  it("finds where a head ends, waits for the rest, and refuses a bare LF before the head is complete", () => {
    const bytes = Buffer.from("GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /next");
    expect(findHeadEnd(bytes, bytes.length, limits)).toBe(27);
    expect(findHeadEnd(bytes, 20, limits)).toBe(-1);
    const bare = Buffer.from("GET / HTTP/1.1\nHost: a\n");
    expect((findHeadEnd(bare, bare.length, limits) as KedgeError).status).toBe(400);
    const huge = Buffer.from(`GET / HTTP/1.1\r\nX: ${"a".repeat(2000)}`);
    expect((findHeadEnd(huge, huge.length, limits) as KedgeError).status).toBe(431);
  });

  it("refuses a control byte, a bare CR or an over-long request line as soon as it arrives, before the head is complete", () => {
    const refusal = (partial: string) => {
      const bytes = Buffer.from(partial, "latin1");
      const got = findHeadEnd(bytes, bytes.length, limits);
      return got instanceof KedgeError ? [got.status, got.message] : got;
    };
    expect(refusal("GET / HTTP/1.1\r\nX: a\0")).toEqual([400, "invalid byte in the request head"]);
    expect(refusal("GET / HTTP/1.1\r\nX: a\x7f")).toEqual([400, "invalid byte in the request head"]);
    expect(refusal("GET / HTTP/1.1\r\nX: a\rb")).toEqual([400, "invalid byte in the request head"]);
    expect(refusal(`GET /${"a".repeat(200)}`)).toEqual([414, "request target longer than 100 bytes"]);
    // What may still become a good head waits: a CR whose LF has not come, a tab, obs-text.
    expect(refusal("GET / HTTP/1.1\r\nX: a\tb\xe9\r")).toBe(-1);
  });
});

describe("request bodies", () => {
  function read(contentLength: number, ...pieces: string[]): { body: string; ended: boolean; used: number[] } {
    let body = "";
    let ended = false;
    const reader = new BodyReader(contentLength, { data: (c) => (body += Buffer.from(c).toString("latin1")), end: () => (ended = true) });
    reader.start();
    const used = pieces.map((p) => reader.feed(Buffer.from(p, "latin1")));
    return { body, ended, used };
  }

  it("reads a Content-Length body and leaves what follows for the next request", () => {
    expect(read(5, "hel", "loGET")).toEqual({ body: "hello", ended: true, used: [3, 2] });
    expect(read(0)).toEqual({ body: "", ended: true, used: [] });
  });

  it("decodes chunked bodies split anywhere, dropping extensions and trailers", () => {
    const wire = "3;name=v\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nTrailer: x\r\n\r\nNEXT";
    for (let cut = 1; cut < wire.length - 4; cut++) {
      const { body, ended, used } = read(-1, wire.slice(0, cut), wire.slice(cut));
      expect(body).toBe("abc0123456789abcdef");
      expect(ended).toBe(true);
      expect(used[0] + used[1]).toBe(wire.length - 4);
    }
  });

  it("refuses broken chunked framing", () => {
    for (const wire of ["zz\r\n", "3\nabc", "3\r\nabcX\r\n", `${"f".repeat(16)}\r\n`, `3;${"e".repeat(5000)}\r\n`]) {
      expect(() => read(-1, wire)).toThrow(KedgeError);
    }
  });
});
