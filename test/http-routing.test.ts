import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { startTestKedge, plainServer, type TestKedge } from "./helpers/kedge.ts";
import { rawHttp as raw } from "./helpers/raw-http.ts";
import { startUpstream, type Upstream } from "./helpers/upstream.ts";


let a: Upstream, b: Upstream, c: Upstream, kedge: TestKedge;

const backend = (name: string, up: () => Upstream) => ({ name, static: { addresses: [`127.0.0.1:${up().port}`] } });

beforeAll(async () => {
  [a, b, c] = await Promise.all([startUpstream("a"), startUpstream("b"), startUpstream("c")]);
  kedge = await startTestKedge({
    server: plainServer,
    http: {
      backends: [backend("be_a", () => a), backend("be_b", () => b), backend("be_c", () => c)],
      routes: [
        { backend_name: "be_b", host_matcher: "API.example.com", path_rules: ["/v1/*", "/exact"] },
        { backend_name: "be_c", host_matcher: "api.example.com", port_matcher: 8443 },
        { backend_name: "be_c", header_matcher: { "X-Tenant": "blue" } },
        { backend_name: "be_b", host_matcher: "fwd.example.com", proxy_mode: "FORWARD_PROXY" },
        { backend_name: "be_c", host_matcher: "fwd.example.com", proxy_mode: "REVERSE_PROXY" },
        { backend_name: "be_b", host_matcher: "::1" },
        { backend_name: "be_a", host_matcher: "api.example.com" },
      ],
    },
  });
});

afterAll(async () => {
  await kedge.shutdown();
  await Promise.all([a.close(), b.close(), c.close()]);
});

async function via(path: string, headers: Record<string, string>): Promise<{ status: number; upstream: string | null; response: Response }> {
  const response = await fetch(kedge.url(path), { headers });
  await response.arrayBuffer();
  return { status: response.status, upstream: response.headers.get("x-upstream"), response };
}

describe("http routing", () => {
  it("routes by host case-insensitively, ignoring the port, and by path prefix or exact path", async () => {
    expect((await via("/v1/users", { host: "api.EXAMPLE.com" })).upstream).toBe("b");
    expect((await via("/exact", { host: "api.example.com:80" })).upstream).toBe("b");
    expect((await via("/exact/more", { host: "api.example.com" })).upstream).toBe("a");
    expect((await via("/v2/users", { host: "api.example.com" })).upstream).toBe("a");
  });

  it("matches the port, defaulting to 80 for http when the Host has none", async () => {
    expect((await via("/", { host: "api.example.com:8443" })).upstream).toBe("c");
    expect((await via("/", { host: "api.example.com" })).upstream).toBe("a");
  });

  it("matches headers exactly", async () => {
    expect((await via("/", { host: "other.example.com", "x-tenant": "blue" })).upstream).toBe("c");
    const miss = await via("/", { host: "other.example.com", "x-tenant": "green" });
    expect(miss.status).toBe(502);
    expect(miss.response.headers.get("x-kedge-error-type")).toBe("no-route");
  });

  it("matches IPv6 literal hosts", async () => {
    expect((await via("/", { host: "[::1]:80" })).upstream).toBe("b");
  });

  it("tells forward-proxy requests (absolute URI) from reverse-proxy requests", async () => {
    const fwd = await raw(kedge.ports.http, "GET http://fwd.example.com/x?y=1 HTTP/1.1\r\nHost: fwd.example.com\r\nConnection: close\r\n\r\n");
    expect(fwd.headers["x-upstream"]).toBe("b");
    expect(JSON.parse(fwd.body).url).toBe("/x?y=1");
    const rev = await raw(kedge.ports.http, "GET /x HTTP/1.1\r\nHost: fwd.example.com\r\nConnection: close\r\n\r\n");
    expect(rev.headers["x-upstream"]).toBe("c");
  });

  it("uses the absolute URI's authority over the Host header in forward mode", async () => {
    const r = await raw(kedge.ports.http, "GET http://api.example.com:8443/ HTTP/1.1\r\nHost: wrong.example.com\r\nConnection: close\r\n\r\n");
    expect(r.headers["x-upstream"]).toBe("c");
    expect(JSON.parse(r.body).headers.host).toBe("api.example.com:8443");
  });

  it("answers 502 no-route with kedge's error headers when nothing matches", async () => {
    const r = await via("/", { host: "nowhere.example.com" });
    expect(r.status).toBe(502);
    expect(r.response.headers.get("x-kedge-error-type")).toBe("no-route");
    expect(r.response.headers.get("x-kedge-error")).toContain("nowhere.example.com");
  });

  it("answers 400 for a malformed Host", async () => {
    const r = await raw(kedge.ports.http, "GET / HTTP/1.1\r\nHost: api.example.com:99999\r\nConnection: close\r\n\r\n");
    expect(r.status).toBe(400);
    expect(r.headers["x-kedge-error-type"]).toBe("bad-request");
  });
});
