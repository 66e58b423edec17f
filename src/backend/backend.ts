import { KedgeError } from "../errors.js";
import { log } from "../observe/log.js";
import { formatHostPort } from "../net/host-port.js";
import type { Balancer } from "./balancer.js";
import { Endpoint, type ResolvedAddress, type Resolver } from "./endpoint.js";
import type { HealthCheck, OutlierDetection } from "../gen/kedge/config/v1/health_pb.js";
import { HealthChecker, type Probe } from "./health-check.js";
import { OutlierDetector } from "./outlier-detection.js";

/** What a backend keeps per endpoint: a connection pool (HTTP/1.1) or a shared session (HTTP/2). */
export interface EndpointPool<Stats> {
  readonly stats: Stats;
  close(): void;
}

export interface EndpointView<Stats> {
  address: string;
  healthy: boolean;
  outstanding: number;
  pool: Stats;
  /** Outlier detection has it out now. */
  ejected: boolean;
  /** Its ejections the next one doubles over. */
  ejections: number;
  /** How long its latest ejection lasts (ms); 0: never ejected. */
  ejectionMs: number;
  /** Active checks' verdict; undefined when the backend has none. */
  healthCheck: "passing" | "failing" | undefined;
}

/**
 * A named backend: a resolver feeding endpoints, a balancer picking among them, and a warm pool
 * per endpoint. Endpoint updates keep the pools of addresses that remain, so in-flight requests
 * and warm connections survive re-resolution and config reloads.
 */
export class Backend<Stats, Pool extends EndpointPool<Stats>> {
  private endpoints: Endpoint[] = [];
  private readonly pools = new Map<Endpoint, Pool>();
  private resolveError: string | undefined;
  private resolved = false;
  private closed = false;
  private successor: this | undefined;
  private firstAnswer: { promise: Promise<void>; resolve: () => void } | undefined = Promise.withResolvers<void>();
  /** Attempts in flight that are a route policy's retries: what the retry budget bounds. */
  retriesInFlight = 0;
  /** Passive health (outlier_detection), when configured: told of each failed attempt. */
  outlier: OutlierDetector | undefined = undefined;
  /** Active health checks (health_check), when configured: from start() to close(). */
  private checker: { start(): void; close(): void } | undefined = undefined;

  constructor(
    readonly name: string,
    private readonly resolver: Resolver,
    private readonly balancer: Balancer,
    private readonly makePool: (host: string, port: number) => Pool,
    /** How long an endpoint whose dial failed is skipped at first (doubling per failure). */
    readonly failureBackoffMs: number,
  ) {}

  /** What the resolver follows, for the admin API: "host web.internal:8080", "srv …", "static …". */
  get resolverDescription(): string {
    return this.resolver.description;
  }

  /** Outlier detection and active checks as the config asks; the concrete backend's constructor calls it with its protocol's probe. */
  protected watchHealth(config: { outlierDetection?: OutlierDetection; healthCheck?: HealthCheck }, probe: Probe<Pool> | undefined): void {
    if (config.outlierDetection) this.outlier = new OutlierDetector(this.name, config.outlierDetection, () => this.endpoints.length);
    if (config.healthCheck && probe) this.checker = new HealthChecker(this, config.healthCheck, probe);
  }

  start(): void {
    this.checker?.start();
    this.resolver.start(
      (addresses) => this.update(addresses),
      (message) => {
        this.resolveError = message;
        this.settleFirstAnswer();
        log.warn("backend resolution failed", { backend: this.name, error: message });
      },
    );
  }

  private settleFirstAnswer(): void {
    this.firstAnswer?.resolve();
    this.firstAnswer = undefined;
  }

  /**
   * Resolves once the resolver answered for the first time (addresses or an error), so requests
   * arriving right after start or a reload wait for DNS instead of failing. Undefined when it has.
   */
  get pendingResolution(): Promise<void> | undefined {
    return this.firstAnswer?.promise;
  }

