import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { endpointSlice, endpoints, pod, service, startFakeKube, type FakeKube } from "./helpers/fake-kube.ts";

let kube: FakeKube;

beforeAll(async () => {
  kube = await startFakeKube();
});
afterAll(async () => {
  await kube.close();
});

const auth = { authorization: "Bearer test-token" };
const get = (path: string, headers: Record<string, string> = auth) => fetch(`${kube.url}${path}`, { headers, tls: { ca: kube.ca } });

/** Opens a watch and returns a reader of its newline-delimited JSON events. */
async function watch(path: string) {
  const res = await get(path);
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toBe("application/json");
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  let ended = false;
  const next = async (ms = 2000): Promise<{ type: string; object: any } | "end"> => {
    const deadline = Date.now() + ms;
    for (;;) {
      const nl = buf.indexOf("\n");
      if (nl >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        return JSON.parse(line);
      }
      if (ended) return "end";
      const left = deadline - Date.now();
      if (left <= 0) throw new Error("timed out waiting for a watch event");
      const r = await Promise.race([reader.read(), Bun.sleep(left).then(() => "timeout" as const)]);
      if (r === "timeout") throw new Error("timed out waiting for a watch event");
      if (r.done) ended = true;
      else buf += decoder.decode(r.value, { stream: true });
    }
  };
  return { res, next, cancel: () => reader.cancel().catch(() => {}) };
}

const until = async (cond: () => boolean, ms = 2000) => {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error("condition not reached");
    await Bun.sleep(5);
  }
};

