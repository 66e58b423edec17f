import type { Socket, TCPSocketListener } from "bun";
import type { KedgeError } from "../../errors.js";
import { proxyConnect } from "../../proxy/connect.js";
import { exchange, type HttpProxy } from "../../proxy/exchange.js";
import type { ProxyContext } from "../../proxy/http.js";
import { newRequestId } from "../../proxy/request.js";
import { rawErrorResponse, type Tunnels } from "../../proxy/tunnel.js";
import { headTimeout, tooManyConnections, type ConnectionGuard } from "../connection-guard.js";
import { H1ClientConnection, type H1Handler } from "./connection.js";
import type { HeadLimits } from "./request-head.js";

export interface H1ListenerOptions {
  hostname: string;
  port: number;
  ctx: ProxyContext;
  http: HttpProxy;
  tunnels: Tunnels;
  guard: ConnectionGuard;
  limits: HeadLimits;
  headTimeoutMs: number;
  idleMs: number;
}

export interface H1Listener {
  readonly port: number;
  /** Stops accepting; idle connections close now, busy ones after their response. */
  stop(): void;
  /** Closes every connection at once. */
  kill(): void;
}

const sweepEveryMs = 500;

/**
 * Plaintext HTTP/1.1 on Bun.listen with kedge's own request parser: no node:http in the path.
 * One timer sweeps every connection's deadline (head timeout, keep-alive idle timeout).
 */
export function startH1Listener(opts: H1ListenerOptions): H1Listener {
  const conns = new Set<H1ClientConnection>();
  let port = 0;
  const handler: H1Handler = {
    limits: opts.limits,
    scheme: "http",
    get localPort() {
      return port;
    },
    headTimeoutMs: opts.headTimeoutMs,
    idleMs: opts.idleMs,
    draining: false,
    request: (req, res) => exchange(opts.http, req, res),
    connect: (head, tunnel, rest, socket) => proxyConnect(opts.ctx, opts.tunnels, { target: head.target, headers: head.headers, socket }, tunnel, rest),
    refuse: (conn: H1ClientConnection, err: KedgeError) => {
      conn.send(Buffer.from(rawErrorResponse(err, newRequestId(), "x-kedge"), "latin1"));
      conn.closeWhenFlushed();
    },
  };

  const listener: TCPSocketListener<H1ClientConnection> = Bun.listen<H1ClientConnection>({
    hostname: opts.hostname,
    port: opts.port,
    // A client may half-close once its request is sent (nc -N, some health checkers): it still gets its answer.
    allowHalfOpen: true,
    socket: {
      open(socket: Socket<H1ClientConnection>) {
        socket.setNoDelay(true);
        const conn = new H1ClientConnection(socket, handler);
        socket.data = conn;
        if (!opts.guard.admitOwned()) {
          handler.refuse(conn, tooManyConnections);
          return;
        }
        conns.add(conn);
      },
      data: (socket, data) => socket.data.onData(data),
      drain: (socket) => socket.data.onDrain(),
      end: (socket) => socket.data.onEnd(),
      close: (socket) => closed(socket.data),
      error: (socket) => closed(socket.data),
    },
  });
  port = listener.port;

  function closed(conn: H1ClientConnection | undefined): void {
    if (!conn) return;
    if (conns.delete(conn)) opts.guard.releaseOwned();
    conn.onClose();
  }

  const sweeper = setInterval(() => {
    const now = performance.now();
    for (const conn of conns) {
      if (conn.deadline === 0 || conn.deadline > now) continue;
      if (conn.expired()) {
        opts.guard.refused.headTimeout++;
        handler.refuse(conn, headTimeout);
      }
    }
  }, sweepEveryMs);
  sweeper.unref();

  return {
    get port() {
      return port;
    },
    stop() {
      handler.draining = true;
      listener.stop(false);
      for (const conn of conns) if (conn.idle) conn.closeWhenFlushed();
    },
    kill() {
      clearInterval(sweeper);
      listener.stop(true);
      for (const conn of [...conns]) conn.destroy();
    },
  };
}
