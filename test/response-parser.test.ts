import { describe, expect, it } from "bun:test";
import { mulberry32, type Rng } from "./helpers/rng";
import { ParseError, type ResponseHead } from "../src/upstream/response-head";
import { ResponseParser, type ResponseSink } from "../src/upstream/response-parser";

// Property-based tests with a tiny seeded PRNG. Every failure names its seed; rerun one with
// PROP_SEED=<seed> (it becomes the first case). PROP_RUNS scales the number of cases.
const baseSeed = Number(process.env.PROP_SEED ?? 0x6b656467);
const runs = Number(process.env.PROP_RUNS ?? 200);
const timeout = Math.max(5000, runs * 40); // ms per property

const int = (rng: Rng, lo: number, hi: number) => lo + Math.floor(rng() * (hi - lo + 1));
const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[int(rng, 0, xs.length - 1)];

function forAll(n: number, prop: (rng: Rng) => void): void {
  for (let i = 0; i < n; i++) {
    const seed = (baseSeed + i) >>> 0;
    try {
      prop(mulberry32(seed));
    } catch (e) {
      throw new Error(`property failed for seed ${seed} (PROP_SEED=${seed}): ${(e as Error).message}`);
    }
  }
}

const enc = new TextEncoder();
function concat(parts: (string | Uint8Array)[]): Uint8Array {
  const bufs = parts.map((p) => (typeof p === "string" ? enc.encode(p) : p));
  const out = new Uint8Array(bufs.reduce((n, b) => n + b.length, 0));
  let o = 0;
  for (const b of bufs) (out.set(b, o), (o += b.length));
  return out;
}
function assertSameBytes(got: Uint8Array, want: Uint8Array): void {
  const n = Math.min(got.length, want.length);
  let i = 0;
  while (i < n && got[i] === want[i]) i++;
  if (i < n || got.length !== want.length) {
    throw new Error(`body differs at byte ${i}: got ${got.length} bytes, want ${want.length}`);
  }
}

function randomBody(rng: Rng): Uint8Array {
  const size = pick(rng, [0, int(rng, 1, 100), int(rng, 1, 4096), int(rng, 0, 200 * 1024)]);
  const body = new Uint8Array(size);
  for (let i = 0; i < size; i++) body[i] = (rng() * 256) | 0;
  return body;
}

/** Splits into 1..50 feeds; cuts cluster near both ends (head, last chunk, trailers) and pair up into 1-byte feeds. */
function split(rng: Rng, wire: Uint8Array): Uint8Array[] {
  if (rng() < 0.05 && wire.length < 3000) return Array.from(wire, (_, i) => wire.subarray(i, i + 1));
  const want = int(rng, 1, 50) - 1;
  const cuts = new Set<number>();
  const span = Math.min(wire.length - 1, 600);
  for (let tries = 0; cuts.size < want && tries < 200 && wire.length > 1; tries++) {
    const where = rng();
    const c = where < 0.4 ? int(rng, 1, wire.length - 1) : where < 0.7 ? int(rng, 1, span) : wire.length - int(rng, 1, span);
    cuts.add(c);
    if (rng() < 0.3 && c + 1 < wire.length) cuts.add(c + 1);
  }
  const at = [0, ...[...cuts].sort((a, b) => a - b), wire.length];
  return at.slice(1).map((end, i) => wire.subarray(at[i], end));
}

type Kind = "content-length" | "chunked" | "close" | "head" | "204" | "304";
interface Response {
  wire: Uint8Array;
  noBody: boolean;
  status: number;
  reason: string;
  rawHeaders: string[];
  body: Uint8Array;
  contentLength: number;
  chunked: boolean;
  close: boolean;
}

function chunkedBody(rng: Rng, body: Uint8Array): Uint8Array {
  const ext = () => (rng() < 0.3 ? pick(rng, [";foo", ";a=b", ';name="quoted; value"', " ;x=1;y"]) : "");
  const maxChunk = pick(rng, [1, 7, 1000, 16384, 300000]);
  const parts: (string | Uint8Array)[] = [];
  for (let i = 0; i < body.length; ) {
    const n = Math.min(body.length - i, int(rng, 1, maxChunk));
    const size = rng() < 0.3 ? n.toString(16).toUpperCase() : rng() < 0.1 ? "00" + n.toString(16) : n.toString(16);
    parts.push(`${size}${ext()}\r\n`, body.subarray(i, i + n), "\r\n");
    i += n;
  }
  parts.push(`0${ext()}\r\n`);
  if (rng() < 0.4) parts.push("X-Checksum: abc\r\ngrpc-status: 0\r\n");
  return concat([...parts, "\r\n"]);
}

