import { KedgeError } from "../errors.js";
import { log } from "../observe/log.js";
import type { Balancer } from "./balancer.js";
import type { Endpoint, Resolver } from "./endpoint.js";
import type { HealthCheck, OutlierDetection } from "../gen/kedge/config/v1/health_pb.js";
import { HealthChecker, type Probe } from "./health-check.js";
import type { KedgeHop } from "./kedge-tier.js";
import { OutlierDetector } from "./outlier-detection.js";
import { Tier } from "./tier.js";

/** What a backend keeps per endpoint: a connection pool (HTTP/1.1) or a shared session (HTTP/2). */
export interface EndpointPool<Stats> {
  readonly stats: Stats;
  close(): void;
}

export interface EndpointView<Stats> {
  address: string;
  /** 0: the backend's own resolver; 1…: its failover tiers. */
  tier: number;
  healthy: boolean;
  outstanding: number;
  pool: Stats;
  /** Outlier detection has it out now. */
  ejected: boolean;
  /** Its ejections the next one doubles over. */
  ejections: number;
  /** How long its latest ejection lasts (ms); 0: never ejected. */
  ejectionMs: number;
  /** Active checks' verdict; undefined when nothing checks it. */
  healthCheck: "passing" | "failing" | undefined;
}

/** Where one tier's endpoints come from and how each is reached. */
export interface TierSource<Pool> {
  resolver: Resolver;
  makePool: (host: string, port: number) => Pool;
  /** Set for another cluster's kedge. */
  hop?: KedgeHop;
}

const noop = () => {};

/**
 * A named backend: tiers of endpoints (its own resolver's, then its failover tiers'), each with a
 * balancer and a warm pool per endpoint. Requests go to the first tier with a healthy endpoint.
 * Endpoint updates keep the pools of addresses that remain, so in-flight requests and warm
 * connections survive re-resolution and config reloads.
 */
export class Backend<Stats, Pool extends EndpointPool<Stats>> {
  /** Tier 0 is the backend's own resolver; the others its failover tiers, in order. */
  readonly tiers: readonly Tier<Pool>[];
  /**
   * The tier whose endpoint answered last where new requests go now (kedge_backend_active_tier).
   * It moves on answers, not on picks: a request probing an earlier tier whose backoff ran out
   * and failing there again changes nothing.
   */
  activeTier = 0;
  /** Attempts in flight that are a route policy's retries: what the retry budget bounds. */
  retriesInFlight = 0;
  /** Active health checks (health_check), when configured: from start() to close(). */
  private checker: { start(): void; close(): void } | undefined = undefined;
  private closed = false;
  private successor: this | undefined;
  private firstAnswer: { promise: Promise<void>; resolve: () => void } | undefined = Promise.withResolvers<void>();

  constructor(
    readonly name: string,
    sources: readonly TierSource<Pool>[],
    makeBalancer: () => Balancer,
    /** How long an endpoint whose dial failed is skipped at first (doubling per failure). */
    readonly failureBackoffMs: number,
  ) {
    this.tiers = sources.map((s, i) => new Tier(name, i, s.resolver, makeBalancer(), s.makePool, s.hop));
  }

  /** What the backend's own resolver follows, for the admin API: "host web.internal:8080", "srv …", "static …". */
  get resolverDescription(): string {
    return this.tiers[0].description;
  }

  /**
   * Outlier detection and active checks as the config asks, over every tier; the concrete
   * backend's constructor calls it with its protocol's probe. Each tier has its own detector, so
   * max_ejection_percent bounds the share of that tier's endpoints out at once: with 100 a whole
   * tier may go and its requests fail over, and a flaky failover tier never takes room from the
   * backend's own endpoints.
   */
  protected watchHealth(config: { outlierDetection?: OutlierDetection; healthCheck?: HealthCheck }, probe: Probe<Pool> | undefined): void {
    const outlier = config.outlierDetection;
    if (outlier) for (const tier of this.tiers) tier.outlier = new OutlierDetector(this.name, outlier, () => tier.endpoints.length);
    if (config.healthCheck && probe) this.checker = new HealthChecker(this, config.healthCheck, probe);
  }

  start(): void {
    this.checker?.start();
    const tiers = this.tiers;
    tiers[0].start(() => this.settleFirstAnswer());
    for (let i = 1; i < tiers.length; i++) tiers[i].start(noop);
  }

  private settleFirstAnswer(): void {
    this.firstAnswer?.resolve();
    this.firstAnswer = undefined;
  }

  /**
   * Resolves once the backend's own resolver answered for the first time (addresses or an
   * error), so requests arriving right after start or a reload wait for DNS instead of failing.
   * Undefined when it has.
   */
  get pendingResolution(): Promise<void> | undefined {
    return this.firstAnswer?.promise;
  }

