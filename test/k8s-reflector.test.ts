import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { KubeClient } from "../src/k8s/client.ts";
import { Reflector, type KubeMeta } from "../src/k8s/reflector.ts";
import { service, startFakeKube, type FakeKube } from "./helpers/fake-kube.ts";
import { until } from "./helpers/wait.ts";

// Reflector behaviour the resolver tests do not reach: a watch that goes silent without closing
// (a half-open connection, a load balancer that stops forwarding) must be abandoned and resumed.

let kube: FakeKube;

beforeAll(async () => {
  kube = await startFakeKube();
});

afterAll(async () => {
  await kube?.close();
});


describe("list + watch reflector", () => {
  it("abandons a silent watch stream and resumes from the last resourceVersion, without a re-list", async () => {
    const client = new KubeClient({ server: kube.url, ca: kube.ca, token: "test-token" });
    let seen: string[] = [];
    const path = "/api/v1/namespaces/stale/services";
    const reflector = new Reflector<KubeMeta>(client, path, { onChange: (items) => (seen = items.map((i) => i.metadata.name)), onError: () => {} }, { staleMs: 300 });
    kube.apply(service("stale", "one", [{ port: 80 }]));
    reflector.start();
    try {
      await until("the first list", () => seen.includes("one"));
      const watches = () => kube.requests.filter((r) => r.path === path && r.query.watch === "true");
      const lists = () => kube.requests.filter((r) => r.path === path && r.query.watch === undefined).length;
      await until("a second watch after the first went silent", () => watches().length >= 2);
      expect(lists()).toBe(1);
      const resumed = watches()[1].query.resourceVersion;
      expect(Number(resumed)).toBeGreaterThan(0);
      kube.apply(service("stale", "two", [{ port: 80 }]));
      await until("the change on the resumed watch", () => seen.includes("two"));
    } finally {
      reflector.stop();
    }
  });
});
