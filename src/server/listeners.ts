import type { ServerConfig } from "../gen/kedge/config/v1/server_pb.js";
import { durationMs } from "../config/duration.js";
import { defaultBindAddress } from "../config/validate-exposure.js";
import type { HttpProxy } from "../proxy/http-proxy.js";
import { inflight } from "../proxy/record.js";
import { kedgeHttpProxy, type ProxyContext } from "../proxy/http.js";
import { Tunnels } from "../proxy/tunnel.js";
import type { Draining } from "./drain.js";
import { ConnectionGuard } from "./connection-guard.js";
import type { HeadLimits } from "./h1/request-head.js";
import { startPlainListener } from "./plain-listener.js";
import { H1Connections, kedgeRoles, type H1Options } from "./h1/connections.js";
import { defaultSendTimeoutMs, H2Connections, type H2Options } from "./h2/connections.js";
import { serveKedgeStream } from "./ingress-h2.js";
import { TlsHandshakeFailures } from "./tls-failures.js";
import { tlsFiles } from "./tls-files.js";
import { claimDataPorts } from "./port-claim.js";
import { startTlsListener, type TlsListener } from "./tls-listener.js";

export interface DataListeners {
  /** Bound ports, by listener name (tls, http). */
  readonly ports: Record<string, number>;
  /** Serves new TLS handshakes with the cert and key the config names now (rotation without restart). Throws if unreadable. */
  reloadTls(server: ServerConfig): void;
  /** Stops accepting, tells HTTP/2 clients GOAWAY, closes idle client connections; in-flight requests go on. */
  stopAccepting(): void;
  /** What stopAccepting left in flight, for drain (server/drain). */
  readonly draining: Draining;
  closeAll(): void;
  /** Client connections open now, over all listeners (the active-connections gauge). */
  openConnections(): number;
  /** Client connections admitted since start, over all listeners. */
  acceptedConnections(): number;
  /** Connections refused so far: over max_connections, or no request head within request_header_timeout. */
  refusedConnections(): { overLimit: number; headTimeout: number };
  /** Failed TLS handshakes so far, as [listener, reason] → count. */
  tlsHandshakeFailures(): Iterable<[string[], number]>;
}

const defaultClientIdleMs = 120_000;

interface Proxies {
  ctx: ProxyContext;
  http: HttpProxy;
  tunnels: Tunnels;
}

/**
 * Starts the listeners the server section names:
 * - http_tls_port: TLS with ALPN h2 + http/1.1 on one port, each connection handed to an h2 or an
 *   h1 connection set by the negotiated protocol;
 * - grpc_tls_port: kedge Go's dedicated gRPC port, TLS with ALPN h2 only;
 * - h2c_port: HTTP/2 with prior knowledge, no TLS (in-cluster and tests);
 * - http_port: plaintext HTTP/1.1.
 * `reusePort`: each kedge worker binds the same ports (SO_REUSEPORT).
 */
export async function startDataListeners(server: ServerConfig, ctx: ProxyContext, reusePort = false): Promise<DataListeners> {
  // One process: its TLS listeners still bind with SO_REUSEPORT (for rotation), so a port another
  // process holds must be found now. Workers are claimed for by their supervisor.
  if (!reusePort) claimDataPorts(server);
  const bind = server.bindAddress || defaultBindAddress;
  const idleMs = durationMs(server.clientIdleTimeout, defaultClientIdleMs);
  const limits: HeadLimits = {
    maxHeaderBytes: server.maxRequestHeaderBytes || 16_384,
    maxHeaders: server.maxRequestHeaders || 100,
    maxUriBytes: server.maxRequestUriBytes || 8_192,
  };
  const maxStreams = server.h2MaxConcurrentStreams || 256;
  const headTimeoutMs = durationMs(server.requestHeaderTimeout, 10_000);
  const sendTimeoutMs = durationMs(server.h2StreamSendTimeout, defaultSendTimeoutMs);
  const ports: Record<string, number> = {};
  const closers: Array<{ stop: () => void; kill: () => void }> = [];
  const tlsListeners: TlsListener[] = [];
  const tunnels = new Tunnels();
  const proxies: Proxies = { ctx, http: kedgeHttpProxy(ctx, tunnels), tunnels };
  const guard = new ConnectionGuard(server.maxConnections || 16_384);
  const h2Sets: H2Connections[] = [];
  const tlsFailures = new TlsHandshakeFailures();
  closers.push({ stop: () => {}, kill: () => proxies.tunnels.closeAll() });

  const h1Options = (scheme: "http" | "https"): H1Options => ({
    scheme,
    roles: kedgeRoles(ctx, proxies.http, proxies.tunnels),
    guard,
    limits,
    headTimeoutMs,
    idleMs,
  });

  const h2Options = (localPort: () => number): H2Options => ({
    serve: serveKedgeStream(ctx, proxies.http, localPort),
    errorPrefix: "x-kedge",
    guard,
    limits,
    maxStreams,
    headTimeoutMs,
    idleMs,
    sendTimeoutMs,
  });

  const startTls = (name: string, port: number, h1: H1Connections | undefined) => {
    const h2 = new H2Connections(h2Options(() => ports[name]));
    h2Sets.push(h2);
    const listener = startTlsListener(
      {
        name,
        hostname: bind,
        port,
        material: tlsFiles(server),
        failures: tlsFailures,
        handshakeTimeoutMs: headTimeoutMs,
        onHandshakeTimeout: () => guard.refused.headTimeout++,
        onCertificateRefused: (reason, address) => ctx.metrics.audit.handshakeRefused(name, reason, address),
      },
      { h2, http1: h1 },
    );
    ports[name] = listener.port;
    tlsListeners.push(listener);
    closers.push({ stop: listener.stop, kill: listener.kill });
  };

  if (server.httpTlsPort !== undefined) {
    startTls("tls", server.httpTlsPort, new H1Connections(h1Options("https"), () => ports.tls));
  }
  if (server.grpcTlsPort !== undefined) startTls("grpc_tls", server.grpcTlsPort, undefined);

  if (server.h2cPort !== undefined) {
    const h2 = new H2Connections(h2Options(() => ports.h2c));
    h2Sets.push(h2);
    const h2c = startPlainListener(bind, server.h2cPort, h2, reusePort);
    ports.h2c = h2c.port;
    closers.push({ stop: h2c.stop, kill: h2c.kill });
  }

  if (server.httpPort !== undefined) {
    const plain = startPlainListener(bind, server.httpPort, new H1Connections(h1Options("http"), () => ports.http), reusePort);
    ports.http = plain.port;
    closers.push({ stop: plain.stop, kill: plain.kill });
  }

  return {
    ports,
    reloadTls: (next) => {
      const material = tlsFiles(next);
      for (const listener of tlsListeners) listener.rotate(material);
    },
    stopAccepting: () => closers.forEach((c) => c.stop()),
    draining: {
      busy: () => inflight.count > 0 || h2Sets.some((h2) => h2.activeStreams() > 0),
      abortInFlight: () => h2Sets.forEach((h2) => h2.abortInFlight()),
      openConnections: () => guard.openConnections,
    },
    closeAll: () => closers.forEach((c) => c.kill()),
    openConnections: () => guard.openConnections,
    acceptedConnections: () => guard.accepted,
    refusedConnections: () => guard.refused,
    tlsHandshakeFailures: () => tlsFailures.samples(),
  };
}
