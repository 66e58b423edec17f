import type { HttpBackend as HttpBackendConfig, Security } from "../gen/kedge/config/v1/backend_pb.js";
import type { KedgeTier } from "../gen/kedge/config/v1/failover_pb.js";
import { kedgeHostPort, parseKedgeUrl } from "../config/kedge-url.js";
import { WatchedFile } from "../config/watched-file.js";
import { KedgeError } from "../errors.js";
import { log } from "../observe/log.js";

/** The hop marker: how many kedges sent the request on to another kedge before it arrived. */
export const hopsHeader = "x-kedge-hops";

/** server.max_hops unset: a request failed over once is served, one failed over again is refused. */
export const defaultMaxHops = 2;

/**
 * The hops an x-kedge-hops value counts: the largest number it lists (a repeated field arrives as
 * a list or "1, 2"). Anything else is 0: only a kedge sets it, and the kedge it reaches next counts
 * one more whatever it was, so a client's value can only bring the limit nearer.
 */
export function hopCount(value: string | string[] | undefined): number {
  if (value === undefined) return 0;
  let max = 0;
  for (const part of (typeof value === "string" ? value : value.join(",")).split(",")) {
    const text = part.trim();
    if (/^\d{1,6}$/.test(text)) max = Math.max(max, Number(text));
  }
  return max;
}

/**
 * Refuses a request that already passed through `maxHops` kedges: 508 Loop Detected (gRPC
 * UNAVAILABLE). Two kedges failing over to each other would otherwise bounce it between them.
 */
export function checkHops(value: string | string[] | undefined, maxHops: number): void {
  if (value === undefined) return;
  const hops = hopCount(value);
  if (hops >= maxHops) throw new KedgeError("loop-detected", 508, `the request passed through ${hops} kedges already (server.max_hops is ${maxHops}): failover tiers loop`);
}

/**
 * What requests sent to another cluster's kedge carry besides their own fields: the hop count one
 * up, and this kedge's credential there. The token file is re-read when it changes (a rotated
 * token reaches the next request without a reload).
 */
export class KedgeHop {
  private readonly tokenFile: WatchedFile | undefined;
  private lastToken = "";

  constructor(
    readonly url: string,
    tokenFile: string,
    /** The Host (gRPC :authority) of health checks sent there; "": none are. */
    readonly checkHost = "",
  ) {
    this.tokenFile = tokenFile ? new WatchedFile(tokenFile) : undefined;
  }

  /** `set` with x-kedge-hops and Proxy-Authorization added, for a request that arrived with `hops`. */
  fields(hops: string | string[] | undefined, set: Readonly<Record<string, string>> | undefined): Record<string, string> {
    const out: Record<string, string> = { ...set, [hopsHeader]: String(hopCount(hops) + 1) };
    const token = this.token();
    if (token) out["proxy-authorization"] = `Bearer ${token}`;
    return out;
  }

  private token(): string {
    const file = this.tokenFile;
    if (!file) return "";
    try {
      this.lastToken = file.read().trim();
    } catch (e) {
      // A file replaced by rename is briefly absent: the token read last still serves.
      log.warn("kedge tier token file unreadable; using the last token read", { url: this.url, path: file.path, error: (e as NodeJS.ErrnoException).code ?? (e as Error).message });
    }
    return this.lastToken;
  }
}

/** Where a tier's endpoints come from and how they are reached: a resolver like a backend's own, TLS, and what a kedge tier adds. */
export interface TierConfig {
  resolver: HttpBackendConfig["resolver"];
  security: Security | undefined;
  hop: KedgeHop | undefined;
}

/** A kedge tier as a host resolver on its URL's host (verified by that name) with its TLS files and hop. */
function kedgeTierConfig(tier: KedgeTier): TierConfig {
  const url = parseKedgeUrl(tier.url);
  if (typeof url === "string") throw new Error(`kedge tier url ${url}`);
  const target = kedgeHostPort(url);
  // Typed literals, not create(): a worker loads no message schemas.
  const security: Security = {
    $typeName: "kedge.config.v1.Security",
    insecureSkipVerify: false,
    configName: "",
    caFiles: tier.caFiles,
    serverName: "",
    clientCertFile: tier.clientCertFile,
    clientKeyFile: tier.clientKeyFile,
  };
  return {
    resolver: { case: "host", value: { $typeName: "kedge.config.v1.HostResolver", dnsName: target.host, port: target.port } },
    security,
    hop: new KedgeHop(url.origin, tier.proxyAuthTokenFile, tier.healthCheckHost),
  };
}

/** A backend's tiers: its own resolver, then its failover list in order. */
export function tierConfigs(backend: Pick<HttpBackendConfig, "resolver" | "security" | "failover">): TierConfig[] {
  const tiers: TierConfig[] = [{ resolver: backend.resolver, security: backend.security, hop: undefined }];
  for (const t of backend.failover) {
    const r = t.resolver;
    if (r.case === "kedge") tiers.push(kedgeTierConfig(r.value));
    else tiers.push({ resolver: r, security: backend.security, hop: undefined });
  }
  return tiers;
}
