import type { Backend, EndpointPool } from "../backend/backend.js";
import type { Runtime } from "../runtime.js";

/** An endpoint's health beyond `healthy`: outlier detection's and the active checks' verdicts. */
export interface EndpointHealthState {
  /** Outlier detection has it out now. */
  readonly ejected: boolean;
  /** Its ejections the next one doubles over. */
  readonly ejections: number;
  /** How long its latest ejection lasts (ms); 0: never ejected. */
  readonly ejectionMs: number;
  /** "passing" or "failing" its active health checks; absent without any. */
  readonly healthCheck?: "passing" | "failing";
}

/** One endpoint as /debug/backends and the AdminService show it; `pool` is its connection pool's stats. */
export interface EndpointState extends EndpointHealthState {
  readonly address: string;
  /** Its failover tier (1…); absent for the backend's own resolver's endpoints. */
  readonly tier?: number;
  readonly healthy: boolean;
  readonly outstanding: number;
  readonly pool: Readonly<Record<string, number | boolean>>;
  /** Merged views only: each worker's own state of this endpoint. */
  readonly workers?: ReadonlyArray<WorkerEndpointState>;
}

interface WorkerEndpointState extends EndpointHealthState {
  readonly worker: string;
  readonly healthy: boolean;
  readonly outstanding: number;
  readonly pool: Readonly<Record<string, number | boolean>>;
}

export interface BackendState {
  readonly name: string;
  readonly resolver: string;
  readonly endpoints: readonly EndpointState[];
  /** Backends with failover tiers: what tiers 1… follow, and the tier requests go to now (merged: the furthest any worker uses). */
  readonly failover?: readonly string[];
  readonly activeTier?: number;
}

/** The live backends of one process, JSON-able: what a worker hands its supervisor. */
export interface BackendsView {
  readonly http: readonly BackendState[];
  readonly grpc: readonly BackendState[];
}

type LiveBackend = Pick<Backend<object, EndpointPool<object>>, "name" | "resolverDescription" | "tiers" | "activeTier" | "view">;

function backendState(b: LiveBackend): BackendState {
  const endpoints = b.view().map((e) => ({
    address: e.address,
    ...(e.tier > 0 ? { tier: e.tier } : {}),
    healthy: e.healthy,
    outstanding: e.outstanding,
    pool: { ...(e.pool as Record<string, number | boolean>) },
    ...healthOf(e),
  }));
  if (b.tiers.length === 1) return { name: b.name, resolver: b.resolverDescription, endpoints };
  return { name: b.name, resolver: b.resolverDescription, endpoints, failover: b.tiers.slice(1).map((t) => t.description), activeTier: b.activeTier };
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

function healthOf(e: EndpointHealthState): EndpointHealthState {
  return { ejected: e.ejected, ejections: e.ejections, ejectionMs: e.ejectionMs, ...(e.healthCheck && { healthCheck: e.healthCheck }) };
}

/** Out in any worker is out (as `healthy` holds only where it holds in every worker). */
function mergeHealth(a: EndpointHealthState, b: EndpointHealthState): EndpointHealthState {
  const check = a.healthCheck === "failing" || b.healthCheck === "failing" ? "failing" : (a.healthCheck ?? b.healthCheck);
  return { ejected: a.ejected || b.ejected, ejections: Math.max(a.ejections, b.ejections), ejectionMs: Math.max(a.ejectionMs, b.ejectionMs), ...(check && { healthCheck: check }) };
}

function mergeBackends(views: ReadonlyArray<{ worker: string; backends: readonly BackendState[] }>): BackendState[] {
  const byName = new Map<string, { name: string; resolver: string; endpoints: Map<string, EndpointState>; failover?: readonly string[]; activeTier?: number }>();
  for (const { worker, backends } of views) {
    for (const b of backends) {
      let merged = byName.get(b.name);
      if (merged === undefined) byName.set(b.name, (merged = { name: b.name, resolver: b.resolver, endpoints: new Map(), failover: b.failover }));
      if (b.activeTier !== undefined) merged.activeTier = Math.max(merged.activeTier ?? 0, b.activeTier);
      for (const e of b.endpoints) {
        const mine = { worker, healthy: e.healthy, outstanding: e.outstanding, pool: e.pool, ...healthOf(e) };
        // One address may serve two tiers (a static list and a kedge's): they stay apart.
        const key = e.tier ? `${e.tier} ${e.address}` : e.address;
        const tier = e.tier ? { tier: e.tier } : {};
        const seen = merged.endpoints.get(key);
        merged.endpoints.set(
          key,
          seen === undefined
            ? { address: e.address, ...tier, healthy: e.healthy, outstanding: e.outstanding, pool: e.pool, ...healthOf(e), workers: [mine] }
            : { address: e.address, ...tier, healthy: seen.healthy && e.healthy, outstanding: seen.outstanding + e.outstanding, pool: mergePools(seen.pool, e.pool), ...mergeHealth(seen, e), workers: [...seen.workers!, mine] },
        );
      }
    }
  }
  return [...byName.values()].map((b) => ({
    name: b.name,
    resolver: b.resolver,
    endpoints: [...b.endpoints.values()],
    ...(b.failover ? { failover: b.failover, activeTier: b.activeTier ?? 0 } : {}),
  }));
}

/**
 * The workers' backends as one process's: an endpoint's requests in flight and pool counts summed,
 * healthy only where every worker finds it healthy, ejected or failing checks where any worker
 * finds it so (each worker keeps its own passive and active health), and each worker's own numbers
 * under `workers`.
 */
export function mergeBackendsViews(views: ReadonlyArray<{ worker: string; view: BackendsView }>): BackendsView {
  return {
    http: mergeBackends(views.map(({ worker, view }) => ({ worker, backends: view.http }))),
    grpc: mergeBackends(views.map(({ worker, view }) => ({ worker, backends: view.grpc }))),
  };
}