function randomResponse(rng: Rng, kind: Kind, interim = 0): Response {
  const status = kind === "204" ? 204 : kind === "304" ? 304 : pick(rng, [200, 201, 206, 404, 500]);
  const reason = pick(rng, ["OK", "", "Not Found", "Some Reason With Spaces"]);
  const headers: [string, string][] = [];
  const names = ["X-Request-Id", "content-type", "ETag", "x-MiXeD-Case", "Cache-Control", "vary"];
  for (let n = int(rng, 0, 6); n > 0; n--) headers.push([pick(rng, names), pick(rng, ["1", "a b;c=d, e", "\"q\"", ""])]);
  if (rng() < 0.5) headers.push(["Set-Cookie", "a=1; Path=/"], ["set-cookie", "b=2; HttpOnly"]);
  const connClose = rng() < 0.2;
  if (connClose) headers.push(["Connection", "close"]);
  const body = kind === "content-length" || kind === "chunked" || kind === "close" ? randomBody(rng) : new Uint8Array(0);
  let contentLength = -1;
  const chunked = kind === "chunked" || (kind === "head" && rng() < 0.3);
  const at = () => int(rng, 0, headers.length);
  if (chunked) {
    if (rng() < 0.3) headers.splice(at(), 0, ["Content-Length", "12345"]); // Transfer-Encoding overrides it
    headers.splice(at(), 0, [pick(rng, ["Transfer-Encoding", "transfer-encoding"]), pick(rng, ["chunked", "gzip, chunked"])]);
  } else if (kind === "content-length" || kind === "head" || ((kind === "204" || kind === "304") && rng() < 0.5)) {
    contentLength = kind === "content-length" ? body.length : int(rng, 1, 99999);
    headers.splice(at(), 0, [pick(rng, ["Content-Length", "content-length"]), String(contentLength)]);
    if (rng() < 0.2) headers.splice(at(), 0, ["Content-Length", String(contentLength)]); // same value twice is fine
  }
  const lines = headers.map(([n, v]) => `${n}:${pick(rng, ["", " ", "  ", "\t"])}${v}${pick(rng, ["", " "])}\r\n`);
  const parts: (string | Uint8Array)[] = [];
  for (let i = 0; i < interim; i++) {
    parts.push(pick(rng, ["HTTP/1.1 100 Continue\r\n\r\n", "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\nLink: </b.js>\r\n\r\n", "HTTP/1.1 102\r\n\r\n"]));
  }
  parts.push(`HTTP/1.1 ${status}${reason ? " " + reason : ""}\r\n`, ...lines, "\r\n");
  if (kind === "chunked") parts.push(chunkedBody(rng, body));
  else if (kind === "content-length" || kind === "close") parts.push(body);
  return {
    wire: concat(parts), noBody: kind === "head", status, reason, body, contentLength: chunked ? -1 : contentLength, chunked,
    rawHeaders: headers.flat(), close: connClose || kind === "close",
  };
}

class Recorder implements ResponseSink {
  heads: ResponseHead[] = [];
  chunks: Uint8Array[] = [];
  ends = 0;
  onHead(head: ResponseHead): void {
    if (this.heads.length || this.ends) throw new Error("onHead called twice or after onEnd");
    this.heads.push(head);
  }
  onBody(chunk: Uint8Array): boolean {
    if (!this.heads.length || this.ends) throw new Error("onBody outside head..end");
    this.chunks.push(chunk.slice());
    return true;
  }
  onEnd(last?: Uint8Array): void {
    if (!this.heads.length) throw new Error("onEnd before onHead");
    if (last) this.chunks.push(last.slice());
    this.ends++;
  }
  get body(): Uint8Array {
    return concat(this.chunks);
  }
}

/** Feeds the pieces; whenever a response is done, arms the parser for the next (pipelining). */
function drive(pieces: Uint8Array[], noBody: (i: number) => boolean = () => false) {
  const parser = new ResponseParser();
  const recs: Recorder[] = [];
  const next = () => (recs.push(new Recorder()), parser.expect(recs.at(-1)!, noBody(recs.length - 1)));
  next();
  for (let piece of pieces) {
    while (piece.length > 0) {
      if (parser.done) next();
      const n = parser.feed(piece);
      if (n < piece.length && !parser.done) throw new Error(`feed consumed ${n} of ${piece.length} before the end`);
      piece = piece.subarray(n);
    }
  }
  return { parser, recs };
}

function checkResponse(rec: Recorder, want: Response): void {
  expect(rec.heads.length).toBe(1);
  const { status, reason, rawHeaders, contentLength, chunked, close } = rec.heads[0];
  expect({ status, reason, rawHeaders, contentLength, chunked, close }).toEqual({
    status: want.status, reason: want.reason, rawHeaders: want.rawHeaders,
    contentLength: want.contentLength, chunked: want.chunked, close: want.close,
  });
  assertSameBytes(rec.body, want.body);
  expect(rec.ends).toBe(1);
}

