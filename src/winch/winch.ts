import http from "node:http";
import { WinchServer_UnknownHosts, type WinchConfig } from "../gen/kedge/winch/v1/winch_pb.js";
import { ConfigError } from "../config/error.js";
import { log } from "../observe/log.js";
import { proxyMetrics, Registry } from "../observe/metrics.js";
import { inflight } from "../proxy/exchange.js";
import { Tunnels } from "../proxy/tunnel.js";
import { isGrpc, listen } from "../server/listen.js";
import { ConnectionGuard } from "../server/connection-guard.js";
import { defaultGracefulShutdownMs, drain } from "../server/drain.js";
import { defaultSendTimeoutMs, H2Connections } from "../server/h2/connections.js";
import { startPlainListener, type PlainListener } from "../server/plain-listener.js";
import { buildAuthSources } from "./auth/index.js";
import { winchClientIdleMs, winchHeadLimits, type WinchContext } from "./context.js";
import { CredentialInjector } from "./credentials.js";
import { winchGrpc } from "./grpc-proxy.js";
import { startWinchHttpPort, type WinchHttpPort } from "./http-port.js";
import { WinchMapper } from "./mapper.js";
import { KedgeUpstreams } from "./upstreams.js";

export interface Winch {
  readonly ports: { http: number; grpc: number; monitoring?: number };
  /** The address the listeners are bound to. */
  readonly address: string;
  /** SIGTERM: stops accepting, lets in-flight requests and calls finish (up to 10 s), then closes. */
  shutdown(): Promise<void>;
  close(): Promise<void>;
}

export interface WinchOptions {
  /** Where interactive OIDC logins print the URL to open. */
  log?: (message: string) => void;
  openBrowser?: (url: string) => void;
  home?: string;
}

/** The auth sources; what only building them finds (a kubeconfig without the user) is a config error, as at load. */
function authSourcesOf(config: WinchConfig, options: WinchOptions) {
  try {
    return buildAuthSources(config.authSources, { log: options.log, openBrowser: options.openBrowser, home: options.home });
  } catch (e) {
    throw new ConfigError([(e as Error).message]);
  }
}

/** Starts winch's listeners: the HTTP proxy (plus /wpad.dat), the h2c gRPC port and optional monitoring. */
export async function startWinch(config: WinchConfig, options: WinchOptions = {}): Promise<Winch> {
  const server = config.server;
  const bind = server?.bindAddress || "127.0.0.1";
  const registry = new Registry();
  const sources = authSourcesOf(config, options);
  const ctx: WinchContext = {
    mapper: new WinchMapper(config.routes),
    injector: new CredentialInjector(sources),
    upstreams: new KedgeUpstreams(server),
    metrics: proxyMetrics(registry, "winch"),
    unknownHosts: server?.unknownHosts === WinchServer_UnknownHosts.REFUSE ? "refuse" : "direct",
  };
  const tunnels = new Tunnels();
  const ports = { http: 0, grpc: 0 } as { http: number; grpc: number; monitoring?: number };
  let httpPort: WinchHttpPort | undefined;

  // The gRPC port runs on kedge's own HTTP/2 server, as kedge's listeners do.
  const grpcGuard = new ConnectionGuard(16_384);
  const grpcConnections = new H2Connections({
    serve: (stream, headers) => {
      if (isGrpc(headers)) return winchGrpc(ctx, stream, headers);
      const reason = "this port takes gRPC only; use the HTTP proxy port";
      stream.respond({ ":status": 415, "content-type": "text/plain; charset=utf-8", "x-winch-error": reason, "x-winch-error-type": "bad-request" });
      stream.end(Buffer.from(`${reason}\n`));
    },
    errorPrefix: "x-winch",
    guard: grpcGuard,
    limits: winchHeadLimits,
    maxStreams: 256,
    headTimeoutMs: 10_000,
    idleMs: winchClientIdleMs,
    sendTimeoutMs: defaultSendTimeoutMs,
  });
  let grpcListener: PlainListener | undefined;

  const monitoring = http.createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (path === "/_healthz") return void res.writeHead(200, { "content-type": "text/plain" }).end("ok\n");
    if (path === "/metrics") return void res.writeHead(200, { "content-type": "text/plain; version=0.0.4" }).end(registry.render());
    res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
  });

  try {
    httpPort = startWinchHttpPort(ctx, tunnels, server, bind);
    ports.http = httpPort.port;
    grpcListener = startPlainListener(bind, server?.grpcPort ?? 8071, grpcConnections);
    ports.grpc = grpcListener.port;
    if (server?.monitoringPort !== undefined) ports.monitoring = await listen(monitoring, server.monitoringPort, bind);
  } catch (e) {
    httpPort?.listener.kill();
    grpcListener?.kill();
    grpcConnections.kill();
    monitoring.close();
    ctx.upstreams.close();
    for (const s of sources.values()) s.close();
    throw e;
  }
  log.info("winch is serving", { bind, ports });

  const close = async () => {
    httpPort?.listener.kill();
    grpcListener?.kill();
    monitoring.close();
    tunnels.closeAll();
    ctx.upstreams.close();
    for (const s of sources.values()) s.close();
  };
  return {
    ports,
    address: bind,
    shutdown: async () => {
      httpPort?.listener.stop();
      grpcListener?.stop();
      await drain(
        {
          busy: () => inflight.count > 0 || grpcConnections.activeStreams() > 0,
          abortInFlight: () => grpcConnections.abortInFlight(),
          openConnections: () => grpcGuard.openConnections + (httpPort?.openConnections() ?? 0),
        },
        defaultGracefulShutdownMs,
      );
      await close();
    },
    close,
  };
}
