import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import net from "node:net";
import { makeTestPki, type TestPki } from "./helpers/certs.ts";
import { plainServer, startTestKedge, type TestKedge } from "./helpers/kedge.ts";
import { rawHttp } from "./helpers/raw-http.ts";
import { json, startUpstream, type Upstream } from "./helpers/upstream.ts";

let pki: TestPki;
let ups: Upstream[];
let tlsUp: Upstream;
let otherPki: TestPki;
let kedge: TestKedge;
let deadPort: number;
let hangUp: net.Server;


const at = (u: Upstream) => `127.0.0.1:${u.port}`;

beforeAll(async () => {
  pki = makeTestPki();
  otherPki = makeTestPki();
  ups = await Promise.all(["a", "b", "c"].map((n) => startUpstream(n)));
  tlsUp = await startUpstream("tls", { tls: { cert: pki.serverCert, key: pki.serverKey, ca: pki.ca, requestCert: true } });
  // tcpmux's port: nothing listens there, and unlike a freed ephemeral port no later listener can take it.
  deadPort = 1;
  // Accepts, reads the request, and closes without a word.
  hangUp = net.createServer((s) => s.once("data", () => s.destroy()));
  await new Promise<void>((r) => hangUp.listen(0, "127.0.0.1", r));
  const hangUpAt = `127.0.0.1:${(hangUp.address() as net.AddressInfo).port}`;
  const dead = `127.0.0.1:${deadPort}`;
  kedge = await startTestKedge({
    server: plainServer,
    http: {
      backends: [
        { name: "rr", static: { addresses: ups.map(at) } },
        { name: "lor", balancer: "LEAST_OUTSTANDING_REQUESTS", static: { addresses: [at(ups[0]), at(ups[1])] } },
        { name: "half_dead", static: { addresses: [dead, at(ups[0])] }, failure_backoff: "30s" },
        { name: "all_dead", static: { addresses: [dead] } },
        { name: "hang_up", static: { addresses: [hangUpAt] } },
        { name: "unresolvable", host: { dns_name: "no-such-host.invalid", port: 80 } },
        { name: "localhost", host: { dns_name: "localhost", port: ups[2].port } },
        { name: "slow", static: { addresses: [at(ups[0])] }, timeouts: { response_header: "1s", idle: "1s" } },
        { name: "slow_stamped", static: { addresses: [at(ups[0])] }, timeouts: { response_header: "2s" } },
        { name: "mtls", static: { addresses: [at(tlsUp)] }, security: { ca_files: [pki.caFile], server_name: "localhost", client_cert_file: pki.clientCertFile, client_key_file: pki.clientKeyFile } },
        { name: "wrong_ca", static: { addresses: [at(tlsUp)] }, security: { ca_files: [otherPki.caFile], server_name: "localhost", client_cert_file: pki.clientCertFile, client_key_file: pki.clientKeyFile } },
      ],
      routes: ["rr", "lor", "half_dead", "all_dead", "hang_up", "unresolvable", "localhost", "slow", "slow_stamped", "mtls", "wrong_ca"].map((b) => ({ backend_name: b, host_matcher: `${b.replace("_", "-")}.test` })),
      adhoc_rules: [
        { dns_name_matcher: "*.adhoc.test", dns_name_replace: { pattern: "^.*$", substitution: "127.0.0.1" }, port: { allowed: [ups[1].port] } },
      ],
    },
  });
});

afterAll(async () => {
  await kedge.shutdown();
  await Promise.all([...ups, tlsUp].map((u) => u.close()));
  hangUp.close();
});

async function get(host: string, path = "/"): Promise<Response> {
  return fetch(kedge.url(path), { headers: { host } });
}