function checkOne(rng: Rng, kind: Kind, interim = 0): void {
  const want = randomResponse(rng, kind, interim);
  const { parser, recs } = drive(split(rng, want.wire), () => want.noBody);
  expect(parser.untilClose).toBe(kind === "close");
  if (kind === "close") expect(parser.eof()).toBe(true);
  expect(parser.done).toBe(true);
  expect(recs.length).toBe(1);
  checkResponse(recs[0], want);
}

function expectParseError(wire: Uint8Array, rng: Rng): void {
  let error: unknown;
  try {
    drive(split(rng, wire));
  } catch (e) {
    error = e;
  }
  if (!(error instanceof ParseError)) throw new Error(`expected ParseError, got ${error}`);
}

describe("upstream response parser", () => {
  it("decodes any Content-Length body however the bytes are split", () => forAll(runs, (rng) => checkOne(rng, "content-length")), timeout);

  it("decodes any chunked body (extensions, trailers) however the bytes are split", () => forAll(runs, (rng) => checkOne(rng, "chunked")), timeout);

  it("reads a close-delimited body until eof() however the bytes are split", () => forAll(runs, (rng) => checkOne(rng, "close")), timeout);

  it("skips 1xx interim responses (100, 102, 103 with headers) before the final one", () =>
    forAll(runs, (rng) => checkOne(rng, pick(rng, ["content-length", "chunked", "close", "head", "204"] as const), int(rng, 1, 3))), timeout);

  it("parses pipelined keep-alive responses on one parser and reports the bytes each feed consumed", () =>
    forAll(runs, (rng) => {
      const kinds: Kind[] = Array.from({ length: int(rng, 2, 4) }, () => pick(rng, ["content-length", "chunked", "head", "204", "304"] as const));
      if (rng() < 0.3) kinds.push("close");
      const resps = kinds.map((k) => randomResponse(rng, k, rng() < 0.2 ? 1 : 0));
      const wire = concat(resps.map((r) => r.wire));
      const { parser, recs } = drive(split(rng, wire), (i) => resps[i].noBody);
      if (kinds.at(-1) === "close") expect(parser.eof()).toBe(true);
      expect(parser.done).toBe(true);
      expect(recs.length).toBe(resps.length);
      recs.forEach((rec, i) => checkResponse(rec, resps[i]));
      // One feed holding everything: the first feed stops exactly at the end of the first response.
      const single = new ResponseParser();
      single.expect(new Recorder(), resps[0].noBody);
      expect(single.feed(wire)).toBe(resps[0].wire.length);
      expect(single.done).toBe(true);
    }), timeout);

  it("ends HEAD, 204 and 304 responses right after the head even with Content-Length", () =>
    forAll(runs, (rng) => {
      const first = randomResponse(rng, pick(rng, ["head", "204", "304"] as const));
      const second = randomResponse(rng, "content-length");
      const { recs } = drive(split(rng, concat([first.wire, second.wire])), (i) => i === 0 && first.noBody);
      expect(recs.length).toBe(2);
      checkResponse(recs[0], first);
      checkResponse(recs[1], second);
    }), timeout);

  it("takes a bare LF as a head line end (RFC 9112 §2.2) and hands out the head with CRLF, however the bytes are split", () =>
    forAll(runs, (rng) => {
      const want = randomResponse(rng, pick(rng, ["content-length", "chunked", "close"] as const));
      const headEnd = Buffer.from(want.wire).indexOf("\r\n\r\n") + 4;
      const head = new TextDecoder("latin1").decode(want.wire.subarray(0, headEnd));
      const lf = head.replace(/\r\n/g, () => (rng() < 0.6 ? "\n" : "\r\n"));
      const wire = concat([lf, want.wire.subarray(headEnd)]);
      const { parser, recs } = drive(split(rng, wire));
      if (want.close) parser.eof();
      checkResponse(recs[0], want);
      expect(recs[0].heads[0].text.replace(/\r\n/g, "")).not.toMatch(/[\r\n]/);
    }), timeout);

  const malformed: [string, (rng: Rng) => string][] = [
    ["bad status line", (rng) => pick(rng, ["HTTP/1.1 20 OK", "HTTP/2 200 OK", "HTTP/1.1 200OK", "http/1.1 200 OK", "ICY 200 OK", "HTTP/1.1 2000 OK", "<html>"]) + "\r\nContent-Length: 0\r\n\r\n"],
    ["header line without colon", () => "HTTP/1.1 200 OK\r\nX-Foo bar\r\nContent-Length: 0\r\n\r\n"],
    ["header line with empty name", () => "HTTP/1.1 200 OK\r\n: bar\r\nContent-Length: 0\r\n\r\n"],
    ["obs-fold header continuation", (rng) => `HTTP/1.1 200 OK\r\nX-Foo: a\r\n${pick(rng, [" ", "\t"])}b: c\r\nContent-Length: 0\r\n\r\n`],
    ["invalid chunk size", (rng) => `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n${pick(rng, ["zz", "-1", "", "0x10", "+5", "1234567890abc", "5 5"])}\r\nhello\r\n0\r\n\r\n`],
    ["bare LF in a chunk size line", (rng) => `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n${pick(rng, ["5\nhello\r\n0\r\n\r\n", "5\r\nhello\r\n0\n\r\n", "5;ext\nhello\r\n0\r\n\r\n"])}`],
    ["chunk data not followed by CRLF", () => "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloX\r\n0\r\n\r\n"],
    ["conflicting Content-Length values", (rng) => `HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX: y\r\ncontent-length: ${pick(rng, ["6", "0", "50"])}\r\n\r\nhello`],
    ["non-numeric Content-Length", (rng) => `HTTP/1.1 200 OK\r\nContent-Length: ${pick(rng, ["abc", "-1", "5, 5", "0x5", ""])}\r\n\r\nhello`],
    ["101 Switching Protocols", () => "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"],
    ["head larger than 64 KiB", (rng) => {
      const lines: string[] = [];
      for (let size = 0; size <= 64 * 1024; size += lines.at(-1)!.length) lines.push(`X-Big-${lines.length}: ${"v".repeat(int(rng, 1, 1000))}\r\n`);
      return `HTTP/1.1 200 OK\r\n${lines.join("")}Content-Length: 2\r\n\r\nhi`;
    }],
  ];
  for (const [what, gen] of malformed) {
    it(`rejects ${what} with ParseError however the bytes are split`, () => forAll(Math.ceil(runs / 4), (rng) => expectParseError(enc.encode(gen(rng)), rng)));
  }

  it("after a 101 to an upgrade request, hands out the head and leaves what follows it unread, however the bytes are split", () =>
    forAll(runs, (rng) => {
      const after = "\x81\x05hello".repeat(int(rng, 0, 3));
      const wire = Buffer.from(`HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n${after}`, "latin1");
      const parser = new ResponseParser();
      const rec = new Recorder();
      parser.expect(rec, false, true);
      let rest = "";
      for (const piece of split(rng, wire)) {
        const n = parser.switched ? 0 : parser.feed(piece);
        rest += Buffer.from(piece.subarray(n)).toString("latin1");
      }
      expect(parser.switched).toBe(true);
      expect(rec.heads.map((h) => h.status)).toEqual([101]);
      expect(rec.ends).toBe(0);
      expect(rest).toBe(after);
    }), timeout);

  it("accepts a head just under 64 KiB", () => {
    const head = `HTTP/1.1 200 OK\r\nX-Big: ${"v".repeat(63 * 1024)}\r\nContent-Length: 2\r\n\r\nhi`;
    const { parser, recs } = drive(split(mulberry32(baseSeed), enc.encode(head)));
    expect(parser.done).toBe(true);
    expect(new TextDecoder().decode(recs[0].body)).toBe("hi");
  });

  it("eof() reports truncation of a Content-Length or chunked response, cut anywhere", () =>
    forAll(runs, (rng) => {
      const want = randomResponse(rng, pick(rng, ["content-length", "chunked"] as const));
      const cut = rng() < 0.5 ? int(rng, 0, want.wire.length - 1) : want.wire.length - int(rng, 1, Math.min(want.wire.length, 8));
      const { parser, recs } = drive(split(rng, want.wire.subarray(0, cut)));
      expect(parser.eof()).toBe(false);
      expect(parser.done).toBe(false);
      expect(recs[0].ends).toBe(0);
      const got = recs[0].body;
      assertSameBytes(got, want.body.subarray(0, got.length));
    }), timeout);

  it("eof() completes a close-delimited body after any amount of it, but not a truncated head", () =>
    forAll(runs, (rng) => {
      const want = randomResponse(rng, "close");
      const headLen = want.wire.length - want.body.length;
      const cut = int(rng, Math.max(0, headLen - 10), want.wire.length);
      const { parser, recs } = drive(split(rng, want.wire.subarray(0, cut)));
      expect(parser.eof()).toBe(cut >= headLen);
      expect(recs[0].ends).toBe(cut >= headLen ? 1 : 0);
      assertSameBytes(recs[0].body, want.body.subarray(0, Math.max(0, cut - headLen)));
    }), timeout);
});
