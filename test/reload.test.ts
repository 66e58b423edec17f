import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { plainServer, startTestKedge, type TestKedge } from "./helpers/kedge.ts";
import { startUpstream, type Upstream } from "./helpers/upstream.ts";
import { until } from "./helpers/wait.ts";

let a: Upstream, b: Upstream, kedge: TestKedge;

const configFor = (target: Upstream) => ({
  server: plainServer,
  http: {
    backends: [{ name: "web", static: { addresses: [`127.0.0.1:${target.port}`] } }],
    routes: [{ backend_name: "web" }],
  },
});

beforeAll(async () => {
  [a, b] = await Promise.all([startUpstream("a"), startUpstream("b")]);
  kedge = await startTestKedge(configFor(a), { watchFiles: true });
});

afterAll(async () => {
  await kedge.shutdown();
  await Promise.all([a.close(), b.close()]);
});

async function upstreamOf(): Promise<string> {
  const res = await fetch(kedge.url("/"));
  await res.arrayBuffer();
  return res.headers.get("x-upstream") ?? `status ${res.status}`;
}


describe("config reload", () => {
  it("rejects a bad config with its field path and keeps serving the old one", async () => {
    const version = kedge.runtime().version;
    kedge.writeConfig({ ...configFor(b), http: { ...configFor(b).http, routes: [{ backend_name: "nope" }] } });
    const err = await kedge.reload();
    expect(err?.problems.join("\n")).toContain('http.routes[0].backend_name: unknown backend "nope"');
    expect(kedge.runtime().version).toBe(version);
    expect(await upstreamOf()).toBe("a");
  });

  it("applies a changed config file on its own (file watch)", async () => {
    kedge.writeConfig(configFor(b));
    await until("the watched file to be reloaded", async () => (await upstreamOf()) === "b");
    kedge.writeConfig(configFor(a));
    await until("the second reload", async () => (await upstreamOf()) === "a");
  });

  it("fails no request while reloading under load", async () => {
    let stop = false;
    let ok = 0;
    const failures: string[] = [];
    const worker = async () => {
      while (!stop) {
        try {
          const res = await fetch(kedge.url("/load"));
          await res.arrayBuffer();
          if (res.status === 200) ok++;
          else failures.push(`status ${res.status} ${res.headers.get("x-kedge-error")}`);
        } catch (e) {
          failures.push(String(e));
        }
      }
    };
    const workers = Array.from({ length: 8 }, worker);
    const versionBefore = kedge.runtime().version;
    for (let i = 0; i < 10; i++) {
      kedge.writeConfig(configFor(i % 2 === 0 ? b : a));
      expect(await kedge.reload()).toBeUndefined();
      await Bun.sleep(30);
    }
    stop = true;
    await Promise.all(workers);
    expect(failures).toEqual([]);
    expect(ok).toBeGreaterThan(50);
    expect(kedge.runtime().version).toBeGreaterThanOrEqual(versionBefore + 10);
  });

  it("lets a request in flight finish on the config it started with", async () => {
    kedge.writeConfig(configFor(a));
    await kedge.reload();
    const slow = fetch(kedge.url("/slow-chunks?n=3&ms=150"));
    const res = await slow;
    kedge.writeConfig(configFor(b));
    await kedge.reload();
    expect(await res.text()).toBe("chunk 0\nchunk 1\nchunk 2\n");
    expect(res.headers.get("x-upstream")).toBe("a");
    expect(await upstreamOf()).toBe("b");
  });
});
