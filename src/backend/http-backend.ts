import { readFileSync } from "node:fs";
import type { TLSOptions } from "bun";
import type { Duration } from "@bufbuild/protobuf/wkt";
import type { HttpBackend as HttpBackendConfig } from "../gen/kedge/config/v1/backend_pb.js";
import { KedgeError } from "../errors.js";
import { log } from "../observe/log.js";
import { H1Pool, type PoolOptions, type PoolStats } from "../upstream/h1-pool.js";
import { balancerFor, type Balancer } from "./balancer.js";
import { Endpoint, type ResolvedAddress, type Resolver } from "./endpoint.js";
import { resolverFor } from "./resolvers.js";
import { formatHostPort } from "../router/host.js";

export const defaults = {
  connectTimeoutMs: 5_000,
  responseHeaderTimeoutMs: 60_000,
  idleTimeoutMs: 300_000,
  keepAliveMs: 60_000,
  maxConnectionsPerEndpoint: 256,
  failureBackoffMs: 1_000,
  maxFailureBackoffMs: 30_000,
};

export function durationMs(d: Duration | undefined, fallback: number): number {
  if (!d) return fallback;
  return Number(d.seconds) * 1000 + Math.round(d.nanos / 1e6);
}

/** TLS towards a backend: kedge Go could only skip verification; we verify with a CA, SNI and mTLS. */
export function backendTls(security: HttpBackendConfig["security"]): TLSOptions | undefined {
  if (!security) return undefined;
  const read = (f: string) => readFileSync(f, "utf8");
  return {
    rejectUnauthorized: !security.insecureSkipVerify,
    ca: security.caFiles.length > 0 ? security.caFiles.map(read) : undefined,
    serverName: security.serverName || undefined,
    cert: security.clientCertFile ? read(security.clientCertFile) : undefined,
    key: security.clientKeyFile ? read(security.clientKeyFile) : undefined,
  };
}

export interface EndpointView {
  address: string;
  healthy: boolean;
  outstanding: number;
  pool: PoolStats;
}

/**
 * A named HTTP backend: a resolver feeding endpoints, a balancer picking among them, and a warm
 * connection pool per endpoint. Endpoint updates keep the pools of addresses that remain, so
 * in-flight requests and warm connections survive re-resolution and config reloads.
 */
export class HttpBackend {
  private endpoints: Endpoint[] = [];
  private readonly pools = new Map<Endpoint, H1Pool>();
  private readonly balancer: Balancer;
  private readonly resolver: Resolver;
  private resolveError: string | undefined;
  private resolved = false;
  private firstAnswer: { promise: Promise<void>; resolve: () => void } | undefined = Promise.withResolvers<void>();
  readonly poolOptions: Omit<PoolOptions, "host" | "port">;
  readonly failureBackoffMs: number;

  constructor(readonly config: HttpBackendConfig) {
    const t = config.timeouts;
    this.poolOptions = {
      tls: backendTls(config.security),
      maxConnections: config.maxConnectionsPerEndpoint || defaults.maxConnectionsPerEndpoint,
      connectTimeoutMs: durationMs(t?.connect, defaults.connectTimeoutMs),
      responseHeaderTimeoutMs: durationMs(t?.responseHeader, defaults.responseHeaderTimeoutMs),
      idleTimeoutMs: durationMs(t?.idle, defaults.idleTimeoutMs),
      keepAliveMs: durationMs(t?.keepalive, defaults.keepAliveMs),
    };
    this.failureBackoffMs = durationMs(config.failureBackoff, defaults.failureBackoffMs);
    this.balancer = balancerFor(config.balancer);
    this.resolver = resolverFor(config);
  }

  get name(): string {
    return this.config.name;
  }

  start(): void {
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
        this.pools.set(e, new H1Pool({ ...this.poolOptions, host: a.host, port: a.port, tls: this.tlsFor(a.host) }));
        next.push(e);
      }
    }
    for (const gone of byAddress.values()) {
      this.pools.get(gone)?.close();
      this.pools.delete(gone);
    }
    this.endpoints = next;
    log.debug("backend endpoints updated", { backend: this.name, endpoints: next.map((e) => e.address) });
  }

  private tlsFor(host: string): TLSOptions | undefined {
    const tls = this.poolOptions.tls;
    // SNI defaults to the configured name, not the resolved IP.
    if (!tls || tls.serverName) return tls;
    const r = this.config.resolver;
    const name = r.case === "host" || r.case === "srv" ? r.value.dnsName : host;
    return { ...tls, serverName: name };
  }

  /** Picks an endpoint, skipping ones this request already failed on. Throws KedgeError when none is left. */
  pick(skip?: ReadonlySet<Endpoint>): { endpoint: Endpoint; pool: H1Pool } {
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
  poolFor(endpoint: Endpoint): H1Pool | undefined {
    return this.pools.get(endpoint);
  }

  get endpointCount(): number {
    return this.endpoints.length;
  }

  view(): EndpointView[] {
    return this.endpoints.map((e) => ({ address: e.address, healthy: e.healthy, outstanding: e.outstanding, pool: this.pools.get(e)!.stats }));
  }

  close(): void {
    this.resolver.stop();
    this.settleFirstAnswer();
    for (const pool of this.pools.values()) pool.close();
    this.pools.clear();
    this.endpoints = [];
  }
}
