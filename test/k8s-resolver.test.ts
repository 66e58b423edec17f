import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import * as grpc from "@grpc/grpc-js";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { endpoints, endpointSlice, startFakeKube, type FakeKube } from "./helpers/fake-kube.ts";
import { GreeterClient, openChat, startGreeter, type GreeterServer } from "./helpers/grpc.ts";
import { plainServer, startTestKedge, type TestKedge } from "./helpers/kedge.ts";
import { startUpstream, type Upstream } from "./helpers/upstream.ts";
import { until } from "./helpers/wait.ts";

// The Kubernetes endpoints resolver against a fake API server speaking the real list/watch
// protocol: backends found only through the API, endpoints changing under load, an API server
// restart, 410 re-lists, token rotation, client-cert auth, and the core Endpoints fallback.

let kube: FakeKube;
let a: Upstream, b: Upstream, c: Upstream;
let g1: GreeterServer, g2: GreeterServer;
let kedge: TestKedge;
let tokenFile: string;
const slices = "discovery.k8s.io/v1";


async function served(host: string, n = 6): Promise<string[]> {
  const names = new Set<string>();
  for (let i = 0; i < n; i++) {
    const res = await fetch(kedge.url("/"), { headers: { host } });
    names.add(res.headers.get("x-upstream") ?? `${res.status} ${res.headers.get("x-kedge-error-type")}`);
    await res.arrayBuffer();
  }
  return [...names].sort();
}

const sliceFor = (name: string, up: Upstream | GreeterServer, service = "web", portName = "http") =>
  endpointSlice("prod", service, name, [{ name: portName, port: up.port }], [{ ip: "127.0.0.1", ready: true }]);

beforeAll(async () => {
  kube = await startFakeKube();
  [a, b, c] = await Promise.all([startUpstream("a"), startUpstream("b"), startUpstream("c")]);
  [g1, g2] = await Promise.all([startGreeter("g1"), startGreeter("g2")]);
  tokenFile = join(mkdtempSync(join(tmpdir(), "kedge-sa-")), "token");
  writeFileSync(tokenFile, "test-token");
  kube.apply(sliceFor("web-a", a));
  kube.apply(sliceFor("chat-1", g1, "chat", "grpc"));
  kedge = await startTestKedge({
    server: { ...plainServer, h2c_port: 0 },
    kubernetes: { api_url: kube.url, ca_file: kube.caFile, token_file: tokenFile },
    http: {
      backends: [
        { name: "web", k8s: { dns_port_name: "web.prod.svc.cluster.local:http" } },
      ],
      routes: [{ backend_name: "web", host_matcher: "web.test" }],
    },
    grpc: { backends: [{ name: "chat", k8s: { dns_port_name: "chat.prod:grpc" } }], routes: [{ backend_name: "chat" }] },
  });
});

afterAll(async () => {
  await kedge?.shutdown();
  await kube?.close();
  await Promise.all([a, b, c].map((u) => u?.close()));
  g1?.kill();
  g2?.kill();
});

