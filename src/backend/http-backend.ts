import { readFileSync } from "node:fs";
import type { TLSOptions } from "bun";
import type { HttpBackend as HttpBackendConfig } from "../gen/kedge/config/v1/backend_pb.js";
import { H1Pool, type PoolOptions, type PoolStats } from "../upstream/h1-pool.js";
import { Backend, type TierSource } from "./backend.js";
import { balancerFor } from "./balancer.js";
import { resolverFor } from "./resolvers.js";
import { tierConfigs, type TierConfig } from "./kedge-tier.js";
import { defaults } from "../config/backend-defaults.js";
import { durationMs } from "../config/duration.js";
import { formatHostPort } from "../net/host-port.js";
import type { Endpoint } from "./endpoint.js";
import { httpProbe } from "./http-probe.js";

/** PEM material given directly instead of as files (winch: system plus extra roots, a kubeconfig user's cert). */
export interface TlsMaterial {
  ca?: string[];
  cert?: string;
  key?: string;
}

/** The roots, client cert and key a Security names, with `material` taking precedence. */
export function tlsMaterial(security: NonNullable<HttpBackendConfig["security"]>, material: TlsMaterial | undefined): TlsMaterial {
  const read = (f: string) => readFileSync(f, "utf8");
  return {
    ca: material?.ca ?? (security.caFiles.length > 0 ? security.caFiles.map(read) : undefined),
    cert: material?.cert ?? (security.clientCertFile ? read(security.clientCertFile) : undefined),
    key: material?.key ?? (security.clientKeyFile ? read(security.clientKeyFile) : undefined),
  };
}

/** TLS towards a backend: kedge Go could only skip verification; we verify with a CA, SNI and mTLS. */
export function backendTls(security: HttpBackendConfig["security"], material?: TlsMaterial): TLSOptions | undefined {
  if (!security) return undefined;
  return { rejectUnauthorized: !security.insecureSkipVerify, serverName: security.serverName || undefined, ...tlsMaterial(security, material) };
}

/** SNI defaults to the configured DNS name, not the resolved IP. */
export function sniName(config: { resolver: HttpBackendConfig["resolver"] }, host: string): string {
  const r = config.resolver;
  return r.case === "host" || r.case === "srv" ? r.value.dnsName : host;
}

/** A backend's tiers (its own resolver, then its failover list), each with pools made by `pool`. */
export function tierSources<Pool>(tiers: readonly TierConfig[], pool: (tier: TierConfig) => (host: string, port: number) => Pool): TierSource<Pool>[] {
  return tiers.map((tier) => ({ resolver: resolverFor(tier), makePool: pool(tier), hop: tier.hop }));
}

/**
 * What a health check names as an endpoint's host: its tier's DNS name, as a request would, or
 * for another cluster's kedge the Host its routes take to the backend (health_check_host).
 */
export function checkAuthority(tiers: readonly TierConfig[]): (endpoint: Endpoint) => string {
  return (e) => e.hop?.checkHost || formatHostPort(sniName(tiers[e.tier], e.host), e.port);
}

/** A named HTTP/1.1 backend: endpoints from its resolver, each with a warm keep-alive pool. */
export class HttpBackend extends Backend<PoolStats, H1Pool> {
  readonly poolOptions: Omit<PoolOptions, "host" | "port">;
  /** CONNECT tunnels and switched connections close after this long without a byte either way; 0: never. */
  readonly tunnelIdleMs: number;

  constructor(readonly config: HttpBackendConfig, material?: TlsMaterial) {
    const t = config.timeouts;
    const poolOptions = {
      tls: backendTls(config.security, material),
      maxConnections: config.maxConnectionsPerEndpoint || defaults.maxConnectionsPerEndpoint,
      connectTimeoutMs: durationMs(t?.connect, defaults.connectTimeoutMs),
      responseHeaderTimeoutMs: durationMs(t?.responseHeader, defaults.responseHeaderTimeoutMs),
      idleTimeoutMs: durationMs(t?.idle, defaults.idleTimeoutMs),
      keepAliveMs: durationMs(t?.keepalive, defaults.keepAliveMs),
    };
    const tiers = tierConfigs(config);
    super(
      config.name,
      tierSources(tiers, (tier) => {
        const tierTls = tier.security === config.security ? poolOptions.tls : backendTls(tier.security, tier.hop ? undefined : material);
        return (host, port) => {
          const tls = tierTls && !tierTls.serverName ? { ...tierTls, serverName: sniName(tier, host) } : tierTls;
          return new H1Pool({ ...poolOptions, host, port, tls });
        };
      }),
      () => balancerFor(config.balancer),
      durationMs(config.failureBackoff, defaults.failureBackoffMs),
    );
    this.poolOptions = poolOptions;
    this.tunnelIdleMs = durationMs(t?.tunnelIdle, defaults.tunnelIdleMs);
    const check = config.healthCheck?.check;
    this.watchHealth(config, check?.case === "http" ? httpProbe(check.value.path, checkAuthority(tiers)) : undefined);
  }
}
