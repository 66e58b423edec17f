import type { KedgeError } from "../../errors.js";
import { proxyConnect } from "../../proxy/connect.js";
import { exchange } from "../../proxy/exchange.js";
import type { ProxyContext } from "../../proxy/http.js";
import type { HttpProxy } from "../../proxy/http-proxy.js";
import type { IngressRequest } from "../../proxy/ingress.js";
import { newRequestId } from "../../proxy/request.js";
import { rawErrorResponse, type Tunnels } from "../../proxy/tunnel.js";
import { headTimeout, tooManyConnections, type ConnectionGuard } from "../connection-guard.js";
import { H1ServerConnection, keepAliveStarted, type H1Handler } from "./connection.js";
import type { HeadLimits, RequestHead } from "./request-head.js";
import type { H1RawResponse } from "./response.js";
import { NodeTransport, type ClientTransport } from "./transport.js";
import type { TunnelSocket } from "../../net/tunnel-socket.js";
import { Members } from "../../net/members.js";

/** What a listener's requests are for: kedge's reverse proxy, or winch's forward proxy on its HTTP port. */
export interface H1Roles {
  /** Answers one request, once. */
  request(req: IngressRequest, res: H1RawResponse): void;
  /** A CONNECT request: the tunnel owns the connection from here on. */
  connect(head: RequestHead, tunnel: TunnelSocket, rest: Buffer, client: ClientTransport): void;
  /** The error headers on what the connection refuses itself (a malformed head, over max_connections). */
  readonly errorPrefix: "x-kedge" | "x-winch";
  newRequestId(): string;
}

/** kedge's roles: requests and CONNECTs go where its routes say. */
export function kedgeRoles(ctx: ProxyContext, http: HttpProxy, tunnels: Tunnels): H1Roles {
  return {
    request: (req, res) => exchange(http, req, res),
    connect: (head, tunnel, rest, client) =>
      proxyConnect(ctx, tunnels, { target: head.target, headers: head.headers, socket: client.peer, remoteAddress: client.remoteAddress }, tunnel, rest),
    errorPrefix: "x-kedge",
    newRequestId,
  };
}

export interface H1Options {
  scheme: "http" | "https";
  roles: H1Roles;
  guard: ConnectionGuard;
  limits: HeadLimits;
  headTimeoutMs: number;
  idleMs: number;
}

const sweepEveryMs = 500;

/**
 * The HTTP/1.1 client connections of one listener: admission against max_connections, requests
 * to the proxy, and one timer sweeping every connection's deadline (head timeout, keep-alive
 * idle timeout, lingering close) instead of a timer per connection.
 */
export class H1Connections {
  private readonly conns = new Members<H1ServerConnection>();
  private readonly handler: H1Handler;
  private readonly sweeper: ReturnType<typeof setInterval>;

  constructor(
    private readonly opts: H1Options,
    localPort: () => number,
  ) {
    const roles = opts.roles;
    this.handler = {
      limits: opts.limits,
      scheme: opts.scheme,
      get localPort() {
        return localPort();
      },
      headTimeoutMs: opts.headTimeoutMs,
      idleMs: opts.idleMs,
      draining: false,
      request: roles.request,
      connect: roles.connect,
      refuse: (conn: H1ServerConnection, err: KedgeError) => {
        conn.send(Buffer.from(rawErrorResponse(err, roles.newRequestId(), roles.errorPrefix), "latin1"));
        conn.closeWhenFlushed();
      },
    };
    this.sweeper = setInterval(() => this.sweep(), sweepEveryMs);
    this.sweeper.unref();
  }

  /** A new client connection; over max_connections it is answered 503 and closed. */
  adopt(transport: ClientTransport): H1ServerConnection {
    const conn = new H1ServerConnection(transport, this.handler);
    if (this.opts.guard.admit()) this.conns.add(conn);
    else this.handler.refuse(conn, tooManyConnections);
    return conn;
  }

  /**
   * A CONNECT tunnel whose bytes this listener serves as HTTP/1.1 itself (winch: plain HTTP to a
   * cluster host's port 80); `rest` is what the client sent past the CONNECT head. Requests on it
   * name the tunnel as their `socket`.
   */
  adoptTunnel(tunnel: TunnelSocket, rest: Buffer, client: ClientTransport): void {
    const conn = this.adoptStream(new NodeTransport(tunnel, client.remoteAddress));
    if (rest.length > 0) conn.onData(rest);
  }

  private adoptStream(transport: NodeTransport): H1ServerConnection {
    const conn = this.adopt(transport);
    transport.deliverTo({
      onData: (d) => conn.onData(d),
      onDrain: () => conn.onDrain(),
      onEnd: () => conn.onEnd(),
      onClose: () => this.closed(conn),
    });
    return conn;
  }

  closed(conn: H1ServerConnection | undefined): void {
    if (!conn) return;
    if (this.conns.delete(conn)) this.opts.guard.release();
    conn.onClose();
  }

  /** Stops taking requests: idle connections close now, busy ones after their response. */
  stop(): void {
    this.handler.draining = true;
    for (const conn of this.conns.snapshot()) if (this.conns.has(conn) && conn.idle) conn.closeWhenFlushed();
  }

  kill(): void {
    clearInterval(this.sweeper);
    for (const conn of this.conns.snapshot()) conn.destroy();
  }

  private sweep(): void {
    const now = performance.now();
    for (const conn of this.conns.snapshot()) {
      const deadline = conn.deadline;
      if (deadline === 0 || deadline > now || !this.conns.has(conn)) continue;
      if (deadline === keepAliveStarted) {
        conn.deadline = now + this.opts.idleMs;
        continue;
      }
      if (conn.expired()) {
        this.opts.guard.refused.headTimeout++;
        this.handler.refuse(conn, headTimeout);
      }
    }
  }
}
