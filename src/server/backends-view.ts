import type { Runtime } from "../runtime.js";

/** One endpoint as /debug/backends and the AdminService show it; `pool` is its connection pool's stats. */
export interface EndpointState {
  readonly address: string;
  readonly healthy: boolean;
  readonly outstanding: number;
  readonly pool: Readonly<Record<string, number | boolean>>;
  /** Merged views only: each worker's own state of this endpoint. */
  readonly workers?: ReadonlyArray<{ readonly worker: string; readonly healthy: boolean; readonly outstanding: number; readonly pool: Readonly<Record<string, number | boolean>> }>;
}

export interface BackendState {
  readonly name: string;
  readonly resolver: string;
  readonly endpoints: readonly EndpointState[];
}

/** The live backends of one process, JSON-able: what a worker hands its supervisor. */
export interface BackendsView {
  readonly http: readonly BackendState[];
  readonly grpc: readonly BackendState[];
}

type LiveBackend = { name: string; resolverDescription: string; view(): ReadonlyArray<{ address: string; healthy: boolean; outstanding: number; pool: object }> };

function backendState(b: LiveBackend): BackendState {
  return {
    name: b.name,
    resolver: b.resolverDescription,
    endpoints: b.view().map((e) => ({ address: e.address, healthy: e.healthy, outstanding: e.outstanding, pool: { ...(e.pool as Record<string, number | boolean>) } })),
  };
}

export function backendsView(runtime: Runtime): BackendsView {
  return { http: [...runtime.httpBackends.values()].map(backendState), grpc: [...runtime.grpcBackends.values()].map(backendState) };
}

/** Numbers add up (connections, streams, queued requests); a flag holds if it holds in any worker (a connected session). */
function mergePools(a: Readonly<Record<string, number | boolean>>, b: Readonly<Record<string, number | boolean>>): Record<string, number | boolean> {
  const out: Record<string, number | boolean> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const mine = out[k];
    out[k] = typeof v === "number" ? (typeof mine === "number" ? mine : 0) + v : mine === true || v;
  }
  return out;
}

function mergeBackends(views: ReadonlyArray<{ worker: string; backends: readonly BackendState[] }>): BackendState[] {
  const byName = new Map<string, { name: string; resolver: string; endpoints: Map<string, EndpointState> }>();
  for (const { worker, backends } of views) {
    for (const b of backends) {
      let merged = byName.get(b.name);
      if (merged === undefined) byName.set(b.name, (merged = { name: b.name, resolver: b.resolver, endpoints: new Map() }));
      for (const e of b.endpoints) {
        const mine = { worker, healthy: e.healthy, outstanding: e.outstanding, pool: e.pool };
        const seen = merged.endpoints.get(e.address);
        merged.endpoints.set(
          e.address,
          seen === undefined
            ? { address: e.address, healthy: e.healthy, outstanding: e.outstanding, pool: e.pool, workers: [mine] }
            : { address: e.address, healthy: seen.healthy && e.healthy, outstanding: seen.outstanding + e.outstanding, pool: mergePools(seen.pool, e.pool), workers: [...seen.workers!, mine] },
        );
      }
    }
  }
  return [...byName.values()].map((b) => ({ name: b.name, resolver: b.resolver, endpoints: [...b.endpoints.values()] }));
}

/**
 * The workers' backends as one process's: an endpoint's requests in flight and pool counts summed,
 * healthy only where every worker finds it healthy (each worker keeps its own passive health), and
 * each worker's own numbers under `workers`.
 */
export function mergeBackendsViews(views: ReadonlyArray<{ worker: string; view: BackendsView }>): BackendsView {
  return {
    http: mergeBackends(views.map(({ worker, view }) => ({ worker, backends: view.http }))),
    grpc: mergeBackends(views.map(({ worker, view }) => ({ worker, backends: view.grpc }))),
  };
}
