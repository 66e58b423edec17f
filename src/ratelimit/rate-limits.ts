import type { Config } from "../gen/kedge/config/v1/config_pb.js";
import type { RateLimit_Key, RateLimit } from "../gen/kedge/config/v1/rate_limit_pb.js";
import { RateLimitKey as Key } from "../config/enums.js";
import { messageKey } from "../config/message-key.js";
import type { Identity } from "../auth/identity.js";
import { identityOf } from "../observe/access-log.js";
import { addressKey } from "./address-key.js";
import { BucketLimit, KeyedBuckets, type TokenBucket } from "./token-bucket.js";

/** Buckets one caller-keyed limit holds at most, per process (about 100 bytes each). */
const maxKeysPerLimit = 65_536;

/** Which limit refused a request: server.rate_limit or the route's own (the metric's `limit` label). */
export type LimitScope = "server" | "route";

const keyNames: Record<RateLimit_Key, string> = { [Key.ROUTE]: "route", [Key.IDENTITY]: "caller identity", [Key.CLIENT_ADDRESS]: "client address" };

/**
 * The bucket of the caller the limit is keyed by: its verified token's subject, else its verified
 * certificate's (the caller its access and audit lines name), else its address.
 */
function identityKey(identity: Identity | undefined, socket: object | null | undefined, address: string): string {
  const who = identityOf(identity, socket);
  if (who.token !== undefined) return `token ${who.token}`;
  return who.cert !== undefined ? `cert ${who.cert}` : `address ${addressKey(address)}`;
}

/** One configured limit and its buckets. */
export class RateLimiter {
  readonly limit: BucketLimit;
  readonly key: RateLimit_Key;
  /** Key ROUTE on a route: one bucket for every caller. */
  private readonly shared: TokenBucket | undefined;
  /** Every other case: buckets by caller, or by route for server.rate_limit keyed by ROUTE. */
  private readonly keyed: KeyedBuckets | undefined;
  /** What a refused caller is told, without the wait. */
  readonly description: string;

  constructor(
    readonly config: RateLimit,
    readonly scope: LimitScope,
  ) {
    const burst = config.burst > 0 ? config.burst : Math.max(1, Math.ceil(config.requestsPerSecond));
    this.limit = new BucketLimit(config.requestsPerSecond, burst);
    this.key = config.key;
    if (scope === "route" && config.key === Key.ROUTE) this.shared = this.limit.full(performance.now());
    else this.keyed = new KeyedBuckets(this.limit, maxKeysPerLimit);
    const where = scope === "server" ? "server.rate_limit" : "the route's rate_limit";
    this.description = `${where} allows ${config.requestsPerSecond} requests per second (burst ${burst}) per ${keyNames[config.key] ?? "route"}`;
  }

  /**
   * Takes a token for one request: 0 when admitted, else the whole seconds until a token frees up.
   * `identity`: what the access decision resolved with (a verified token), if anything; `socket`:
   * the client connection, for its verified certificate; `routeId`: the route's stable key.
   */
  take(identity: Identity | undefined, socket: object | null | undefined, address: string, routeId: string, now: number): number {
    if (this.shared !== undefined) return this.limit.take(this.shared, now);
    const key = this.key === Key.CLIENT_ADDRESS ? addressKey(address) : this.key === Key.IDENTITY ? identityKey(identity, socket, address) : routeId;
    return this.keyed!.take(key, now);
  }
}

/** A route's limit and the key its requests have in server.rate_limit's per-route buckets. */
export interface RouteLimit {
  /** Stable across reloads while the route's config is unchanged, wherever it moves in the list. */
  readonly id: string;
  readonly limiter: RateLimiter | undefined;
}

const unlimited = (id: string): RouteLimit => ({ id, limiter: undefined });
const httpUnrouted = unlimited("http none");
const httpAdhoc = unlimited("http adhoc");
const grpcUnrouted = unlimited("grpc none");
const grpcAdhoc = unlimited("grpc adhoc");

/**
 * The rate limits of one config version, compiled with the runtime. A reload keeps the buckets of
 * every limit whose config is unchanged: a route's with the route (matched by its whole config,
 * wherever it moved), server.rate_limit's while it is unchanged. A new or changed limit starts full.
 */
export class RateLimits {
  /** Any limit is configured; when false the request path checks nothing more. */
  readonly active: boolean;
  readonly server: RateLimiter | undefined;
  private readonly http: readonly RouteLimit[];
  private readonly grpc: readonly RouteLimit[];

  constructor(config: Config, previous: RateLimits | undefined) {
    const serverConfig = config.server?.rateLimit;
    const old = previous?.server;
    if (serverConfig) this.server = old && messageKey(old.config) === messageKey(serverConfig) ? old : new RateLimiter(serverConfig, "server");
    const routeKeys = this.server?.key === Key.ROUTE;
    const kept = new Map<string, RateLimiter>();
    // A route's id is its whole config, its limit included: the same id, the same limit.
    for (const r of [...(previous?.http ?? []), ...(previous?.grpc ?? [])]) if (r.limiter) kept.set(r.id, r.limiter);
    this.http = compileRoutes("http", config.http?.routes ?? [], routeKeys, kept);
    this.grpc = compileRoutes("grpc", config.grpc?.routes ?? [], routeKeys, kept);
    this.active = this.server !== undefined || this.http.some((r) => r.limiter) || this.grpc.some((r) => r.limiter);
  }

  /** The limit of the HTTP route at `index`; undefined: an adhoc target (`adhoc`) or no route. */
  httpRoute(index: number | undefined, adhoc: boolean): RouteLimit {
    return index !== undefined ? this.http[index] ?? httpUnrouted : adhoc ? httpAdhoc : httpUnrouted;
  }

  grpcRoute(index: number | undefined, adhoc: boolean): RouteLimit {
    return index !== undefined ? this.grpc[index] ?? grpcUnrouted : adhoc ? grpcAdhoc : grpcUnrouted;
  }
}

/** Routes by index; ids (the route's JSON) only where a limit needs one, so a config without limits costs nothing. */
function compileRoutes(
  kind: string,
  routes: readonly { rateLimit?: RateLimit }[],
  routeKeys: boolean,
  kept: ReadonlyMap<string, RateLimiter>,
): RouteLimit[] {
  if (!routeKeys && !routes.some((r) => r.rateLimit)) return [];
  return routes.map((route) => {
    const id = `${kind} ${messageKey(route)}`;
    const config = route.rateLimit;
    if (!config) return unlimited(id);
    return { id, limiter: kept.get(id) ?? new RateLimiter(config, "route") };
  });
}
