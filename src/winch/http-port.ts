import { KedgeError } from "../errors.js";
import { sendError } from "../proxy/error-response.js";
import { exchange } from "../proxy/exchange.js";
import type { IngressRequest, IngressResponse } from "../proxy/ingress.js";
import { requestIdFrom } from "../proxy/request.js";
import type { Tunnels } from "../proxy/tunnel.js";
import { ConnectionGuard } from "../server/connection-guard.js";
import type { TunnelSocket } from "../net/tunnel-socket.js";
import { H1Connections, type H1Roles } from "../server/h1/connections.js";
import { startPlainListener, type PlainListener } from "../server/plain-listener.js";
import { winchConnect } from "./connect.js";
import { winchClientIdleMs, winchHeadLimits, winchRequestId, type WinchContext } from "./context.js";
import { winchHttpProxy } from "./http-proxy.js";
import { pacBody, pacContentType } from "./pac.js";

export interface WinchHttpPort {
  readonly port: number;
  readonly listener: PlainListener;
  /** Client connections open now (drain waits for them to close). */
  openConnections(): number;
}

/** Serves a CONNECT tunnel that carries HTTP/2 on winch's gRPC server; `early` starts with the preface. */
export type GrpcTunnelServer = (tunnel: TunnelSocket, early: Buffer, target: string, remoteAddress: string) => void;

const notAProxyRequest = new KedgeError("bad-request", 400, "winch is a forward proxy: send absolute-URI requests (set HTTP_PROXY) or CONNECT; the PAC file is /wpad.dat");
const slash = 47;

/**
 * winch's HTTP proxy port, on kedge's own HTTP/1.1 server: absolute-URI requests and upgrades are
 * forwarded (http-proxy), CONNECT opens a tunnel (connect), and origin-form requests are for winch
 * itself: the PAC file at /wpad.dat. Inside a tunnel to a mapped host's port 80, which winch serves
 * itself, origin-form requests are for the CONNECT's host:port, as if sent absolute. A tunnel that
 * carries HTTP/2 (gRPC behind grpc_proxy) goes to `grpcTunnel`.
 */
export function startWinchHttpPort(live: () => WinchContext, tunnels: Tunnels, bind: string, port: number, grpcTunnel: GrpcTunnelServer): WinchHttpPort {
  const httpProxy = winchHttpProxy(live, tunnels);
  /** Tunnels winch serves itself, by their client side: the CONNECT's host:port. */
  const servedTunnels = new WeakMap<object, string>();

  const serveLocal = (req: IngressRequest, res: IngressResponse) => {
    const query = req.target.indexOf("?");
    const path = query < 0 ? req.target : req.target.slice(0, query);
    const requestId = requestIdFrom(req.headers, winchRequestId);
    if (path !== "/wpad.dat" || (req.method !== "GET" && req.method !== "HEAD")) return sendError(res, notAProxyRequest, requestId, "x-winch");
    const host = bind === "0.0.0.0" || bind === "::" ? (req.authority || "127.0.0.1").replace(/:\d+$/, "") : bind;
    const address = `${host.includes(":") && !host.startsWith("[") ? `[${host}]` : host}:${listener.port}`;
    let body: Buffer;
    try {
      const { pac } = live();
      body = Buffer.from(pacBody(pac.file, address, pac.shExpressions));
    } catch (e) {
      return sendError(res, new KedgeError("internal", 500, `PAC file: ${(e as Error).message}`), requestId, "x-winch");
    }
    res.writeHead(200, { "content-type": pacContentType, "content-length": body.length });
    res.end(body);
  };

  let connections: H1Connections;
  const roles: H1Roles = {
    request(req, res) {
      if (req.target.charCodeAt(0) === slash) {
        const target = req.socket && servedTunnels.get(req.socket);
        if (target === undefined) return serveLocal(req, res);
        req = { ...req, target: `http://${target}${req.target}` };
      }
      // An upgrade not switched ends the connection: what the client sends next may be the other protocol's.
      if (req.headers.upgrade !== undefined) res.lastOnConnection();
      exchange(httpProxy, req, res);
    },
    connect(head, tunnel, rest, client) {
      const req = { target: head.target, headers: head.headers, socket: client.peer, remoteAddress: client.remoteAddress };
      winchConnect(live(), tunnels, req, tunnel, rest, {
        http(early, target) {
          servedTunnels.set(tunnel, target);
          connections.adoptTunnel(tunnel, early, client);
        },
        grpc: (early, target) => grpcTunnel(tunnel, early, target, client.remoteAddress),
      });
    },
    errorPrefix: "x-winch",
    newRequestId: winchRequestId,
  };
  const guard = new ConnectionGuard(16_384);
  connections = new H1Connections(
    {
      scheme: "http",
      roles,
      guard,
      limits: winchHeadLimits,
      headTimeoutMs: 10_000,
      idleMs: winchClientIdleMs,
    },
    () => listener.port,
  );
  let listener: PlainListener;
  try {
    listener = startPlainListener(bind, port, connections);
  } catch (e) {
    connections.kill();
    throw e;
  }
  return { port: listener.port, listener, openConnections: () => guard.openConnections };
}
