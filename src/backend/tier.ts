import { formatHostPort } from "../net/host-port.js";
import { log } from "../observe/log.js";
import type { Balancer } from "./balancer.js";
import { Endpoint, type ResolvedAddress, type Resolver } from "./endpoint.js";
import type { KedgeHop } from "./kedge-tier.js";
import type { OutlierDetector } from "./outlier-detection.js";

/** Distinct endpoints of one tier a request tries when they cannot be reached. */
export const maxEndpointAttempts = 3;

/**
 * One endpoint set of a backend: its own resolver's (tier 0) or one failover tier's, a balancer
 * picking among them and a warm pool per endpoint. Updates keep the pools of addresses that
 * remain, so in-flight requests and warm connections survive re-resolution.
 */
export class Tier<Pool extends { close(): void }> {
  endpoints: Endpoint[] = [];
  readonly pools = new Map<Endpoint, Pool>();
  resolveError: string | undefined = undefined;
  resolved = false;
  /** Passive health (the backend's outlier_detection), when configured: max_ejection_percent counts this tier's endpoints. */
  outlier: OutlierDetector | undefined = undefined;

  constructor(
    readonly backendName: string,
    readonly index: number,
    private readonly resolver: Resolver,
    readonly balancer: Balancer,
    private readonly makePool: (host: string, port: number) => Pool,
    readonly hop: KedgeHop | undefined,
  ) {}

  /** The backend's active health checks probe its endpoints: a kedge tier's only with a Host to send its kedge. */
  get checked(): boolean {
    return this.hop === undefined || this.hop.checkHost !== "";
  }

  /** What it follows, for the admin API: "host web.internal:8080", "static …", "kedge https://…". */
  get description(): string {
    return this.hop ? `kedge ${this.hop.url}` : this.resolver.description;
  }

  /** Starts resolving; `answered` hears every answer, addresses or an error. */
  start(answered: () => void): void {
    this.resolver.start(
      (addresses) => {
        this.update(addresses);
        answered();
      },
      (message) => {
        this.resolveError = message;
        answered();
        log.warn("backend resolution failed", { backend: this.backendName, tier: this.index, error: message });
      },
    );
  }

  /**
   * An endpoint not in `skip` may take requests now. The one place failover reads health: what
   * makes an endpoint unhealthy (a failed dial's backoff, ejection, failing checks) is Endpoint's.
   */
  hasHealthyEndpoint(skip?: ReadonlySet<Endpoint>): boolean {
    for (const e of this.endpoints) if (e.healthy && (skip === undefined || !skip.has(e))) return true;
    return false;
  }

  /** A request that failed on `failed` has tried as many of this tier's endpoints as it may (all, up to maxEndpointAttempts). */
  exhaustedBy(failed: ReadonlySet<Endpoint>): boolean {
    let n = 0;
    for (const e of failed) if (e.tier === this.index) n++;
    return n >= Math.min(maxEndpointAttempts, this.endpoints.length);
  }

  /** An endpoint not in `skip`, healthy or not. */
  hasEndpointOutside(skip: ReadonlySet<Endpoint> | undefined): boolean {
    if (skip === undefined) return this.endpoints.length > 0;
    for (const e of this.endpoints) if (!skip.has(e)) return true;
    return false;
  }

  private update(addresses: ResolvedAddress[]): void {
    this.resolved = true;
    this.resolveError = undefined;
    const byAddress = new Map(this.endpoints.map((e) => [e.address, e]));
    const next: Endpoint[] = [];
    for (const a of addresses) {
      const existing = byAddress.get(formatHostPort(a.host, a.port));
      if (existing) {
        byAddress.delete(existing.address);
        next.push(existing);
      } else {
        const e = new Endpoint(a.host, a.port, this.index, this.hop);
        this.pools.set(e, this.makePool(a.host, a.port));
        next.push(e);
      }
    }
    for (const gone of byAddress.values()) {
      this.pools.get(gone)?.close();
      this.pools.delete(gone);
      this.outlier?.forget(gone);
    }
    this.endpoints = next;
    log.debug("backend endpoints updated", { backend: this.backendName, tier: this.index, endpoints: next.map((e) => e.address) });
  }

  close(): void {
    this.resolver.stop();
    this.outlier?.close();
    for (const pool of this.pools.values()) pool.close();
    this.pools.clear();
    this.endpoints = [];
  }
}
