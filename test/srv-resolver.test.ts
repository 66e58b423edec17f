import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { startDnsServer } from "./helpers/dns-server.ts";
import { plainServer, startTestKedge, type TestKedge } from "./helpers/kedge.ts";
import { startUpstream, type Upstream } from "./helpers/upstream.ts";

let a: Upstream, b: Upstream, kedge: TestKedge;
let dnsServer: { address: string; close: () => void };
let previousEnv: string | undefined;

beforeAll(async () => {
  [a, b] = await Promise.all([startUpstream("a"), startUpstream("b")]);
  dnsServer = await startDnsServer(
    new Map([["_http._tcp.web.test", [{ target: "localhost", port: a.port }, { target: "localhost", port: b.port }]]]),
  );
  previousEnv = process.env.KEDGE_DNS_SERVERS;
  process.env.KEDGE_DNS_SERVERS = dnsServer.address;
  kedge = await startTestKedge({
    server: plainServer,
    http: {
      backends: [
        { name: "srv", srv: { dns_name: "_http._tcp.web.test" } },
        { name: "srv_override", srv: { dns_name: "_http._tcp.web.test", port_override: b.port } },
        { name: "srv_missing", srv: { dns_name: "_http._tcp.missing.test" } },
      ],
      routes: [
        { backend_name: "srv", host_matcher: "srv.test" },
        { backend_name: "srv_override", host_matcher: "override.test" },
        { backend_name: "srv_missing", host_matcher: "missing.test" },
      ],
    },
  });
});

afterAll(async () => {
  await kedge.shutdown();
  dnsServer.close();
  if (previousEnv === undefined) delete process.env.KEDGE_DNS_SERVERS;
  else process.env.KEDGE_DNS_SERVERS = previousEnv;
  await Promise.all([a.close(), b.close()]);
});

async function upstreams(host: string, n: number): Promise<string[]> {
  const seen: string[] = [];
  for (let i = 0; i < n; i++) {
    const res = await fetch(kedge.url("/"), { headers: { host } });
    await res.arrayBuffer();
    seen.push(res.headers.get("x-upstream") ?? `${res.status} ${res.headers.get("x-kedge-error-type")}`);
  }
  return seen;
}

describe("SRV resolver", () => {
  it("balances across every SRV target and port", async () => {
    expect((await upstreams("srv.test", 4)).sort()).toEqual(["a", "a", "b", "b"]);
  });

  it("uses port_override instead of the records' ports", async () => {
    expect(await upstreams("override.test", 3)).toEqual(["b", "b", "b"]);
  });

  it("answers 503 no-resolution-available for a name without records", async () => {
    expect(await upstreams("missing.test", 1)).toEqual(["503 no-resolution-available"]);
  });
});
