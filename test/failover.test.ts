import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import * as grpc from "@grpc/grpc-js";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { BackendsView } from "../src/server/backends-view.ts";
import { captureAccessLines } from "./helpers/access-lines.ts";
import { makeTestPki, type TestPki } from "./helpers/certs.ts";
import { cluster1Config, cluster2Config, echoHost, kedgeTier } from "./helpers/failover-clusters.ts";
import { GreeterClient, openChat, startGreeter, unary, type GreeterServer } from "./helpers/grpc.ts";
import { startTestKedge, type TestKedge } from "./helpers/kedge.ts";
import { promtool, seriesTotal } from "./helpers/prometheus.ts";
import { startUpstream, type Upstream } from "./helpers/upstream.ts";
import { until } from "./helpers/wait.ts";

// Failover across clusters with two real kedges in this process: cluster-1's backends (a real
// HTTP upstream and a real gRPC Greeter) fail over to cluster-2's kedge over mTLS with a bearer
// token. cluster-1's backend is killed under a steady request loop and started again on its port.

const token = "failover-token-5d1e";

let pki: TestPki;
let tokenFile: string;
let http1: Upstream;
let http2: Upstream;
let grpc1: GreeterServer;
let grpc2: GreeterServer;
let kedge1: TestKedge;
let kedge2: TestKedge;
let access: ReturnType<typeof captureAccessLines>;

beforeAll(async () => {
  access = captureAccessLines();
  pki = makeTestPki();
  tokenFile = join(mkdtempSync(join(tmpdir(), "kedge-failover-")), "token");
  writeFileSync(tokenFile, `${token}\n`);
  [http1, http2, grpc1, grpc2] = await Promise.all([startUpstream("cluster-1"), startUpstream("cluster-2"), startGreeter("cluster-1"), startGreeter("cluster-2")]);
  kedge2 = await startTestKedge(cluster2Config(pki, tokenFile, http2.port, grpc2.port));
  const tier = kedgeTier(pki, tokenFile, `https://localhost:${kedge2.ports.tls}`);
  kedge1 = await startTestKedge(cluster1Config(http1.port, grpc1.port, tier, { observability: { access_log: { enabled: true } } }));
});

afterAll(async () => {
  access.stop();
  await Promise.all([kedge1?.shutdown(), kedge2?.shutdown()]);
  await Promise.all([http1?.close(), http2?.close(), grpc1?.close(), grpc2?.close()]);
});

interface Outcome {
  startedAt: number;
  endedAt: number;
  status: number;
  upstream: string | undefined;
  requestId: string | undefined;
}

/** `clients` loops each sending one request after another to cluster-1's kedge until stopped. */
function steadyLoad(clients: number) {
  const outcomes: Outcome[] = [];
  let running = true;
  const loops = Array.from({ length: clients }, async () => {
    while (running) {
      const startedAt = performance.now();
      let status = 0;
      let upstream: string | undefined;
      let requestId: string | undefined;
      try {
        const res = await fetch(kedge1.url("/steady"), { headers: { host: echoHost } });
        await res.arrayBuffer();
        status = res.status;
        upstream = res.headers.get("x-upstream") ?? undefined;
        requestId = res.headers.get("x-kedge-request-id") ?? undefined;
      } catch {
        status = 0;
      }
      outcomes.push({ startedAt, endedAt: performance.now(), status, upstream, requestId });
    }
  });
  return {
    outcomes,
    async stop() {
      running = false;
      await Promise.all(loops);
    },
  };
}

const activeTier = () => seriesTotal(kedge1.registry.render(), "kedge_backend_active_tier", 'backend_name="echo"');

