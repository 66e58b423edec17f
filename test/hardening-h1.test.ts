import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import net from "node:net";
import { startTestKedge, type TestKedge } from "./helpers/kedge.ts";
import { startUpstream, type Upstream } from "./helpers/upstream.ts";
import { until } from "./helpers/wait.ts";

// Hostile HTTP/1.1 input, each case sent raw over TCP: kedge must answer with the right status,
// forward nothing ambiguous, keep every other client's requests flowing and stay up.

let upstream: Upstream;
let admin: Upstream;
let kedge: TestKedge;

beforeAll(async () => {
  upstream = await startUpstream("app");
  admin = await startUpstream("admin");
  kedge = await startTestKedge({
    server: {
      bind_address: "127.0.0.1", http_port: 0, admin_port: 0, log_level: "error",
      max_request_header_bytes: 4096, max_request_headers: 50, max_request_uri_bytes: 1024,
      max_request_body_bytes: 100_000, request_header_timeout: "1s", max_connections: 40,
    },
    http: {
      backends: [
        { name: "app", static: { addresses: [`127.0.0.1:${upstream.port}`] } },
        { name: "admin", static: { addresses: [`127.0.0.1:${admin.port}`] } },
      ],
      routes: [
        { backend_name: "admin", path_rules: ["/admin/*"] },
        { backend_name: "app", path_rules: ["/small/*"], max_request_body_bytes: 10 },
        { backend_name: "app" },
      ],
    },
  });
});

afterAll(async () => {
  await kedge?.shutdown();
  await upstream?.close();
  await admin?.close();
});

/** Sends raw bytes on a fresh connection; resolves with everything kedge wrote until it closed (or 3 s). */
function raw(bytes: string | Buffer, waitMs = 3000): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(kedge.ports.http, "127.0.0.1", () => socket.write(bytes));
    let got = "";
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(`${got}<still open>`);
    }, waitMs);
    socket.on("data", (d) => {
      got += d.toString("latin1");
    });
    socket.on("close", () => {
      clearTimeout(timer);
      resolve(got);
    });
    socket.on("error", () => {});
  });
}

const statusOf = (answer: string) => Number(/^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1] ?? 0);

/** The JSON body of a raw answer, de-chunked when it came chunked. */
function jsonOf(answer: string): any {
  const split = answer.indexOf("\r\n\r\n");
  let body = answer.slice(split + 4);
  if (/transfer-encoding: chunked/i.test(answer.slice(0, split))) {
    let out = "";
    for (;;) {
      const lineEnd = body.indexOf("\r\n");
      const size = parseInt(body.slice(0, lineEnd), 16);
      if (!size) break;
      out += body.slice(lineEnd + 2, lineEnd + 2 + size);
      body = body.slice(lineEnd + 2 + size + 2);
    }
    body = out;
  }
  return JSON.parse(body);
}

/** Well-formed requests from another client while `attack` runs: all must succeed. */
async function whileOthersProxy<T>(attack: () => Promise<T>): Promise<T> {
  let stop = false;
  let ok = 0;
  let failed = 0;
  const others = (async () => {
    while (!stop) {
      const res = await fetch(`http://127.0.0.1:${kedge.ports.http}/bystander`).catch(() => undefined);
      if (res?.status === 200) ok++;
      else failed++;
      await res?.arrayBuffer();
    }
  })();
  const result = await attack();
  stop = true;
  await others;
  expect(failed).toBe(0);
  expect(ok).toBeGreaterThan(0);
  return result;
}

