import { afterAll, afterEach, beforeAll, describe, expect, it } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureBinary, healthy, runBinary, waitFor, type Running } from "./helpers/binary.ts";
import { endpointSlice, service, startFakeKube, type FakeKube } from "./helpers/fake-kube.ts";
import { rawHttp } from "./helpers/raw-http.ts";
import { startUpstream, type Upstream } from "./helpers/upstream.ts";
import { until } from "./helpers/wait.ts";

// kedge with `workers: 2` against a fake API server speaking the real list/watch protocol: the
// supervisor runs the k8s resolver's watches and discovery once, and pushes endpoint sets and the
// composed config to both workers. Every request opens its own connection, so the kernel's
// SO_REUSEPORT spread decides which worker answers; /debug/workers says how many each accepted.

const suffix = "cluster.example.com";
const exposed = { "kedge.com/kedge-exposed": "true" };
const slices = "discovery.k8s.io/v1";
const dir = mkdtempSync(join(tmpdir(), "kedge-workers-k8s-"));
let kube: FakeKube;
let a: Upstream, b: Upstream, c: Upstream;
let running: Running | undefined;
let tokenFile: string;

interface Kedge {
  proc: Running;
  http: number;
  admin: number;
}

interface WorkerView {
  id: number;
  pid: number;
  restarts: number;
  acceptedConnections: number;
}

function config(workers: number) {
  return {
    server: { bind_address: "127.0.0.1", http_port: 0, admin_port: 0, workers, log_level: "warn" },
    kubernetes: { api_url: kube.url, ca_file: kube.caFile, token_file: tokenFile },
    discovery: { enabled: true, external_domain_suffix: suffix, quiet_period: "0.1s" },
    http: {
      backends: [{ name: "web", k8s: { dns_port_name: "web.prod:http" } }],
      routes: [{ backend_name: "web", host_matcher: "web.test" }],
    },
  };
}

async function startKedge(workers: number): Promise<Kedge> {
  const configFile = join(dir, `config-${workers}.json`);
  writeFileSync(configFile, JSON.stringify(config(workers)));
  const proc = runBinary(["--config", configFile], dir);
  running = proc;
  await waitFor(() => /listening: .*admin=\d+/.test(proc.stdout()), "kedge to listen", proc);
  const port = (n: string) => Number(new RegExp(`${n}=(\\d+)`).exec(proc.stdout())![1]);
  const k = { proc, http: port("http"), admin: port("admin") };
  await waitFor(healthy(k.admin), "kedge to become healthy", proc);
  return k;
}

async function stopKedge(k: Kedge): Promise<void> {
  k.proc.proc.kill("SIGTERM");
  await k.proc.proc.exited;
  running = undefined;
}

/** The workers and their counts; none for a kedge with one worker, which is one process. */
async function workers(k: Kedge): Promise<WorkerView[]> {
  const res = await fetch(`http://127.0.0.1:${k.admin}/debug/workers`);
  if (res.status === 404) return [];
  return ((await res.json()) as { workers: WorkerView[] }).workers;
}

/** `n` requests for `host`, each on its own connection: which upstreams answered, and how many connections each worker took. */
async function spread(k: Kedge, host: string, n = 100): Promise<{ upstreams: string[]; perWorker: number[] }> {
  const before = await workers(k);
  const answers = await Promise.all(
    Array.from({ length: n }, () => rawHttp(k.http, `GET / HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`)),
  );
  const after = await workers(k);
  const upstreams = [...new Set(answers.map((r) => r.headers["x-upstream"] ?? `${r.status} ${r.headers["x-kedge-error-type"]}`))].sort();
  return { upstreams, perWorker: after.map((w) => w.acceptedConnections - (before.find((x) => x.id === w.id && x.pid === w.pid)?.acceptedConnections ?? 0)) };
}

/** The list and watch requests per collection (path) made since `from`. */
function apiCalls(from: number): Record<string, { lists: number; watches: number }> {
  const out: Record<string, { lists: number; watches: number }> = {};
  for (const r of kube.requests.slice(from)) {
    const key = `${r.path}?${r.query.labelSelector ?? ""}${r.query.fieldSelector ?? ""}`;
    out[key] ??= { lists: 0, watches: 0 };
    if (r.query.watch === "true") out[key].watches++;
    else out[key].lists++;
  }
  return out;
}

const sliceFor = (name: string, up: Upstream, service = "web", namespace = "prod") =>
  endpointSlice(namespace, service, name, [{ name: "http", port: up.port }], [{ ip: "127.0.0.1" }]);

beforeAll(async () => {
  ensureBinary();
  kube = await startFakeKube();
  [a, b, c] = await Promise.all([startUpstream("a"), startUpstream("b"), startUpstream("c")]);
  tokenFile = join(dir, "token");
  writeFileSync(tokenFile, "test-token");
  kube.apply(sliceFor("web-a", a));
  kube.apply(service("shop", "cart", [{ name: "http", port: 80 }], { labels: exposed }));
  kube.apply(sliceFor("cart-1", c, "cart", "shop"));
});

afterEach(() => {
  running?.proc.kill("SIGKILL");
  running = undefined;
});

afterAll(async () => {
  await kube?.close();
  await Promise.all([a, b, c].map((u) => u?.close()));
});

