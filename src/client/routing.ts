import { readFileSync } from "node:fs";
import { rootCertificates } from "node:tls";
import { KedgeError } from "../errors.js";
import { WinchServer_UnknownHosts, type WinchConfig } from "../gen/kedge/winch/v1/winch_pb.js";
import { buildAuthSources, type AuthSource, type AuthSourceOptions } from "../winch/auth/index.js";
import { loadWinchConfig } from "../winch/config.js";
import { CredentialInjector } from "../winch/credentials.js";
import { WinchMapper, type Mapping, type Protocol } from "../winch/mapper.js";
import type { KedgeClientOptions } from "./options.js";

export type { KedgeClientOptions };

/** TLS material for a connection to one kedge. */
export interface KedgeTls {
  readonly ca: readonly string[];
  readonly cert: string | undefined;
  readonly key: string | undefined;
}

/** A request for a mapped host: the kedge it goes to, the headers to add and the identity to present. */
export interface KedgeTarget {
  readonly kind: "kedge";
  readonly kedge: URL;
  readonly mapping: Mapping;
  /** Lower-case names: `authorization` (backend_auth), `proxy-authorization` (proxy_auth). */
  readonly headers: Readonly<Record<string, string>>;
  readonly tls: KedgeTls;
  /** Connections to the same kedge with the same identity are shared: this names the pool. */
  readonly poolKey: string;
}

export type Target = KedgeTarget | { readonly kind: "direct" };

function serverOverrides(tls: KedgeClientOptions["tls"], unknownHosts: KedgeClientOptions["unknown_hosts"]): Record<string, unknown> {
  const server: Record<string, unknown> = {};
  if (tls?.ca_files) server.ca_files = tls.ca_files;
  if (tls?.client_cert_file !== undefined) server.client_cert_file = tls.client_cert_file;
  if (tls?.client_key_file !== undefined) server.client_key_file = tls.client_key_file;
  if (unknownHosts) server.unknown_hosts = unknownHosts;
  return server;
}

/** Reads and validates the options as winch reads its config; throws ConfigError naming each bad field. */
export function loadClientConfig(options: KedgeClientOptions): WinchConfig {
  const overrides = serverOverrides(options.tls, options.unknown_hosts);
  if (options.configFile) return loadWinchConfig({ configFile: options.configFile, serverOverrides: overrides });
  return loadWinchConfig({ embedded: { routes: options.routes ?? [], auth_sources: options.auth_sources ?? [], server: overrides } });
}

/**
 * The library's half of winch: the same mapper, auth sources and credential injection, without
 * listeners. Where a URL goes and what it carries is decided here; the transports (fetch, gRPC)
 * only move bytes.
 */
export class KedgeRouting {
  private readonly mapper: WinchMapper;
  private readonly sources: Map<string, AuthSource>;
  private readonly injector: CredentialInjector;
  private readonly roots: string[];
  private readonly ownCert: { cert: string; key: string } | undefined;
  private readonly refuseUnknown: boolean;

  constructor(config: WinchConfig, options: AuthSourceOptions = {}) {
    this.mapper = new WinchMapper(config.routes);
    this.sources = buildAuthSources(config.authSources, options);
    this.injector = new CredentialInjector(this.sources);
    const server = config.server;
    // Extra roots add to the system ones, as in winch: kedges with public and private certs alike.
    this.roots = [...rootCertificates, ...(server?.caFiles ?? []).map((f) => readFileSync(f, "utf8"))];
    this.ownCert = server?.clientCertFile ? { cert: readFileSync(server.clientCertFile, "utf8"), key: readFileSync(server.clientKeyFile, "utf8") } : undefined;
    this.refuseUnknown = server?.unknownHosts === WinchServer_UnknownHosts.REFUSE;
  }

  /**
   * Where a request for host[:port] goes, with fresh credentials (token files re-read, OIDC
   * refreshed by the sources). Rejects with a KedgeError: unknown-host when no route maps it and
   * the client refuses unknown hosts (gRPC always does), auth-source when a credential cannot be had.
   */
  async target(host: string, port: number | undefined, protocol: Protocol): Promise<Target> {
    const result = this.mapper.map(host, port, protocol);
    if (result.kind !== "mapped") {
      if (!this.refuseUnknown && protocol === "http") return { kind: "direct" };
      throw new KedgeError("unknown-host", 502, `${host} is not a kedge destination`);
    }
    const mapping = result.mapping;
    const injection = await this.injector.inject(mapping);
    const identity = injection.clientCert ?? this.ownCert;
    return {
      kind: "kedge",
      kedge: mapping.kedge,
      mapping,
      headers: injection.headers ?? {},
      tls: { ca: this.roots, cert: identity?.cert, key: identity?.key },
      poolKey: identity ? `${mapping.kedge.origin}|${identity.cert}` : mapping.kedge.origin,
    };
  }

  close(): void {
    for (const source of this.sources.values()) source.close();
  }
}
