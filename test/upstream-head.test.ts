import { describe, expect, it } from "bun:test";
import { mulberry32 } from "./helpers/rng";
import { buildUpstreamHead, notForwardedUpstream, type UpstreamHeadInput } from "../src/net/hop-headers";
import { parseRequestHead, type RequestHead } from "../src/server/h1/request-head";

const limits = { maxHeaderBytes: 65_536, maxHeaders: 100, maxUriBytes: 8192 };
const names = [...notForwardedUpstream, "accept", "user-agent", "authorization", "cookie", "x-custom", "traceparent", "x-forwarded-fo", "hosts", "te-x"];


/** The head's field lines as sorted lower-case "name: value" strings (order across names is free to change). */
function fieldSet(head: string): string[] {
  return head.split("\r\n").slice(1, -2).map((l) => `${l.slice(0, l.indexOf(":")).toLowerCase()}: ${l.slice(l.indexOf(":") + 1).trim()}`).sort();
}

function input(head: RequestHead, extra: Partial<UpstreamHeadInput> = {}): UpstreamHeadInput {
  return { method: head.method, path: head.target, host: "h.example", headers: head.headers, clientIp: "10.0.0.1", scheme: "http", requestId: { idHead: "ri", idTail: "d" }, bodyLength: 0, forwardLines: head.forwardLines, ...extra };
}

describe("the upstream request head", () => {
  it("copies the client's field lines through and sends the same fields as when rebuilt from the headers", () => {
    let copied = 0;
    for (let seed = 1; seed <= 400; seed++) {
      const rnd = mulberry32(seed);
      const lines = ["Host: h.example"];
      const used = new Set(["host"]);
      for (let i = 0, n = Math.floor(rnd() * 10); i < n; i++) {
        const name = names[Math.floor(rnd() * names.length)];
        // Framing fields are the parser's business (tested elsewhere); a repeat makes the head rebuilt.
        if (name === "host" || name === "content-length" || name === "transfer-encoding") continue;
        if (used.has(name) && rnd() < 0.7) continue;
        used.add(name);
        const spelled = [...name].map((c) => (rnd() < 0.3 ? c.toUpperCase() : c)).join("");
        lines.push(`${spelled}:${rnd() < 0.5 ? " " : ""}v${i}${rnd() < 0.2 ? " " : ""}`);
      }
      const head = parseRequestHead(`GET /p HTTP/1.1\r\n${lines.join("\r\n")}\r\n\r\n`, limits);
      if (head instanceof Error) throw new Error(`seed ${seed}: ${head.message}`);
      const traceparent = rnd() < 0.3 ? "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" : undefined;
      const fast = buildUpstreamHead(input(head, { traceparent }));
      const rebuilt = buildUpstreamHead(input(head, { traceparent, forwardLines: undefined }));
      expect(fieldSet(fast), `seed ${seed}`).toEqual(fieldSet(rebuilt));
      expect(fast.startsWith("GET /p HTTP/1.1\r\nhost: h.example\r\n")).toBe(true);
      if (head.forwardLines) copied++;
    }
    expect(copied).toBeGreaterThan(100); // the copy path itself was exercised
  });

  it("rebuilds the head when a field is repeated, a Connection token names a field, or a credential replaces one", () => {
    const repeated = parseRequestHead("GET / HTTP/1.1\r\nHost: a\r\nAccept: x\r\naccept: y\r\n\r\n", limits) as RequestHead;
    expect(repeated.forwardLines).toBeUndefined();
    expect(buildUpstreamHead(input(repeated))).toContain("accept: x, y\r\n");
    const hop = parseRequestHead("GET / HTTP/1.1\r\nHost: a\r\nConnection: X-Hop\r\nX-Hop: secret\r\nX-Keep: 1\r\n\r\n", limits) as RequestHead;
    const out = buildUpstreamHead(input(hop));
    expect(out).not.toContain("secret");
    expect(out).toContain("x-keep: 1\r\n");
    const cred = parseRequestHead("GET / HTTP/1.1\r\nHost: a\r\nAuthorization: Basic old\r\n\r\n", limits) as RequestHead;
    const set = buildUpstreamHead(input(cred, { set: { authorization: "Bearer new" } }));
    expect(set).not.toContain("old");
    expect(set).toContain("authorization: Bearer new\r\n");
  });

  it("never copies Proxy-Authorization, hop-by-hop fields or the client's X-Forwarded-* lines, in any case", () => {
    const head = parseRequestHead(
      "GET / HTTP/1.1\r\nHOST: a\r\nPROXY-AUTHORIZATION: Bearer kedge\r\nKeep-Alive: 5\r\nTE: trailers\r\nX-Forwarded-Proto: https\r\nX-Kedge-Request-Id: forged\r\nAccept: */*\r\n\r\n",
      limits,
    ) as RequestHead;
    expect(head.forwardLines).toBeDefined();
    const out = buildUpstreamHead(input(head));
    expect(out).not.toMatch(/proxy-authorization|keep-alive|^te:|forged|https/im);
    expect(out).toContain("Accept: */*\r\n");
    expect(out).toContain("x-forwarded-proto: http\r\n");
  });

  it("writes the absolute-form request line for an upstream that is a forward proxy, origin-form otherwise", () => {
    const head = parseRequestHead("GET http://svc.c1.example:8080/p?q=1 HTTP/1.1\r\nHost: svc.c1.example:8080\r\n\r\n", limits) as RequestHead;
    const base = { path: "/p?q=1", host: "svc.c1.example:8080" };
    expect(buildUpstreamHead(input(head, { ...base, absoluteScheme: "http" }))).toStartWith("GET http://svc.c1.example:8080/p?q=1 HTTP/1.1\r\nhost: svc.c1.example:8080\r\n");
    expect(buildUpstreamHead(input(head, base))).toStartWith("GET /p?q=1 HTTP/1.1\r\nhost: svc.c1.example:8080\r\n");
  });
});