describe("kubernetes endpoints resolver", () => {
  it("proxies to a backend found only through the API server, authenticated with the token file", async () => {
    expect(await served("web.test")).toEqual(["a"]);
    const metrics = await (await fetch(`http://127.0.0.1:${kedge.ports.admin}/metrics`)).text();
    expect(metrics).toContain('kedge_k8sresolver_up_addresses{target="web.prod.svc.cluster.local:http"} 1');
    expect(kube.requests.some((r) => r.path.endsWith("/endpointslices") && r.query.watch === "true" && r.query.allowWatchBookmarks === "true" && r.auth === "token")).toBe(true);
  });

  it("follows endpoints appearing and disappearing while requests flow, failing none", async () => {
    let stop = false;
    const failures: string[] = [];
    let count = 0;
    const loop = async () => {
      while (!stop) {
        const res = await fetch(kedge.url("/"), { headers: { host: "web.test" } });
        await res.arrayBuffer();
        count++;
        if (res.status !== 200) failures.push(`${res.status} ${res.headers.get("x-kedge-error")}`);
      }
    };
    const loops = Array.from({ length: 4 }, loop);
    const settle = () => Bun.sleep(200); // requests keep flowing across each change
    kube.apply(sliceFor("web-b", b));
    await until("b to serve", async () => (await served("web.test")).includes("b"));
    await settle();
    kube.remove(slices, "EndpointSlice", "prod", "web-a");
    await until("a to be gone", async () => (await served("web.test")).join() === "b");
    await settle();
    kube.apply(sliceFor("web-c", c));
    await until("c to serve", async () => (await served("web.test")).join() === "b,c");
    await settle();
    stop = true;
    await Promise.all(loops);
    expect(count).toBeGreaterThan(200);
    expect(failures).toEqual([]);
  });

  it("keeps a gRPC stream on an endpoint that went away, and sends new calls to the new one", async () => {
    const client = new GreeterClient(`127.0.0.1:${kedge.ports.h2c}`, grpc.credentials.createInsecure());
    const { chat, echoes, ended } = openChat(client);
    chat.write({ text: "before" });
    await until("the first echo", () => echoes.length === 1);
    kube.apply(sliceFor("chat-2", g2, "chat", "grpc"));
    kube.remove(slices, "EndpointSlice", "prod", "chat-1");
    await until("calls to reach g2", async () => {
      const r = await new Promise<any>((resolve) => (client as any).sayHello({ name: "x" }, (_e: unknown, v: unknown) => resolve(v)));
      return r?.server === "g2";
    });
    chat.write({ text: "after" });
    chat.end();
    expect(await ended).toBeUndefined();
    expect(echoes.map((e) => e.server)).toEqual(["g1", "g1"]);
    client.close();
  });

  it("keeps serving the last known endpoints while the API server is down, and catches up when it returns", async () => {
    await kube.stop();
    expect(await served("web.test")).toEqual(["b", "c"]);
    await until("a watch error to be counted", async () => {
      const metrics = await (await fetch(`http://127.0.0.1:${kedge.ports.admin}/metrics`)).text();
      return /kedge_k8sresolver_watcher_errors_total\{target="web\.prod\.svc\.cluster\.local:http"\} [1-9]/.test(metrics);
    });
    await kube.start();
    kube.remove(slices, "EndpointSlice", "prod", "web-c");
    await until("c to be gone after the restart", async () => (await served("web.test")).join() === "b", 15_000);
  });

  it("re-lists after 410 Gone and sees changes made since", async () => {
    const lists = () => kube.requests.filter((r) => r.path === "/apis/discovery.k8s.io/v1/namespaces/prod/endpointslices" && r.query.watch === undefined).length;
    const before = lists();
    kube.apply(sliceFor("web-a", a));
    kube.compact();
    await until("a re-list", () => lists() > before);
    await until("a to serve again", async () => (await served("web.test")).join() === "a,b");
  });

  it("picks up a rotated service-account token", async () => {
    writeFileSync(tokenFile, "rotated-token");
    kube.tokens = ["rotated-token"];
    kube.dropWatches();
    const since = kube.requests.length;
    await until("a request with the new token", () => kube.requests.slice(since).some((r) => r.auth === "token" && r.path.includes("endpointslices")));
    kube.remove(slices, "EndpointSlice", "prod", "web-a");
    await until("a to be gone", async () => (await served("web.test")).join() === "b");
  });

  it("falls back to the core Endpoints API when EndpointSlices are not served", async () => {
    // A cluster without discovery.k8s.io: the slice list answers 404 and the resolver moves to Endpoints.
    kube.endpointSlicesServed = false;
    kube.apply(endpoints("old", "legacy", [{ name: "http", port: c.port }], ["127.0.0.1"]));
    const legacy = await startTestKedge({
      server: plainServer,
      kubernetes: { api_url: kube.url, ca_file: kube.caFile, token_file: tokenFile },
      http: { backends: [{ name: "legacy", k8s: { dns_port_name: "legacy.old:http" } }], routes: [{ backend_name: "legacy" }] },
    });
    try {
      const res = await fetch(legacy.url("/"));
      expect(res.headers.get("x-upstream")).toBe("c");
      expect(kube.requests.some((r) => r.path === "/api/v1/namespaces/old/endpoints" && r.query.fieldSelector === "metadata.name=legacy")).toBe(true);
    } finally {
      kube.endpointSlicesServed = true;
      await legacy.shutdown();
    }
  });

  it("authenticates with a client certificate from a kubeconfig", async () => {
    const dir = mkdtempSync(join(tmpdir(), "kedge-kubeconfig-"));
    const kubeconfig = join(dir, "config");
    writeFileSync(kubeconfig, [
      "apiVersion: v1", "kind: Config", "current-context: test",
      "clusters:", `- name: fake`, `  cluster: { server: "${kube.url}", certificate-authority: "${kube.caFile}" }`,
      "users:", "- name: kedge", `  user: { client-certificate: "${kube.clientCertFile}", client-key: "${kube.clientKeyFile}" }`,
      "contexts:", "- name: test", "  context: { cluster: fake, user: kedge }", "",
    ].join("\n"));
    const viaCert = await startTestKedge({
      server: plainServer,
      kubernetes: { kubeconfig_path: kubeconfig },
      http: { backends: [{ name: "web", k8s: { dns_port_name: "web.prod:http" } }], routes: [{ backend_name: "web" }] },
    });
    try {
      const res = await fetch(viaCert.url("/"));
      expect(res.headers.get("x-upstream")).toBe("b");
      expect(kube.requests.some((r) => r.auth === "cert")).toBe(true);
    } finally {
      await viaCert.shutdown();
    }
  });

  it("runs in-cluster from KUBERNETES_SERVICE_HOST/PORT and the mounted service-account token and CA", async () => {
    const dir = mkdtempSync(join(tmpdir(), "kedge-serviceaccount-"));
    writeFileSync(join(dir, "token"), "rotated-token");
    writeFileSync(join(dir, "ca.crt"), kube.ca);
    const saved = { ...process.env };
    Object.assign(process.env, { KUBERNETES_SERVICE_HOST: "127.0.0.1", KUBERNETES_SERVICE_PORT: String(kube.port), KEDGE_SERVICEACCOUNT_DIR: dir });
    try {
      const inCluster = await startTestKedge({
        server: plainServer,
        http: { backends: [{ name: "web", k8s: { dns_port_name: "web.prod:http" } }], routes: [{ backend_name: "web" }] },
      });
      try {
        expect((await fetch(inCluster.url("/"))).headers.get("x-upstream")).toBe("b");
      } finally {
        await inCluster.shutdown();
      }
    } finally {
      for (const k of ["KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT", "KEDGE_SERVICEACCOUNT_DIR"]) {
        if (saved[k] === undefined) delete process.env[k];
        else process.env[k] = saved[k];
      }
    }
  });

  it("rejects a config with a k8s backend when no API server can be found", async () => {
    const previous = process.env.KUBERNETES_SERVICE_HOST;
    delete process.env.KUBERNETES_SERVICE_HOST;
    try {
      await expect(
        startTestKedge({ server: plainServer, http: { backends: [{ name: "web", k8s: { dns_port_name: "web.prod:http" } }], routes: [{ backend_name: "web" }] } }),
      ).rejects.toThrow("KUBERNETES_SERVICE_HOST is not set");
    } finally {
      if (previous !== undefined) process.env.KUBERNETES_SERVICE_HOST = previous;
    }
  });
});
