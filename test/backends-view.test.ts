import { describe, expect, it } from "bun:test";
import { mergeBackendsViews, type BackendsView } from "../src/server/backends-view.ts";

// What /debug/backends and the AdminService show with workers: each worker's live backends,
// as they cross the IPC channel (JSON), merged into one view of the process.

const inService = { ejected: false, ejections: 0, ejectionMs: 0 };

const worker = (outstanding: number, healthy: boolean, open: number, connected: boolean): BackendsView =>
  JSON.parse(
    JSON.stringify({
      http: [{ name: "web", resolver: "static", endpoints: [{ address: "10.0.0.1:80", healthy, outstanding, pool: { open, idle: 1, waiting: 0 }, ...inService }] }],
      grpc: [{ name: "greeter", resolver: "k8s:///greeter.ns:8080", endpoints: [{ address: "10.0.0.2:8080", healthy: true, outstanding: 1, pool: { connected, activeStreams: 1, sessionsOpened: 1 }, ...inService }] }],
    }),
  );

describe("backends merged across workers", () => {
  const merged = mergeBackendsViews([
    { worker: "0", view: worker(3, true, 2, true) },
    { worker: "1", view: worker(4, false, 5, false) },
  ]);

  it("sums an endpoint's requests in flight and its pool's counts", () => {
    const [web] = merged.http;
    expect(web.endpoints).toHaveLength(1);
    expect(web.endpoints[0]).toMatchObject({ address: "10.0.0.1:80", outstanding: 7, pool: { open: 7, idle: 2, waiting: 0 } });
  });

  it("calls an endpoint healthy only where every worker finds it healthy, and lists each worker's own state", () => {
    const [web] = merged.http;
    expect(web.endpoints[0].healthy).toBe(false);
    expect(web.endpoints[0].workers).toEqual([
      { worker: "0", healthy: true, outstanding: 3, pool: { open: 2, idle: 1, waiting: 0 }, ...inService },
      { worker: "1", healthy: false, outstanding: 4, pool: { open: 5, idle: 1, waiting: 0 }, ...inService },
    ]);
  });

  it("calls an endpoint ejected, or failing its checks, where any worker finds it so", () => {
    const one = (health: object): BackendsView => ({
      http: [{ name: "web", resolver: "static", endpoints: [{ address: "10.0.0.1:80", healthy: true, outstanding: 0, pool: {}, ...inService, ...health }] }],
      grpc: [],
    });
    const view = mergeBackendsViews([
      { worker: "1", view: one({ healthCheck: "passing" }) },
      { worker: "2", view: one({ healthy: false, ejected: true, ejections: 2, ejectionMs: 60_000, healthCheck: "failing" }) },
      { worker: "3", view: one({ healthCheck: "passing", ejections: 1, ejectionMs: 30_000 }) },
    ]);
    const [endpoint] = view.http[0].endpoints;
    expect(endpoint).toMatchObject({ healthy: false, ejected: true, ejections: 2, ejectionMs: 60_000, healthCheck: "failing" });
    expect(endpoint.workers!.map((w) => [w.worker, w.ejected, w.healthCheck])).toEqual([["1", false, "passing"], ["2", true, "failing"], ["3", false, "passing"]]);
  });

  it("keeps a gRPC endpoint connected while any worker holds a session", () => {
    const [greeter] = merged.grpc;
    expect(greeter).toMatchObject({ name: "greeter", resolver: "k8s:///greeter.ns:8080" });
    expect(greeter.endpoints[0]).toMatchObject({ healthy: true, outstanding: 2, pool: { connected: true, activeStreams: 2, sessionsOpened: 2 } });
  });

  it("shows a backend or endpoint only one worker has (a reload half applied, a resolver update in flight)", () => {
    const lone: BackendsView = { http: [{ name: "new", resolver: "static", endpoints: [{ address: "10.0.0.9:80", healthy: true, outstanding: 0, pool: { open: 0, idle: 0, waiting: 0 }, ...inService }] }], grpc: [] };
    const view = mergeBackendsViews([{ worker: "0", view: worker(0, true, 0, false) }, { worker: "1", view: lone }]);
    expect(view.http.map((b) => b.name)).toEqual(["web", "new"]);
    expect(view.http[1].endpoints[0].workers?.map((w) => w.worker)).toEqual(["1"]);
  });
});