  private update(addresses: ResolvedAddress[]): void {
    this.resolved = true;
    this.settleFirstAnswer();
    this.resolveError = undefined;
    const byAddress = new Map(this.endpoints.map((e) => [e.address, e]));
    const next: Endpoint[] = [];
    for (const a of addresses) {
      const existing = byAddress.get(formatHostPort(a.host, a.port));
      if (existing) {
        byAddress.delete(existing.address);
        next.push(existing);
      } else {
        const e = new Endpoint(a.host, a.port);
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
    log.debug("backend endpoints updated", { backend: this.name, endpoints: next.map((e) => e.address) });
  }

  /** Picks an endpoint, skipping ones this request already failed on. Throws KedgeError when none is left. */
  pick(skip?: ReadonlySet<Endpoint>): { endpoint: Endpoint; pool: Pool } {
    if (this.endpoints.length === 0) {
      const why = this.resolveError ?? (this.resolved ? "resolver returned no addresses" : "resolution in progress");
      throw new KedgeError("no-resolution-available", 503, `backend ${this.name}: no endpoints (${why})`);
    }
    const endpoint = this.balancer.pick(this.endpoints, skip);
    if (!endpoint) {
      throw new KedgeError("no-connection-to-all-resolved-addresses", 502, `backend ${this.name}: no connection to any of ${this.endpoints.length} resolved addresses`);
    }
    return { endpoint, pool: this.pools.get(endpoint)! };
  }

  /** The pool of an endpoint still in the set; undefined once re-resolution dropped it. */
  poolFor(endpoint: Endpoint): Pool | undefined {
    return this.pools.get(endpoint);
  }

  get endpointCount(): number {
    return this.endpoints.length;
  }

  /** Attempts in flight on its endpoints, retries included; summed when asked, so a request pays nothing for it. */
  get requestsInFlight(): number {
    let n = 0;
    for (const e of this.endpoints) n += e.outstanding;
    return n;
  }

  /** The endpoints now, in resolver order (the health checker walks them). */
  get endpointList(): readonly Endpoint[] {
    return this.endpoints;
  }

  /**
   * Some endpoint is healthy: not ejected, not failing its checks, not backing off after a failed
   * dial. Without one the balancer still tries them all, but a failover tier is worth leaving.
   */
  hasHealthyEndpoint(): boolean {
    for (const e of this.endpoints) if (e.healthy) return true;
    return false;
  }

  view(): EndpointView<Stats>[] {
    const checked = this.checker !== undefined;
    return this.endpoints.map((e) => ({
      address: e.address,
      healthy: e.healthy,
      outstanding: e.outstanding,
      pool: this.pools.get(e)!.stats,
      ejected: e.ejected,
      ejections: e.ejections,
      ejectionMs: e.ejectionMs,
      healthCheck: checked ? (e.failingChecks ? "failing" : "passing") : undefined,
    }));
  }

  /** A reload replaced it (or kedge is stopping): calls still to be sent go to its successor. */
  get isClosed(): boolean {
    return this.closed;
  }

  /**
   * The backend to send to now: this one, or when a reload retired it, the live backend that took
   * its place (following a chain of reloads). A request keeps the runtime it started with, but a
   * retired backend has no endpoints left; adhoc backends and a stopping kedge have no successor.
   */
  get live(): this {
    let backend = this;
    while (backend.closed && backend.successor) backend = backend.successor;
    return backend;
  }

  /** Stops it; requests routed to it before and sent after go to `successor`, the backend of its name in the next runtime. */
  close(successor?: this): void {
    if (successor !== this) this.successor = successor;
    this.closed = true;
    this.resolver.stop();
    this.checker?.close();
    this.outlier?.close();
    this.settleFirstAnswer();
    for (const pool of this.pools.values()) pool.close();
    this.pools.clear();
    this.endpoints = [];
  }
}
