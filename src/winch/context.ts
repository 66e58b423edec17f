import { KedgeError } from "../errors.js";
import type { ProxyMetrics } from "../observe/metrics.js";
import type { CredentialInjector } from "./credentials.js";
import type { Mapping, Protocol, WinchMapper } from "./mapper.js";
import type { KedgeUpstreams } from "./upstreams.js";

/** What winch's listeners share: built from one config, swapped whole by a reload. */
export interface WinchContext {
  readonly mapper: WinchMapper;
  readonly injector: CredentialInjector;
  readonly upstreams: KedgeUpstreams;
  readonly metrics: ProxyMetrics;
  /** A host no route maps: reach it directly (kedge Go) or refuse. */
  readonly unknownHosts: "direct" | "refuse";
  /** /wpad.dat: server.pac_file, or one generated for these hosts. */
  readonly pac: { readonly file: string; readonly shExpressions: readonly string[] };
}

/** Request-head limits on winch's ports: a laptop's clients (kubectl, browsers) send larger heads than kedge's defaults allow. */
export const winchHeadLimits = { maxHeaderBytes: 64 * 1024, maxHeaders: 200, maxUriBytes: 16 * 1024 };
/** How long a connection may sit silent between requests, or mid-body, on winch's ports. */
export const winchClientIdleMs = 300_000;

export type Destination = { kind: "kedge"; mapping: Mapping } | { kind: "direct" };

/** Where a request for host[:port] goes; throws the error its client should see. */
export function destination(ctx: WinchContext, host: string, port: number | undefined, protocol: Protocol): Destination {
  const result = ctx.mapper.map(host, port, protocol);
  if (result.kind === "mapped") return { kind: "kedge", mapping: result.mapping };
  if (result.kind === "ip-literal") throw new KedgeError("ip-literal", 502, `${host} is an IP address: winch routes names of cluster services only`);
  if (ctx.unknownHosts === "direct" && protocol === "http") return { kind: "direct" };
  throw notKedgeDestination(host);
}

export const notKedgeDestination = (host: string) => new KedgeError("unknown-host", 502, `${host} is not a kedge destination`);

export function winchRequestId(): string {
  return `winch-${crypto.randomUUID()}`;
}