  /**
   * Picks an endpoint, skipping ones this request already failed on (and tiers it used up its
   * tries in): from the first tier with a healthy endpoint; when no tier has one, from the first
   * tier with any, as a backend without tiers tries its unhealthy endpoints anyway (the earliest
   * tier is where traffic should return first). Throws KedgeError when none is left.
   */
  pick(skip?: ReadonlySet<Endpoint>): Endpoint {
    const tiers = this.tiers;
    if (tiers.length === 1) {
      const own = tiers[0];
      const endpoint = own.endpoints.length > 0 ? own.balancer.pick(own.endpoints, skip) : undefined;
      if (!endpoint) throw this.noEndpoint();
      return endpoint;
    }
    let fallback: Tier<Pool> | undefined;
    for (const tier of tiers) {
      if (skip !== undefined && tier.exhaustedBy(skip)) continue;
      if (tier.hasHealthyEndpoint(skip)) return this.pickIn(tier, skip);
      if (fallback === undefined && tier.hasEndpointOutside(skip)) fallback = tier;
    }
    if (fallback) return this.pickIn(fallback, skip);
    throw this.noEndpoint();
  }

  private pickIn(tier: Tier<Pool>, skip: ReadonlySet<Endpoint> | undefined): Endpoint {
    return tier.balancer.pick(tier.endpoints, skip)!;
  }

  private noEndpoint(): KedgeError {
    const count = this.endpointCount;
    if (count === 0) {
      const own = this.tiers[0];
      const why = own.resolveError ?? (own.resolved ? "resolver returned no addresses" : "resolution in progress");
      return new KedgeError("no-resolution-available", 503, `backend ${this.name}: no endpoints (${why})`);
    }
    return new KedgeError("no-connection-to-all-resolved-addresses", 502, `backend ${this.name}: no connection to any of ${count} resolved addresses`);
  }

  /** A request that failed on `failed` has a tier left to try. */
  hasUntried(failed: ReadonlySet<Endpoint>): boolean {
    for (const tier of this.tiers) if (!tier.exhaustedBy(failed)) return true;
    return false;
  }

  /**
   * An endpoint of `tier` answered: the active tier moves there when that is also where new
   * requests go now. Late answers from a tier traffic already left do not move it back.
   */
  answeredFrom(tier: number): void {
    if (tier === this.activeTier || tier !== this.preferredTier()) return;
    const from = this.activeTier;
    this.activeTier = tier;
    const fields = { backend: this.name, from, to: tier, resolver: this.tiers[tier].description };
    if (tier > from) log.warn("backend tier changed", fields);
    else log.info("backend tier changed", fields);
  }

  /** The first tier with a healthy endpoint; -1 when none has one. */
  private preferredTier(): number {
    for (const tier of this.tiers) if (tier.hasHealthyEndpoint()) return tier.index;
    return -1;
  }

  /** An attempt at `endpoint` failed (a dial, a reset, a 5xx, UNAVAILABLE): its tier's outlier detection hears of it. */
  failedAt(endpoint: Endpoint): void {
    this.tiers[endpoint.tier]?.outlier?.failed(endpoint);
  }

  /** The pool of an endpoint still in the set; undefined once re-resolution dropped it. */
  poolFor(endpoint: Endpoint): Pool | undefined {
    return this.tiers[endpoint.tier]?.pools.get(endpoint);
  }

  /** Endpoints in every tier. */
  get endpointCount(): number {
    let n = 0;
    for (const tier of this.tiers) n += tier.endpoints.length;
    return n;
  }

  /** Attempts in flight on the endpoints of every tier, retries included; summed when asked, so a request pays nothing for it. */
  get requestsInFlight(): number {
    let n = 0;
    for (const tier of this.tiers) for (const e of tier.endpoints) n += e.outstanding;
    return n;
  }

  /**
   * The endpoints active health checks probe, tier by tier: every tier's but a kedge tier's
   * without `health_check_host` (its kedge routes a check by a Host kedge cannot guess).
   */
  get checkedEndpoints(): readonly Endpoint[] {
    const tiers = this.tiers;
    return tiers.length === 1 ? tiers[0].endpoints : tiers.flatMap((t) => (t.checked ? t.endpoints : []));
  }

  /**
   * Some endpoint of some tier is healthy: not ejected, not failing its checks, not backing off
   * after a failed dial. Without one the balancer still tries them all.
   */
  hasHealthyEndpoint(): boolean {
    return this.preferredTier() >= 0;
  }

  view(): EndpointView<Stats>[] {
    const out: EndpointView<Stats>[] = [];
    const checked = this.checker !== undefined;
    for (const tier of this.tiers) {
      const tierChecked = checked && tier.checked;
      for (const e of tier.endpoints) {
        out.push({
          address: e.address,
          tier: tier.index,
          healthy: e.healthy,
          outstanding: e.outstanding,
          pool: tier.pools.get(e)!.stats,
          ejected: e.ejected,
          ejections: e.ejections,
          ejectionMs: e.ejectionMs,
          healthCheck: tierChecked ? (e.failingChecks ? "failing" : "passing") : undefined,
        });
      }
    }
    return out;
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
    this.checker?.close();
    this.settleFirstAnswer();
    for (const tier of this.tiers) tier.close();
  }
}