describe("backends", () => {
  it("balances round robin evenly across endpoints", async () => {
    const counts: Record<string, number> = {};
    for (let i = 0; i < 300; i++) {
      const res = await get("rr.test");
      await res.arrayBuffer();
      counts[res.headers.get("x-upstream")!] = (counts[res.headers.get("x-upstream")!] ?? 0) + 1;
    }
    expect(counts).toEqual({ a: 100, b: 100, c: 100 });
  });

  it("sends to the endpoint with the fewest requests in flight", async () => {
    // One request held open on an endpoint: every quick request meanwhile must go to the other
    // one (round robin would send half of them to the busy endpoint).
    const held = await get("lor.test", "/slow-chunks?n=2&ms=500");
    const busy = held.headers.get("x-upstream");
    const quick: string[] = [];
    for (let i = 0; i < 10; i++) {
      const res = await get("lor.test");
      await res.arrayBuffer();
      quick.push(res.headers.get("x-upstream")!);
    }
    await held.text();
    expect(new Set(quick).size).toBe(1);
    expect(quick[0]).not.toBe(busy);
  });

  it("fails over to another endpoint when a dial fails, and skips the dead one afterwards", async () => {
    for (let i = 0; i < 10; i++) {
      const res = await get("half-dead.test");
      expect(res.status).toBe(200);
      expect(res.headers.get("x-upstream")).toBe("a");
      await res.arrayBuffer();
    }
    const view = kedge.runtime().httpBackends.get("half_dead")!.view();
    expect(view.find((e) => e.address.endsWith(`:${deadPort}`))!.healthy).toBe(false);
  });

  it("answers 502 no-connection-to-all-resolved-addresses when every endpoint refuses", async () => {
    const res = await get("all-dead.test");
    expect(res.status).toBe(502);
    expect(res.headers.get("x-kedge-error-type")).toBe("no-connection-to-all-resolved-addresses");
    expect(await res.text()).toContain("all_dead");
  });

  it("answers 502 backend-transport-closed when the backend closes before answering", async () => {
    const res = await get("hang-up.test");
    expect(res.status).toBe(502);
    expect(res.headers.get("x-kedge-error-type")).toBe("backend-transport-closed");
  });

  it("answers 503 no-resolution-available when the name does not resolve", async () => {
    const res = await get("unresolvable.test");
    expect(res.status).toBe(503);
    expect(res.headers.get("x-kedge-error-type")).toBe("no-resolution-available");
  });

  it("resolves host names through the system resolver (localhost)", async () => {
    const res = await get("localhost.test");
    expect(res.headers.get("x-upstream")).toBe("c");
    await res.arrayBuffer();
  });

  it("answers 504 backend-timeout when the backend sends no response head in time", async () => {
    const res = await get("slow.test", "/hang");
    expect(res.status).toBe(504);
    expect(res.headers.get("x-kedge-error-type")).toBe("backend-timeout");
  });

  it("answers 504 once a response_header wait timed from a sweep (2s and longer) is over, not before", async () => {
    const started = performance.now();
    const res = await get("slow-stamped.test", "/hang");
    expect(res.status).toBe(504);
    expect(res.headers.get("x-kedge-error-type")).toBe("backend-timeout");
    expect(performance.now() - started).toBeGreaterThanOrEqual(2000);
  });

  it("cuts the response short when the backend goes silent mid-body past the idle timeout", async () => {
    const r = await rawHttp(kedge.ports.http, "GET /slow-chunks?n=3&ms=2500 HTTP/1.1\r\nHost: slow.test\r\nConnection: close\r\n\r\n");
    expect(r.status).toBe(200);
    expect(r.text).toContain("chunk 0");
    expect(r.text).not.toContain("chunk 1");
    expect(r.text.endsWith("0\r\n\r\n")).toBe(false); // no terminating chunk: the client knows it is truncated
  });

  it("cuts the client's response short when the backend dies mid-body, and keeps serving", async () => {
    const r = await rawHttp(kedge.ports.http, "GET /die HTTP/1.1\r\nHost: rr.test\r\nConnection: close\r\n\r\n");
    expect(r.status).toBe(200);
    expect(r.headers["content-length"]).toBe("1000");
    expect(r.body.length).toBeLessThan(1000);
    expect((await get("rr.test")).status).toBe(200);
  });

  it("speaks TLS to the backend with a CA, SNI and a client certificate", async () => {
    const res = await get("mtls.test", "/over-tls");
    expect(res.status).toBe(200);
    expect((await json(res)).upstream).toBe("tls");
  });

  it("refuses a backend whose certificate the configured CA did not sign", async () => {
    const res = await get("wrong-ca.test");
    expect(res.status).toBe(502);
    expect(res.headers.get("x-kedge-error-type")).toBe("no-connection-to-all-resolved-addresses");
  });

  it("proxies adhoc to a host named in the request when the rule allows the port", async () => {
    const ok = await get(`svc.adhoc.test:${ups[1].port}`);
    expect(ok.status).toBe(200);
    expect(ok.headers.get("x-upstream")).toBe("b");
    expect(ok.headers.get("x-kedge-backend-name")).toBe("adhoc");
    // Adhoc backends show in the pool gauges under one series, as they do in the request metrics.
    const metrics = await (await fetch(`http://127.0.0.1:${kedge.ports.admin}/metrics`)).text();
    expect(metrics).toMatch(/^kedge_http_upstream_connections_open\{backend_name="adhoc"\} [1-9]/m);
    const refused = await get(`svc.adhoc.test:${ups[0].port}`);
    expect(refused.status).toBe(400);
    expect(refused.headers.get("x-kedge-error-type")).toBe("adhoc-port-not-allowed");
  });
});