const smuggling: Array<[string, string, number]> = [
  ["Content-Length with Transfer-Encoding", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n", 400],
  ["two different Content-Lengths", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400],
  ["two equal Content-Lengths", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", 400],
  ["a Content-Length list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello", 400],
  ["a signed Content-Length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello", 400],
  ["a bad chunk size", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", 400],
  ["an overflowing chunk size", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff1\r\nhello\r\n0\r\n\r\n", 400],
  ["a chunk size ended by a bare LF", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\n0\n\n", 400],
  ["Transfer-Encoding other than chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501],
  ["Transfer-Encoding chunked twice", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400],
  ["Transfer-Encoding in HTTP/1.0", "POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400],
  ["obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", 400],
  ["bare LF line ends", "GET / HTTP/1.1\nHost: a\nX-A: b\n\n", 400],
  ["a space in a header name", "GET / HTTP/1.1\r\nHost: a\r\nX A: b\r\n\r\n", 400],
  ["a space before the colon", "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400],
  ["a NUL in a header value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\0c\r\n\r\n", 400],
  ["two Host headers", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400],
  ["no Host in HTTP/1.1", "GET / HTTP/1.1\r\n\r\n", 400],
];

describe("HTTP/1.1 request smuggling", () => {
  for (const [name, bytes, status] of smuggling) {
    it(`refuses ${name} with ${status} and forwards nothing`, async () => {
      const seen = upstream.seen.length + admin.seen.length;
      const answer = await whileOthersProxy(() => raw(bytes));
      expect(statusOf(answer)).toBe(status);
      // Exactly one answer: nothing after the refused head was read as a second request.
      expect(answer.match(/HTTP\/1\.1 \d{3}/g)).toHaveLength(1);
      const forwarded = [...upstream.seen, ...admin.seen].slice(seen).filter((s) => s.url !== "/bystander");
      expect(forwarded).toEqual([]);
    });
  }
});

describe("limits", () => {
  it("431 for a head over max_request_header_bytes, and for more than max_request_headers fields", async () => {
    const big = await raw(`GET / HTTP/1.1\r\nHost: a\r\nX-Big: ${"a".repeat(5000)}\r\n\r\n`);
    expect(statusOf(big)).toBe(431);
    const many = await raw(`GET / HTTP/1.1\r\nHost: a\r\n${Array.from({ length: 60 }, (_, i) => `X-${i}: v\r\n`).join("")}\r\n`);
    expect(statusOf(many)).toBe(431);
    expect(many).toContain("more than 50 request header fields");
  });

  it("414 for a request target over max_request_uri_bytes, within and beyond the head limit", async () => {
    expect(statusOf(await raw(`GET /${"a".repeat(2000)} HTTP/1.1\r\nHost: a\r\n\r\n`))).toBe(414);
    expect(statusOf(await raw(`GET /${"a".repeat(6000)} HTTP/1.1\r\nHost: a\r\n\r\n`))).toBe(414);
  });

  it("413 for a body over the route's limit (Content-Length and chunked), the server's default elsewhere", async () => {
    const seen = upstream.seen.length;
    const declared = await fetch(`http://127.0.0.1:${kedge.ports.http}/small/x`, { method: "POST", body: "x".repeat(11) });
    expect(declared.status).toBe(413);
    expect(declared.headers.get("x-kedge-error")).toBe("request body larger than 10 bytes");
    const chunked = await raw("POST /small/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nhello \r\n6\r\nworld!\r\n0\r\n\r\n");
    expect(statusOf(chunked)).toBe(413);
    expect(chunked).not.toContain("<still open>"); // closed after the answer
    expect((await fetch(`http://127.0.0.1:${kedge.ports.http}/small/x`, { method: "POST", body: "x".repeat(10) })).status).toBe(200);
    expect((await fetch(`http://127.0.0.1:${kedge.ports.http}/other`, { method: "POST", body: "x".repeat(100_001) })).status).toBe(413);
    expect((await fetch(`http://127.0.0.1:${kedge.ports.http}/other`, { method: "POST", body: "x".repeat(100_000) })).status).toBe(200);
    expect(upstream.seen.slice(seen).map((s) => s.bodyBytes)).toEqual([10, 100_000]);
  });

  it("408 and close for a connection that does not finish its request head in time (slowloris)", async () => {
    const answer = await whileOthersProxy(() => raw("GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ", 8000));
    expect(statusOf(answer)).toBe(408);
  });

  it("refuses connections beyond max_connections (503) and serves again when they go", async () => {
    // 45 idle connections against a limit of 40: at least 5 are refused with 503; the admitted
    // ones are closed by the head deadline (408). None is left open.
    const answers = await Promise.all(Array.from({ length: 45 }, () => raw("", 5000)));
    const statuses = answers.map(statusOf);
    expect(statuses.filter((s) => s === 503).length).toBeGreaterThanOrEqual(5);
    expect(answers.find((a) => statusOf(a) === 503)).toContain("too many connections");
    expect(statuses.every((s) => s === 503 || s === 408)).toBe(true);
    await until("kedge serves again", async () => (await fetch(`http://127.0.0.1:${kedge.ports.http}/again`).catch(() => undefined))?.status === 200);
    // Both refusals are counted for operators.
    const metrics = await (await fetch(`http://127.0.0.1:${kedge.ports.admin}/metrics`)).text();
    const refused = (reason: string) => Number(new RegExp(`^kedge_connections_refused_total\\{reason="${reason}"\\} (\\d+)$`, "m").exec(metrics)?.[1] ?? -1);
    expect(refused("max_connections")).toBeGreaterThanOrEqual(5);
    expect(refused("header_timeout")).toBeGreaterThanOrEqual(1);
  });
});

describe("path normalisation for routing", () => {
  const get = (path: string) => raw(`GET ${path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n`);

  it("routes dot segments, encoded dots and repeated slashes to the path they spell, and forwards that path", async () => {
    for (const path of ["/public/../admin/x", "/public/%2e%2e/admin/x", "//admin/x", "/./admin/x", "/%61dmin/x", "/admin//x/."]) {
      const answer = await get(path);
      expect(statusOf(answer)).toBe(200);
      const body = jsonOf(answer);
      expect(body.upstream).toBe("admin");
      expect(body.url).toMatch(/^\/admin\/x\/?$/);
    }
  });

  it("refuses encoded slashes (400) and malformed escapes (400)", async () => {
    const slash = await get("/public%2F..%2Fadmin/x");
    expect(statusOf(slash)).toBe(400);
    expect(slash).toContain("encoded slash");
    expect(statusOf(await get("/a%zz"))).toBe(400);
  });

  it("refuses backslashes and encoded NUL in the path (400): backends may take them for a separator or the path's end", async () => {
    const backslash = await get("/public\\..\\admin/x");
    expect(statusOf(backslash)).toBe(400);
    expect(backslash).toContain("x-kedge-error: backslash in the path");
    const nul = await get("/admin/x%00.public");
    expect(statusOf(nul)).toBe(400);
    expect(nul).toContain("x-kedge-error: NUL (%00) in the path");
    expect(statusOf(await get("/admin/x?q=a\\b%00"))).toBe(200); // the query string is the backend's business
  });

  it("keeps the query string as it was", async () => {
    const answer = await get("/x/../y?a=%2e%2e&b=//");
    expect(jsonOf(answer).url).toBe("/y?a=%2e%2e&b=//");
  });

  it("takes the authority from an absolute-form target over the Host header (RFC 9112 §3.2.2)", async () => {
    const answer = await raw(`GET http://real.example/admin/x HTTP/1.1\r\nHost: decoy.example\r\nConnection: close\r\n\r\n`);
    const body = jsonOf(answer);
    expect(body.upstream).toBe("admin");
    expect(body.headers.host).toBe("real.example");
  });
});