describe("kubernetes watches with workers", () => {
  it("makes the API server see the same lists and watches with 2 workers as with 1", async () => {
    const seen: Array<{ calls: ReturnType<typeof apiCalls>; open: number }> = [];
    for (const n of [1, 2]) {
      const watchesBefore = kube.openWatches;
      const from = kube.requests.length;
      const k = await startKedge(n);
      await until(`kedge with ${n} worker(s) to route both hosts`, async () => {
        const [web, cart] = await Promise.all([spread(k, "web.test", 4), spread(k, `cart.shop.svc.${suffix}`, 4)]);
        return web.upstreams.join() === "a" && cart.upstreams.join() === "c";
      });
      await Bun.sleep(300); // anything late (a second watch, a re-list) would show here
      seen.push({ calls: apiCalls(from), open: kube.openWatches - watchesBefore });
      await stopKedge(k);
      await until("its watches to close", () => kube.openWatches === watchesBefore);
    }
    // web (static config), cart (discovered) and the Services discovery watches: one list and one watch each
    expect(Object.values(seen[0].calls)).toEqual(Array(3).fill({ lists: 1, watches: 1 }));
    expect(seen[0].open).toBe(3);
    expect(seen[1]).toEqual(seen[0]);
  });

  it("sends every worker's requests to endpoints added in the API, and none to a removed one", async () => {
    const k = await startKedge(2);
    const from = kube.requests.length;
    kube.apply(sliceFor("web-b", b));
    await until("b to serve", async () => (await spread(k, "web.test", 20)).upstreams.join() === "a,b");
    const both = await spread(k, "web.test", 200);
    expect(both.upstreams).toEqual(["a", "b"]);
    for (const n of both.perWorker) expect(n).toBeGreaterThan(0);

    kube.remove(slices, "EndpointSlice", "prod", "web-a");
    await until("a to be gone", async () => (await spread(k, "web.test", 20)).upstreams.join() === "b");
    const servedBefore = a.seen.length;
    const onlyB = await spread(k, "web.test", 200);
    expect(onlyB.upstreams).toEqual(["b"]);
    for (const n of onlyB.perWorker) expect(n).toBeGreaterThan(0);
    expect(a.seen.length).toBe(servedBefore);
    expect(Object.values(apiCalls(from))).toEqual([]); // the open watches carried it all
    const metrics = await (await fetch(`http://127.0.0.1:${k.admin}/metrics`)).text();
    expect(metrics).toContain('kedge_k8sresolver_up_addresses{target="web.prod:http"} 1');
    kube.apply(sliceFor("web-a", a));
    kube.remove(slices, "EndpointSlice", "prod", "web-b");
    await stopKedge(k);
  });

  it("restarts a killed worker with the current endpoints and no new list or watch", async () => {
    const k = await startKedge(2);
    await until("a to serve", async () => (await spread(k, "web.test", 10)).upstreams.join() === "a");
    const from = kube.requests.length;
    const [victim] = await workers(k);
    process.kill(victim.pid, "SIGKILL");
    // Changed while the worker is down or starting: it must learn the set as it is now.
    kube.apply(sliceFor("web-c", c));
    kube.remove(slices, "EndpointSlice", "prod", "web-a");
    await until("the worker to be back", async () => (await workers(k)).some((w) => w.id === victim.id && w.pid !== victim.pid && w.restarts === 1), 15_000);
    await until("c alone to serve", async () => (await spread(k, "web.test", 20)).upstreams.join() === "c");
    const after = await spread(k, "web.test", 200);
    expect(after.upstreams).toEqual(["c"]);
    for (const n of after.perWorker) expect(n).toBeGreaterThan(0);
    expect(Object.values(apiCalls(from))).toEqual([]);
    kube.apply(sliceFor("web-a", a));
    kube.remove(slices, "EndpointSlice", "prod", "web-c");
    await stopKedge(k);
  });

  it("routes discovered Services on both workers, added and removed after start", async () => {
    const k = await startKedge(2);
    const host = `shelf.shop.svc.${suffix}`;
    expect((await spread(k, `cart.shop.svc.${suffix}`, 100)).upstreams).toEqual(["c"]);
    kube.apply(sliceFor("shelf-1", b, "shelf", "shop"));
    kube.apply(service("shop", "shelf", [{ name: "http", port: 80 }], { labels: exposed }));
    await until("shelf to be routed", async () => (await spread(k, host, 20)).upstreams.join() === "b");
    const routed = await spread(k, host, 200);
    expect(routed.upstreams).toEqual(["b"]);
    for (const n of routed.perWorker) expect(n).toBeGreaterThan(0);
    kube.remove("v1", "Service", "shop", "shelf");
    await until("shelf to be gone", async () => (await spread(k, host, 20)).upstreams.join() === "502 no-route");
    const gone = await spread(k, host, 200);
    expect(gone.upstreams).toEqual(["502 no-route"]);
    for (const n of gone.perWorker) expect(n).toBeGreaterThan(0);
    await stopKedge(k);
  });

  it("validates discovery's changes once in the supervisor: an invalid result is one log line and every worker keeps its routes", async () => {
    const k = await startKedge(2);
    const versions = async () => (await workers(k)).map((w) => (w as WorkerView & { configVersion: number }).configVersion);
    const start = await versions();
    kube.apply(service("shop", "broken", [{ name: "http", port: 80 }], { labels: exposed, annotations: { "kedge.com/host-matcher": "bad host" } }));
    await waitFor(() => k.proc.stderr().includes("config rejected"), "the rejection", k.proc);
    await Bun.sleep(300);
    const lines = k.proc.stderr().split("\n").filter((l) => l.includes("config rejected"));
    expect(lines.length).toBe(1);
    expect(lines[0]).toContain("dynamic routing discovery");
    const still = await spread(k, `cart.shop.svc.${suffix}`, 100);
    expect(still.upstreams).toEqual(["c"]);
    for (const n of still.perWorker) expect(n).toBeGreaterThan(0);
    expect(await versions()).toEqual(start);
    kube.remove("v1", "Service", "shop", "broken");
    await until("the next good result to reach every worker", async () => (await versions()).every((v) => v > start[0]));
    await stopKedge(k);
  });
});