describe("fake kube API server", () => {
  it("lists with label and field selectors, with the current resourceVersion", async () => {
    kube.apply(service("sel", "a", [{ name: "http", port: 80 }], { labels: { app: "a", tier: "web" } }));
    kube.apply(service("sel", "b", [{ port: 81 }], { labels: { app: "b" } }));
    kube.apply(service("other", "c", [{ port: 82 }], { labels: { app: "c", tier: "web" } }));
    const names = async (path: string) => ((await (await get(path)).json()) as any).items.map((i: any) => i.metadata.name);
    expect(await names("/api/v1/namespaces/sel/services")).toEqual(["a", "b"]);
    expect(await names("/api/v1/services?labelSelector=tier%3Dweb")).toEqual(["c", "a"]); // sorted by namespace/name, like etcd keys
    expect(await names("/api/v1/namespaces/sel/services?labelSelector=tier")).toEqual(["a"]);
    expect(await names("/api/v1/namespaces/sel/services?labelSelector=!tier")).toEqual(["b"]);
    expect(await names("/api/v1/namespaces/sel/services?labelSelector=app!%3Da")).toEqual(["b"]);
    expect(await names("/api/v1/namespaces/sel/services?labelSelector=app%20in%20(a,b),tier%3D%3Dweb")).toEqual(["a"]);
    expect(await names("/api/v1/services?fieldSelector=metadata.namespace%3Dother")).toEqual(["c"]);
    expect(await names("/api/v1/services?fieldSelector=metadata.name%3Db")).toEqual(["b"]);
    const list = (await (await get("/api/v1/namespaces/sel/services")).json()) as any;
    expect(list.kind).toBe("ServiceList");
    expect(list.apiVersion).toBe("v1");
    expect(list.metadata.resourceVersion).toBe(kube.resourceVersion);
    expect(list.items[0].spec.ports).toEqual([{ name: "http", protocol: "TCP", port: 80, targetPort: 80 }]);

    const one = await get("/api/v1/namespaces/sel/services/a");
    expect(((await one.json()) as any).metadata.uid).toBeString();
    const missing = await get("/api/v1/namespaces/sel/services/zz");
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as any).reason).toBe("NotFound");

    kube.apply(endpointSlice("sel", "a", "a-1", [{ name: "http", port: 8080 }], [{ ip: "10.0.0.1" }, { ip: "10.0.0.2", ready: false, terminating: true, serving: true }]));
    const slices = (await (await get("/apis/discovery.k8s.io/v1/namespaces/sel/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3Da")).json()) as any;
    expect(slices.kind).toBe("EndpointSliceList");
    expect(slices.apiVersion).toBe("discovery.k8s.io/v1");
    expect(slices.items[0].endpoints[1].conditions).toEqual({ ready: false, serving: true, terminating: true });
    kube.endpointSlicesServed = false;
    expect((await get("/apis/discovery.k8s.io/v1/namespaces/sel/endpointslices")).status).toBe(404);
    expect(((await (await get("/apis")).json()) as any).groups).toEqual([]);
    kube.endpointSlicesServed = true;
    kube.apply(endpoints("sel", "a", [{ name: "http", port: 8080 }], ["10.0.0.1"], ["10.0.0.2"]));
    const ep = (await (await get("/api/v1/namespaces/sel/endpoints/a")).json()) as any;
    expect(ep.subsets[0].notReadyAddresses).toEqual([{ ip: "10.0.0.2" }]);
  });

  it("streams ADDED, MODIFIED and DELETED in order, and replays from a resourceVersion", async () => {
    kube.apply(pod("w", "existing", "10.1.0.1"));
    const w = await watch("/api/v1/namespaces/w/pods?watch=true");
    expect(await w.next()).toMatchObject({ type: "ADDED", object: { metadata: { name: "existing" } } });
    const from = kube.resourceVersion;
    const p = kube.apply(pod("w", "p1", "10.1.0.2"));
    kube.apply({ ...p, metadata: { ...p.metadata, labels: { app: "p1", v: "2" } } });
    kube.apply(pod("elsewhere", "p9"));
    kube.remove("v1", "Pod", "w", "p1");
    const events = [await w.next(), await w.next(), await w.next()] as any[];
    expect(events.map((e) => `${e.type} ${e.object.metadata.name}`)).toEqual(["ADDED p1", "MODIFIED p1", "DELETED p1"]);
    const rvs = events.map((e) => Number(e.object.metadata.resourceVersion));
    expect(rvs[0] < rvs[1] && rvs[1] < rvs[2]).toBe(true);
    expect(events[2].object.metadata.labels.v).toBe("2");
    expect(kube.openWatches).toBe(1);
    w.cancel();
    await until(() => kube.openWatches === 0);

    // Replay after a resourceVersion, with a label selector: the label change turns into ADDED.
    const r = await watch(`/api/v1/namespaces/w/pods?watch=1&resourceVersion=${from}&labelSelector=v%3D2`);
    expect(((await r.next()) as any).type).toBe("ADDED");
    expect(((await r.next()) as any).type).toBe("DELETED");
    kube.dropWatches();
    expect(await r.next()).toBe("end");
  });

  it("answers 410 Expired to watches and lists older than a compaction, and closes old open watches", async () => {
    const old = kube.resourceVersion;
    const open = await watch(`/api/v1/namespaces/c/pods?watch=true&resourceVersion=${old}`);
    kube.apply(pod("c", "x"));
    expect(((await open.next()) as any).type).toBe("ADDED");
    kube.compact();
    const err = (await open.next()) as any;
    expect(err.type).toBe("ERROR");
    expect(err.object).toEqual({ kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message: `too old resource version: ${old} (${kube.resourceVersion})`, reason: "Expired", code: 410 });
    expect(await open.next()).toBe("end");

    const late = await watch(`/api/v1/namespaces/c/pods?watch=true&resourceVersion=${old}`);
    expect(((await late.next()) as any).object.code).toBe(410);
    expect(await late.next()).toBe("end");
    const list = await get(`/api/v1/namespaces/c/pods?resourceVersion=${old}&resourceVersionMatch=NotOlderThan`);
    expect(list.status).toBe(410);
    expect(((await list.json()) as any).reason).toBe("Expired");
    expect((await get(`/api/v1/namespaces/c/pods?resourceVersion=${kube.resourceVersion}`)).status).toBe(200);
  });

  it("delivers bookmarks to watches that asked, and honours timeoutSeconds", async () => {
    const w = await watch("/api/v1/namespaces/b/services?watch=true&allowWatchBookmarks=true&timeoutSeconds=1");
    const plain = await watch("/api/v1/namespaces/b/services?watch=true");
    kube.bookmark();
    expect(await w.next()).toEqual({ type: "BOOKMARK", object: { kind: "Service", apiVersion: "v1", metadata: { resourceVersion: kube.resourceVersion } } });
    kube.apply(service("b", "s", [{ port: 1 }]));
    expect(((await plain.next()) as any).type).toBe("ADDED"); // no bookmark before it
    expect(((await w.next()) as any).type).toBe("ADDED");
    expect(await w.next(1500)).toBe("end");
    plain.cancel();
  });

  it("requires a token or a client certificate", async () => {
    const res = await get("/api/v1/pods", {});
    expect(res.status).toBe(401);
    expect(await res.json()).toEqual({ kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message: "Unauthorized", reason: "Unauthorized", code: 401 });
    expect(kube.requests.at(-1)).toEqual({ method: "GET", path: "/api/v1/pods", query: {}, auth: "none" });

    const cert = await fetch(`${kube.url}/api/v1/pods?limit=5`, {
      tls: { ca: kube.ca, cert: readFileSync(kube.clientCertFile, "utf8"), key: readFileSync(kube.clientKeyFile, "utf8") },
    });
    expect(cert.status).toBe(200);
    expect(kube.requests.at(-1)).toEqual({ method: "GET", path: "/api/v1/pods", query: { limit: "5" }, auth: "cert" });

    kube.tokens = ["rotated"];
    expect((await get("/api/v1/pods")).status).toBe(401);
    expect((await get("/api/v1/pods", { authorization: "Bearer rotated" })).status).toBe(200);
    kube.tokens = ["test-token"];
  });

  it("goes down and comes back on the same port with its objects", async () => {
    kube.apply(pod("r", "survivor"));
    const w = await watch("/api/v1/namespaces/r/pods?watch=true");
    await w.next();
    const port = kube.port;
    await kube.stop();
    expect(kube.openWatches).toBe(0);
    await expect(get("/api/v1/namespaces/r/pods")).rejects.toThrow();
    await kube.start();
    expect(kube.port).toBe(port);
    const list = (await (await get("/api/v1/namespaces/r/pods")).json()) as any;
    expect(list.items.map((i: any) => i.metadata.name)).toEqual(["survivor"]);
  });

  it("serves discovery and tables for kubectl", async () => {
    expect(((await (await get("/version")).json()) as any).gitVersion).toBe("v1.33.0");
    const core = (await (await get("/api/v1")).json()) as any;
    expect(core.resources.find((r: any) => r.name === "services")).toMatchObject({ kind: "Service", namespaced: true, shortNames: ["svc"] });
    expect((await get("/openapi/v2")).status).toBe(404);
    const table = (await (
      await get("/api/v1/namespaces/r/pods?limit=500", { ...auth, accept: "application/json;as=Table;v=v1;g=meta.k8s.io,application/json" })
    ).json()) as any;
    expect(table.kind).toBe("Table");
    expect(table.rows[0].cells[0]).toBe("survivor");
    expect(table.rows[0].object.kind).toBe("PartialObjectMetadata");
  });

  it("works with the real kubectl", async () => {
    const dir = mkdtempSync(join(tmpdir(), "fake-kube-"));
    const kubeconfig = join(dir, "config");
    writeFileSync(
      kubeconfig,
      `apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster:
    server: ${kube.url}
    certificate-authority: ${kube.caFile}
users:
- name: fake
  user:
    token: test-token
contexts:
- name: fake
  context: { cluster: fake, user: fake }
current-context: fake
`,
    );
    kube.apply(pod("default", "kubectl-sees-me", "10.2.0.1"));
    const run = async (...args: string[]) => {
      const p = Bun.spawn(["kubectl", "--kubeconfig", kubeconfig, "--cache-dir", join(dir, "cache"), ...args], { stdout: "pipe", stderr: "pipe", env: { ...process.env, HOME: dir } });
      const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
      return { out, err, code };
    };
    const r = await run("get", "pods", "-n", "default");
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^NAME\s+AGE\n/);
    expect(r.out).toContain("kubectl-sees-me");
    const j = await run("get", "svc", "-n", "sel", "a", "-o", "json");
    expect(j.code).toBe(0);
    expect(JSON.parse(j.out).spec.ports[0].port).toBe(80);
  });
});
