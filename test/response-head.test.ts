import { describe, expect, it } from "bun:test";
import { mulberry32 } from "./helpers/rng";
import { headWriter } from "../src/net/head-writer";
import { downstreamHeadLines, downstreamHeaders, writeFieldLines, type HeadLines } from "../src/net/hop-headers";
import { ParseError, parseResponseHead } from "../src/upstream/response-head";

const hopByHop = ["connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "proxy-authenticate"];
const kedgeTags = ["x-kedge-backend-name", "x-kedge-request-id"];
// Names one letter or one length away from the ones that matter, so a sloppy compare shows.
const others = ["content-type", "date", "server", "set-cookie", "x-kedge-request-ix", "tex", "t", "connectio", "content-lengthy", "upgrades", "via", "x-trace"];

/** The field lines as they are written to an HTTP/1.1 client. */
function linesOf(head: HeadLines): string {
  writeFieldLines(headWriter.start(), head);
  return headWriter.toString();
}

function mixCase(name: string, rnd: () => number): string {
  return [...name].map((c) => (rnd() < 0.5 ? c.toUpperCase() : c)).join("");
}


describe("backend response heads passed to HTTP/1.1 clients as text", () => {
  it("copies every field line but the hop-by-hop ones (any case), and kedge's tags only when not retagging", () => {
    for (let seed = 1; seed <= 300; seed++) {
      const rnd = mulberry32(seed);
      const pool = [...hopByHop.filter((n) => n !== "transfer-encoding"), ...kedgeTags, ...others];
      const fields: Array<[string, string]> = [];
      for (let i = 0, n = Math.floor(rnd() * 12); i < n; i++) {
        const name = pool[Math.floor(rnd() * pool.length)];
        fields.push([mixCase(name, rnd), `v${i}${rnd() < 0.3 ? "  " : ""}`]);
      }
      const head = parseResponseHead(`HTTP/1.1 200 OK\r\n${fields.map(([n, v]) => `${n}:${rnd() < 0.5 ? " " : ""}${v}\r\n`).join("")}`);
      for (const retag of [true, false]) {
        const dropped = new Set(retag ? [...hopByHop, ...kedgeTags] : hopByHop);
        const kept = fields.filter(([n]) => !dropped.has(n.toLowerCase()));
        const got = downstreamHeadLines(head, retag);
        const lines = linesOf(got).split("\r\n").slice(0, -1).map((l) => [l.slice(0, l.indexOf(":")), l.slice(l.indexOf(":") + 1).trim()]);
        expect(lines, `seed ${seed} retag ${retag}`).toEqual(kept.map(([n, v]) => [n, v.trim()]));
        expect(got.hasDate).toBe(fields.some(([n]) => n.toLowerCase() === "date"));
        expect(got.hasRequestId).toBe(!retag && fields.some(([n]) => n.toLowerCase() === "x-kedge-request-id"));
      }
      // The object form (HTTP/2 clients) sees the same fields.
      const asObject = downstreamHeaders(head, true);
      for (const [n] of fields) if (!hopByHop.includes(n.toLowerCase()) && !kedgeTags.includes(n.toLowerCase())) expect(asObject[n.toLowerCase()]).toBeDefined();
    }
  });

  it("drops Content-Length when Transfer-Encoding overrides it (RFC 9112 §6.3)", () => {
    const head = parseResponseHead("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\nTransfer-Encoding: chunked\r\nconnection: keep-alive\r\nContent-Length: 5\r\nX-B: 2\r\n");
    expect(head.chunked).toBe(true);
    expect(head.contentLength).toBe(-1);
    const out = downstreamHeadLines(head);
    expect(linesOf(out)).toBe("X-A: 1\r\nX-B: 2\r\n");
    expect(out.hasLength).toBe(false);
  });

  it("reads framing and connection facts from the named fields only", () => {
    const head = parseResponseHead("HTTP/1.0 204 No Content\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\nX-Connection: close\r\n");
    expect(head.status).toBe(204);
    expect(head.reason).toBe("No Content");
    expect(head.close).toBe(false);
    expect(head.contentLength).toBe(0);
    expect(head.rawHeaders).toEqual(["Connection", "Keep-Alive", "Content-Length", "0", "X-Connection", "close"]);
    expect(head.names).toEqual(["connection", "content-length", "x-connection"]);
    expect(parseResponseHead("HTTP/1.1 200 OK\r\nconnection: upgrade, close\r\n").close).toBe(true);
    expect(parseResponseHead("HTTP/1.1 200\r\n").reason).toBe("");
  });

  it("refuses field lines a client could split differently: bare CR or LF, no name, folded", () => {
    for (const bad of ["X-A: 1\nX-B: 2\r\n", "X-A: 1\rX-B: 2\r\n", ": v\r\n", " X-A: 1\r\n", "X-A 1\r\n"]) {
      expect(() => parseResponseHead(`HTTP/1.1 200 OK\r\n${bad}`), JSON.stringify(bad)).toThrow(ParseError);
    }
  });
});
