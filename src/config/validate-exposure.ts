import type { Config } from "../gen/kedge/config/v1/config_pb.js";

/** bind_address when the config names none (kedge Go's --server_bind_address default). */
export const defaultBindAddress = "0.0.0.0";

/** Only this host can reach a listener on these: 127.0.0.0/8, ::1 and the name for them. */
export function isLoopback(address: string): boolean {
  const host = address.replace(/^\[(.*)\]$/, "$1").toLowerCase();
  return host === "localhost" || host === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host) || host === "::ffff:127.0.0.1";
}

/** The proxy's listeners, by config field; client certificates can guard only the TLS ones. */
const dataListeners = [
  { field: "http_tls_port", port: "httpTlsPort", tls: true },
  { field: "grpc_tls_port", port: "grpcTlsPort", tls: true },
  { field: "http_port", port: "httpPort", tls: false },
  { field: "h2c_port", port: "h2cPort", tls: false },
] as const;

export interface UnguardedListener {
  /** The config field: http_port, … */
  field: string;
  /** host:port as configured. */
  address: string;
  tls: boolean;
  /** Client certificates are required, but this port is plaintext and cannot ask for one. */
  plaintextBesideCerts: boolean;
}

/**
 * The data listeners reachable beyond loopback that nothing authenticates, whether or not
 * auth.allow_unauthenticated allows them.
 */
export function unguardedListeners(config: Config): UnguardedListener[] {
  const server = config.server;
  if (!server) return [];
  const bind = server.bindAddress || defaultBindAddress;
  if (isLoopback(bind)) return [];
  const auth = config.auth;
  const oidc = auth?.oidc;
  if (!!(oidc && (oidc.providerUrl || oidc.jwksFile || oidc.jwksUrl)) || !!auth?.bearerToken || !!auth?.bearerTokenFile) return [];
  const clientCerts = server.tlsClientCaFiles.length > 0 && server.tlsClientCertRequired;
  const out: UnguardedListener[] = [];
  for (const listener of dataListeners) {
    const port = server[listener.port];
    if (port === undefined || (listener.tls && clientCerts)) continue;
    out.push({ field: listener.field, address: `${bind}:${port}`, tls: listener.tls, plaintextBesideCerts: !listener.tls && clientCerts });
  }
  return out;
}

/**
 * Refuses a data listener reachable beyond loopback that nothing authenticates: an edge proxy
 * open to anyone who reaches it forwards their requests into the cluster. Returns "path: problem" lines.
 */
export function validateExposure(config: Config): string[] {
  if (config.auth?.allowUnauthenticated) return [];
  return unguardedListeners(config).map((l) =>
    `server.${l.field}: ${l.address} is reachable beyond loopback with no authenticator` +
      (l.plaintextBesideCerts ? " (client certificates cannot guard a plaintext port)" : "") +
      ", so anyone who reaches it can use kedge as an open proxy; configure one (auth.oidc, auth.bearer_token or auth.bearer_token_file" +
      (l.tls ? ", or server.tls_client_ca_files with tls_client_cert_required" : "") +
      "), bind a loopback address, or set auth.allow_unauthenticated: true (flag --allow_unauthenticated)",
  );
}
