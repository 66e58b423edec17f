import http from "node:http";
import type { WinchConfig } from "../gen/kedge/winch/v1/winch_pb.js";
import { ConfigError } from "../config/error.js";
import { log, setLogLevel } from "../observe/log.js";
import { proxyMetrics } from "../observe/metrics.js";
import { Registry } from "../observe/prometheus.js";
import { inflight } from "../proxy/record.js";
import { Tunnels } from "../proxy/tunnel.js";
import { isGrpc, listen } from "../server/listen.js";
import { ConnectionGuard } from "../server/connection-guard.js";
import { defaultGracefulShutdownMs, drain } from "../server/drain.js";
import { defaultSendTimeoutMs, H2Connections } from "../server/h2/connections.js";
import { startPlainListener, type PlainListener } from "../server/plain-listener.js";
import { configureAccessLog } from "./access-log.js";
import { winchClientIdleMs, winchHeadLimits } from "./context.js";
import { winchGrpc } from "./grpc-proxy.js";
import { startWinchHttpPort, type WinchHttpPort } from "./http-port.js";
import { buildWinchRuntime, closeWinchRuntime, type WinchRuntime } from "./runtime.js";

export interface Winch {
  readonly ports: { http: number; grpc: number; monitoring?: number };
  /** The address the listeners are bound to. */
  readonly address: string;
  /**
   * Serves `config` from now on, as kedge reloads: in-flight requests finish on the config they
   * started with; unchanged auth sources and kedge connections are kept. A config that cannot be
   * built is rejected (the error is returned, naming its field path) and the old one keeps serving.
   * Listener settings (bind_address, ports) take effect on restart.
   */
  reload(config: WinchConfig): ConfigError | undefined;
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

const listenerFields = ["bindAddress", "httpPort", "grpcPort", "monitoringPort"] as const;

/** Starts winch's listeners: the HTTP proxy (plus /wpad.dat), the h2c gRPC port and optional monitoring. */
export async function startWinch(config: WinchConfig, options: WinchOptions = {}): Promise<Winch> {
  const server = config.server;
  const bind = server?.bindAddress || "127.0.0.1";
  const registry = new Registry();
  const metrics = proxyMetrics(registry, "winch");
  configureAccessLog(metrics, server);
  const sourceOptions = { log: options.log, openBrowser: options.openBrowser, home: options.home };
  let current = buildWinchRuntime(config, metrics, sourceOptions);
  const live = () => current.ctx;
  /** Runtimes a reload replaced, closed once what was in flight on them has had time to finish. */
  const retiring = new Map<WinchRuntime, ReturnType<typeof setTimeout>>();
  const tunnels = new Tunnels();
  const ports = { http: 0, grpc: 0 } as { http: number; grpc: number; monitoring?: number };
  let httpPort: WinchHttpPort | undefined;

  // The gRPC port runs on kedge's own HTTP/2 server, as kedge's listeners do.
  const grpcGuard = new ConnectionGuard(16_384);
  /** CONNECT tunnels served as gRPC, by their client side: the CONNECT's host:port, for calls whose :authority names no host. */
  const tunnelTargets = new WeakMap<object, string>();
  const grpcConnections = new H2Connections({
    serve: (stream, headers) => {
      if (isGrpc(headers)) return winchGrpc(live(), stream, headers, tunnelTargets);
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
    httpPort = startWinchHttpPort(live, tunnels, bind, server?.httpPort ?? 8070, (tunnel, early, target, remoteAddress) => {
      tunnelTargets.set(tunnel, target);
      grpcConnections.adoptTunnel(tunnel, early, remoteAddress);
    });
    ports.http = httpPort.port;
    grpcListener = startPlainListener(bind, server?.grpcPort ?? 8071, grpcConnections);
    ports.grpc = grpcListener.port;
    if (server?.monitoringPort !== undefined) ports.monitoring = await listen(monitoring, server.monitoringPort, bind);
  } catch (e) {
    httpPort?.listener.kill();
    grpcListener?.kill();
    grpcConnections.kill();
    monitoring.close();
    closeWinchRuntime(current, undefined);
    void metrics.observer.close();
    throw e;
  }
  log.info("winch is serving", { bind, ports });

  const close = async () => {
    httpPort?.listener.kill();
    grpcListener?.kill();
    monitoring.close();
    tunnels.closeAll();
    for (const [runtime, timer] of retiring) {
      clearTimeout(timer);
      closeWinchRuntime(runtime, undefined);
    }
    retiring.clear();
    closeWinchRuntime(current, undefined);
    await metrics.observer.close();
  };
  const reload = (next: WinchConfig): ConfigError | undefined => {
    let built: WinchRuntime;
    try {
      built = buildWinchRuntime(next, metrics, sourceOptions, current);
    } catch (e) {
      const err = e instanceof ConfigError ? e : new ConfigError([(e as Error).message]);
      log.error("winch config rejected; the previous config keeps serving", { problems: err.problems });
      return err;
    }
    if (listenerFields.some((f) => current.config.server?.[f] !== next.server?.[f])) log.warn("listener changes in the server section take effect on restart");
    const previous = current;
    current = built; // one reference swap: new requests see the new config, in-flight ones keep theirs
    if (next.server?.logLevel) setLogLevel(next.server.logLevel);
    configureAccessLog(metrics, next.server);
    retiring.set(
      previous,
      setTimeout(() => {
        retiring.delete(previous);
        closeWinchRuntime(previous, current);
      }, defaultGracefulShutdownMs).unref(),
    );
    log.info("winch config reloaded", { routes: next.routes.length, authSources: next.authSources.length });
    return undefined;
  };
  return {
    ports,
    address: bind,
    reload,
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