describe("HTTP failover to another cluster's kedge", () => {
  it("answers from its own backend while it is up", async () => {
    const res = await fetch(kedge1.url("/own"), { headers: { host: echoHost } });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { upstream: string }).upstream).toBe("cluster-1");
    expect(http1.seen.at(-1)!.headers["x-kedge-hops"]).toBeUndefined();
    expect(activeTier()).toBe(0);
  });

  it("fails over when the backend dies under load, failing none but requests in flight, and comes back when it returns", async () => {
    const port = http1.port;
    const load = steadyLoad(4);
    const answeredBy = (name: string, after: number) => load.outcomes.some((o) => o.upstream === name && o.startedAt > after);
    await until("cluster-1 answering the load", () => load.outcomes.filter((o) => o.upstream === "cluster-1").length >= 40);

    const killStart = performance.now();
    await http1.close();
    const killEnd = performance.now();
    await until("cluster-2 answering", () => answeredBy("cluster-2", killEnd));
    const switchedAt = load.outcomes.find((o) => o.upstream === "cluster-2")!.endedAt;
    await until("more answers from cluster-2", () => load.outcomes.filter((o) => o.startedAt > killEnd).length >= 40);
    expect(activeTier()).toBe(1);

    const restartAt = performance.now();
    http1 = await startUpstream("cluster-1", { port });
    await until("traffic back on cluster-1", () => answeredBy("cluster-1", restartAt), 15_000);
    const returnedAt = load.outcomes.find((o) => o.upstream === "cluster-1" && o.startedAt > restartAt)!.endedAt;
    await load.stop();

    const inFlightAtKill = load.outcomes.filter((o) => o.startedAt < killEnd && o.endedAt > killStart);
    const failed = load.outcomes.filter((o) => o.status !== 200);
    console.log(`failover: ${load.outcomes.length} requests, ${failed.length} failed, ${inFlightAtKill.length} in flight at the kill; switched ${(switchedAt - killEnd).toFixed(0)} ms after the kill, back ${(returnedAt - restartAt).toFixed(0)} ms after the restart`);
    for (const f of failed) expect(inFlightAtKill).toContain(f);
    // While cluster-1's upstream was down, every answer came from cluster-2.
    const whileDown = load.outcomes.filter((o) => o.startedAt > killEnd && o.endedAt < restartAt);
    expect(whileDown.length).toBeGreaterThan(0);
    expect(whileDown.every((o) => o.status === 200 && o.upstream === "cluster-2")).toBe(true);
    await until("the active tier back at 0", () => activeTier() === 0);
  });

  it("keeps the request's Host, adds the hop marker and presents only kedge's own credential to the other kedge", async () => {
    const seen = http2.seen.at(-1)!;
    expect(seen.headers.host).toBe(echoHost);
    expect(seen.headers["x-kedge-hops"]).toBe("1");
    // cluster-2's kedge took the token as its Proxy-Authorization and, as with any caller's, kept it.
    expect(seen.headers["proxy-authorization"]).toBeUndefined();
    expect(seen.url).toBe("/steady");
  });

  it("names the tier in the access line and shows the tiers in /debug/backends", async () => {
    const viaKedge = access.lines().find((l) => l.path === "/steady" && l.tier === 1);
    expect(viaKedge).toBeDefined();
    expect(viaKedge!.status).toBe(200);
    expect(String(viaKedge!.endpoint)).toEndWith(`:${kedge2.ports.tls}`);
    const own = access.lines().find((l) => l.path === "/own");
    expect(own!.tier).toBeUndefined();
    const view = (await (await fetch(`http://127.0.0.1:${kedge1.ports.admin}/debug/backends`)).json()) as BackendsView;
    const echo = view.http.find((b) => b.name === "echo")!;
    expect(echo.failover).toEqual([`kedge https://localhost:${kedge2.ports.tls}`]);
    expect(echo.activeTier).toBe(0);
    expect(echo.endpoints.some((e) => e.tier === 1 && e.address.endsWith(`:${kedge2.ports.tls}`))).toBe(true);
  });

  it("exposes kedge_backend_active_tier for the backends with tiers, and /metrics passes promtool", async () => {
    const text = await (await fetch(`http://127.0.0.1:${kedge1.ports.admin}/metrics`)).text();
    expect(text).toContain('kedge_backend_active_tier{backend_name="echo"} 0\n');
    expect(text).toContain('kedge_backend_active_tier{backend_name="greeter"} 0\n');
    const { code, out } = await promtool(text);
    expect(out).toBe("");
    expect(code).toBe(0);
  });
});

describe("gRPC failover to another cluster's kedge", () => {
  it("fails calls over, leaves a stream open on cluster-2 there, and sends new calls home once the backend is back", async () => {
    const client = new GreeterClient(`127.0.0.1:${kedge1.ports.h2c}`, grpc.credentials.createInsecure());
    const hello = async () => {
      const r = await unary(client, "sayHello", { name: "failover" });
      expect(r.error).toBeUndefined();
      return r.response.server as string;
    };
    try {
      expect(await hello()).toBe("cluster-1");
      const port = grpc1.port;
      grpc1.kill();
      const session = () => kedge1.runtime().grpcBackends.get("greeter")!.view()[0].pool;
      await until("cluster-1's session to notice", () => !session().connected);
      for (let i = 0; i < 5; i++) expect(await hello()).toBe("cluster-2");

      const { chat, echoes, ended } = openChat(client);
      chat.write({ text: "one" });
      await until("the chat's first echo", () => echoes.length === 1);
      expect(echoes[0].server).toBe("cluster-2");

      grpc1 = await startGreeter("cluster-1", undefined, { port });
      await until("calls back on cluster-1", async () => (await hello()) === "cluster-1", 15_000);
      chat.write({ text: "two" });
      await until("the chat's second echo", () => echoes.length === 2);
      expect(echoes[1].server).toBe("cluster-2");
      chat.end();
      expect(await ended).toBeUndefined();
    } finally {
      client.close();
    }
  });
});
