import http, { type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import { WinchServer_UnknownHosts, type WinchConfig } from "../gen/kedge/winch/v1/winch_pb.js";
import { ConfigError } from "../config/error.js";
import { KedgeError } from "../errors.js";
import { log } from "../observe/log.js";
import { proxyMetrics } from "../observe/metrics.js";
import { Registry } from "../observe/prometheus.js";
import { exchange, inflight, sendError } from "../proxy/exchange.js";
import { Tunnels } from "../proxy/tunnel.js";
import { H1Response, h1Request } from "./ingress-h1.js";
import { isGrpc, listen } from "../server/listen.js";
import { ConnectionGuard } from "../server/connection-guard.js";
import { defaultGracefulShutdownMs, drain } from "../server/drain.js";
import { defaultSendTimeoutMs, H2Connections } from "../server/h2/connections.js";
import { startPlainListener, type PlainListener } from "../server/plain-listener.js";
import { buildAuthSources } from "./auth/index.js";
import { winchConnect } from "./connect.js";
import { winchUpgrade } from "./upgrade.js";
import type { WinchContext } from "./context.js";
import { CredentialInjector } from "./credentials.js";
import { winchGrpc } from "./grpc-proxy.js";
import { winchHttpProxy } from "./http-proxy.js";
import { WinchMapper } from "./mapper.js";
import { pacBody, pacContentType } from "./pac.js";
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
  const httpProxy = winchHttpProxy(ctx);
  const ports = { http: 0, grpc: 0 } as { http: number; grpc: number; monitoring?: number };

  /** Tunnels winch serves itself (plain HTTP inside a CONNECT), by client socket: the CONNECT's host:port. */
  const servedTunnels = new WeakMap<object, string>();
  /** Inside a served tunnel, origin-form requests are for the CONNECT's target: as if sent absolute. */
  const forTunnelTarget = (req: IncomingMessage): boolean => {
    const target = servedTunnels.get(req.socket);
    if (target === undefined || !(req.url ?? "/").startsWith("/")) return false;
    req.url = `http://${target}${req.url ?? "/"}`;
    return true;
  };
  const proxyServer = http.createServer((req: IncomingMessage, res: ServerResponse) => {
    const url = req.url ?? "/";
    if (url.startsWith("/") && !forTunnelTarget(req)) return serveLocal(req, res);
    exchange(httpProxy, h1Request(req, "http", ports.http), new H1Response(res));
  });
  const serveInside = (client: Duplex, head: Buffer, target: string) => {
    servedTunnels.set(client, target);
    if (head.length > 0) client.unshift(head);
    proxyServer.emit("connection", client);
  };
  proxyServer.on("connect", (req: IncomingMessage, socket: Duplex, head: Buffer) => winchConnect(ctx, tunnels, req, socket, head, serveInside));
  proxyServer.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    forTunnelTarget(req);
    winchUpgrade(ctx, tunnels, req, socket, head);
  });

  // Requests for winch itself: the PAC file. Anything else is a client not configured to use a proxy.
  const serveLocal = (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? "/").split("?")[0];
    if (path === "/wpad.dat" && (req.method === "GET" || req.method === "HEAD")) {
      const host = bind === "0.0.0.0" || bind === "::" ? (req.headers.host ?? "127.0.0.1").replace(/:\d+$/, "") : bind;
      const address = `${host.includes(":") && !host.startsWith("[") ? `[${host}]` : host}:${ports.http}`;
      try {
        const body = pacBody(server?.pacFile ?? "", address, server?.pacRedirectShExpressions ?? []);
        res.writeHead(200, { "content-type": pacContentType, "content-length": Buffer.byteLength(body) });
        res.end(req.method === "HEAD" ? undefined : body);
      } catch (e) {
        sendError(new H1Response(res), new KedgeError("internal", 500, `PAC file: ${(e as Error).message}`), "", "x-winch");
      }
      return;
    }
    sendError(new H1Response(res), new KedgeError("bad-request", 400, "winch is a forward proxy: send absolute-URI requests (set HTTP_PROXY) or CONNECT; the PAC file is /wpad.dat"), "", "x-winch");
  };

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
    limits: { maxHeaderBytes: 64 * 1024, maxHeaders: 200, maxUriBytes: 16 * 1024 },
    maxStreams: 256,
    headTimeoutMs: 10_000,
    idleMs: 300_000,
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
    ports.http = await listen(proxyServer, server?.httpPort ?? 8070, bind);
    grpcListener = startPlainListener(bind, server?.grpcPort ?? 8071, grpcConnections);
    ports.grpc = grpcListener.port;
    if (server?.monitoringPort !== undefined) ports.monitoring = await listen(monitoring, server.monitoringPort, bind);
  } catch (e) {
    proxyServer.close();
    grpcListener?.kill();
    grpcConnections.kill();
    monitoring.close();
    ctx.upstreams.close();
    for (const s of sources.values()) s.close();
    throw e;
  }
  log.info("winch is serving", { bind, ports });

  const close = async () => {
    proxyServer.close();
    proxyServer.closeAllConnections();
    grpcListener?.kill();
    monitoring.close();
    tunnels.closeAll();
    ctx.upstreams.close();
    for (const s of sources.values()) s.close();
  };
  return {
    ports,
    address: (proxyServer.address() as AddressInfo).address,
    shutdown: async () => {
      proxyServer.close();
      proxyServer.closeIdleConnections();
      grpcListener?.stop();
      await drain(
        {
          busy: () => inflight.count > 0 || grpcConnections.activeStreams() > 0,
          abortInFlight: () => grpcConnections.abortInFlight(),
          openConnections: () => grpcGuard.openConnections,
        },
        defaultGracefulShutdownMs,
      );
      await close();
    },
    close,
  };
}
