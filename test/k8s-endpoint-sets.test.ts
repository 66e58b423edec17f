import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { create } from "@bufbuild/protobuf";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { HttpBackendSchema } from "../src/gen/kedge/config/v1/backend_pb.ts";
import { KubernetesConfigSchema } from "../src/gen/kedge/config/v1/config_pb.ts";
import { HttpBackend } from "../src/backend/http-backend.ts";
import type { ResolvedAddress } from "../src/backend/endpoint.ts";
import { KubeClient } from "../src/k8s/client.ts";
import { useKubernetesConfig } from "../src/k8s/shared-client.ts";
import { K8sEndpointSets, type EndpointSetsMessage } from "../src/k8s/endpoint-sets.ts";
import { endpointSlice, startFakeKube, type FakeKube } from "./helpers/fake-kube.ts";
import { until } from "./helpers/wait.ts";

// The k8s resolver's endpoint sets: one watch per target however many backends name it, and in
// a worker, sets that arrive as the supervisor's messages (JSON, as over the IPC channel) with no
// watch of the worker's own.

let kube: FakeKube;
const slices = "discovery.k8s.io/v1";
const sliceWatches = () => kube.requests.filter((r) => r.path.endsWith("/endpointslices") && r.query.watch === "true").length;

beforeAll(async () => {
  kube = await startFakeKube();
  kube.apply(endpointSlice("prod", "web", "web-1", [{ name: "http", port: 8001 }], [{ ip: "10.0.0.1" }]));
});

afterAll(() => kube?.close());

const newSets = () => new K8sEndpointSets(() => new KubeClient({ server: kube.url, ca: kube.ca, token: "test-token" }));

/** A resolver's updates, newest last. */
function follow(sets: K8sEndpointSets, name: string) {
  const seen: string[][] = [];
  const errors: string[] = [];
  const resolver = sets.resolver(name);
  resolver.start((a: ResolvedAddress[]) => seen.push(a.map((x) => `${x.host}:${x.port}`)), (e) => errors.push(e));
  return { resolver, seen, errors, last: () => seen.at(-1)?.join(",") };
}

/** What the IPC channel does to a message: JSON out and back. */
const overIpc = (m: EndpointSetsMessage) => JSON.parse(JSON.stringify(m)) as EndpointSetsMessage;

describe("k8s endpoint sets", () => {
  it("gives backends naming the same target one watch, and stops it when the last one goes", async () => {
    const tokenFile = join(mkdtempSync(join(tmpdir(), "kedge-sa-")), "token");
    writeFileSync(tokenFile, "test-token");
    useKubernetesConfig(create(KubernetesConfigSchema, { apiUrl: kube.url, caFile: kube.caFile, tokenFile }));
    const config = (name: string) => create(HttpBackendSchema, { name, resolver: { case: "k8s", value: { dnsPortName: "web.prod:http" } } });
    const before = kube.openWatches;
    const one = new HttpBackend(config("one"));
    const two = new HttpBackend(config("two"));
    one.start();
    two.start();
    await until("both backends to resolve", () => one.endpointCount === 1 && two.endpointCount === 1);
    expect(kube.openWatches - before).toBe(1);
    one.close();
    expect(kube.openWatches - before).toBe(1);
    two.close();
    await until("the watch to end", () => kube.openWatches === before);
  });

  it("feeds a worker from the supervisor's messages: a snapshot at start, then each change, with no watch of its own", async () => {
    const supervisor = newSets();
    const worker = newSets();
    worker.receiveFromSupervisor();
    const toWorker: EndpointSetsMessage[] = [];
    supervisor.publishTo((m) => {
      toWorker.push(m);
      worker.receive(overIpc(m));
    });
    const watchesBefore = sliceWatches();
    const held = follow(supervisor, "web.prod:http");
    await until("the supervisor to see the endpoint", () => held.last() === "10.0.0.1:8001");

    const served = follow(worker, "web.prod:http");
    expect(served.last()).toBe("10.0.0.1:8001");

    kube.apply(endpointSlice("prod", "web", "web-2", [{ name: "http", port: 8002 }], [{ ip: "10.0.0.2" }]));
    await until("the worker to see the added endpoint", () => served.last() === "10.0.0.1:8001,10.0.0.2:8002");
    kube.remove(slices, "EndpointSlice", "prod", "web-1");
    await until("the worker to lose the removed endpoint", () => served.last() === "10.0.0.2:8002");

    // A worker that (re)starts gets the supervisor's snapshot before its backends ask.
    const restarted = newSets();
    restarted.receiveFromSupervisor();
    restarted.receive(overIpc(supervisor.snapshot()));
    expect(follow(restarted, "web.prod:http").last()).toBe("10.0.0.2:8002");

    expect(sliceWatches() - watchesBefore).toBe(1);
    expect(toWorker.every((m) => m.type === "k8s-endpoints")).toBe(true);
    held.resolver.stop();
    expect(toWorker.at(-1)).toEqual({ type: "k8s-endpoints", snapshot: false, sets: { "web.prod:http": null } });
  });

  it("passes the API server's errors on, keeping the last known addresses", async () => {
    const supervisor = newSets();
    const worker = newSets();
    worker.receiveFromSupervisor();
    supervisor.publishTo((m) => worker.receive(overIpc(m)));
    const held = follow(supervisor, "web.prod:http");
    const served = follow(worker, "web.prod:http");
    await until("the worker to resolve", () => served.last() === "10.0.0.2:8002");
    kube.tokens = [];
    kube.dropWatches();
    try {
      await until("the error to reach the worker", () => served.errors.length > 0);
      expect(served.errors[0]).toContain("401");
      const late = follow(worker, "web.prod:http");
      expect([late.last(), late.errors.length]).toEqual(["10.0.0.2:8002", 1]);
    } finally {
      kube.tokens = ["test-token"];
      held.resolver.stop();
    }
  });

  it("moves a target's watch to a new client when the API server settings change", async () => {
    let client = new KubeClient({ server: kube.url, ca: kube.ca, token: "test-token" });
    const sets = new K8sEndpointSets(() => client);
    const before = kube.openWatches;
    const first = follow(sets, "web.prod:http");
    await until("the first watch", () => kube.openWatches === before + 1 && first.last() === "10.0.0.2:8002");
    client = new KubeClient({ server: kube.url, ca: kube.ca, token: "rotated" });
    kube.tokens = ["test-token", "rotated"];
    try {
      const second = follow(sets, "web.prod:http");
      expect(second.last()).toBe("10.0.0.2:8002");
      // Only the new client can come back after the streams are cut.
      kube.tokens = ["rotated"];
      kube.dropWatches();
      kube.apply(endpointSlice("prod", "web", "web-3", [{ name: "http", port: 8003 }], [{ ip: "10.0.0.3" }]));
      await until("the change to arrive on the new client's watch", () => second.last() === "10.0.0.2:8002,10.0.0.3:8003");
      expect([first.errors, second.errors, kube.openWatches - before]).toEqual([[], [], 1]);
      first.resolver.stop();
      second.resolver.stop();
      await until("no watch left", () => kube.openWatches === before);
    } finally {
      kube.tokens = ["test-token"];
      kube.remove(slices, "EndpointSlice", "prod", "web-3");
    }
  });

  it("rejects a malformed target in a worker as in one process", () => {
    const worker = newSets();
    worker.receiveFromSupervisor();
    expect(() => worker.resolver("no port here")).toThrow();
  });
});
