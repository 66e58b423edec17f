import type { Duplex } from "node:stream";
import type { IncomingHttpHeaders } from "node:http2";
import { KedgeError } from "../../errors.js";
import { sendError } from "../../proxy/error-response.js";
import { ErrorCode } from "../../h2/frames.js";
import type { H2Headers } from "../../h2/hpack.js";
import { GrpcStatus, statusTrailers } from "../../proxy/grpc-call.js";
import type { ConnectionGuard } from "../connection-guard.js";
import { isGrpc } from "../listen.js";
import type { HeadLimits } from "../h1/request-head.js";
import { NodeTransport, type ClientTransport } from "../h1/transport.js";
import { H2Response } from "../ingress-h2.js";
import { H2ServerConnection, type H2ServerHandler } from "./connection.js";
import type { H2ServerStream } from "./stream.js";
import { Members } from "../../net/members.js";

export interface H2Options {
  /** Serves one request (kedge: the gRPC or HTTP proxy; winch: its gRPC forwarding). */
  serve(stream: H2ServerStream, headers: IncomingHttpHeaders): void;
  /** Prefix of the error headers kedge's own answers carry: x-kedge or x-winch. */
  errorPrefix: "x-kedge" | "x-winch";
  guard: ConnectionGuard;
  limits: HeadLimits;
  maxStreams: number;
  /** A new connection must have sent the preface and its SETTINGS within this. */
  headTimeoutMs: number;
  /** A connection without streams for this long is closed (GOAWAY). */
  idleMs: number;
  /** A stream whose answer waits this long for the client's flow-control window is reset. */
  sendTimeoutMs: number;
}

const sweepEveryMs = 500;
/** Shutdown's final GOAWAY goes this long after the first when the client does not ack its PING. */
const finalGoawayAfterMs = 1_000;
/** server.h2_stream_send_timeout's default. */
export const defaultSendTimeoutMs = 30_000;

/**
 * The HTTP/2 client connections of one listener: admission against max_connections, each request
 * to `serve`, and one timer sweeping every connection for the preface deadline (slowloris), the
 * idle timeout and streams stalled on the client's flow-control window.
 */
export class H2Connections implements H2ServerHandler {
  private readonly conns = new Members<H2ServerConnection>();
  private readonly sweeper: ReturnType<typeof setInterval>;
  readonly limits: HeadLimits;
  readonly maxStreams: number;
  readonly errorPrefix: "x-kedge" | "x-winch";
  private readonly shuttingDown: KedgeError;
  /** stop() was called: a connection adopted since is told GOAWAY at once. */
  private stopped = false;

  constructor(private readonly opts: H2Options) {
    this.shuttingDown = new KedgeError("shutting-down", 503, `${opts.errorPrefix.slice(2)} is shutting down`);
    this.limits = opts.limits;
    this.maxStreams = opts.maxStreams;
    this.errorPrefix = opts.errorPrefix;
    this.sweeper = setInterval(() => this.sweep(), sweepEveryMs);
    this.sweeper.unref();
  }

  stream(stream: H2ServerStream, headers: H2Headers): void {
    stream.grpc = isGrpc(headers as IncomingHttpHeaders);
    this.opts.serve(stream, headers as IncomingHttpHeaders);
  }

  refuse(stream: H2ServerStream, status: number, reason: string): void {
    sendError(new H2Response(stream), new KedgeError("bad-request", status, reason), "", this.errorPrefix);
  }

  /**
   * A new client connection; over max_connections it is sent GOAWAY at once. `peer` is where its
   * address and certificate are read; `plaintext`: the h2c port, where HTTP/1.1 clients are answered.
   */
  adopt(transport: ClientTransport, peer: object = transport.peer ?? transport, plaintext = transport.peer === undefined): H2ServerConnection {
    const conn = new H2ServerConnection(transport, this, peer, plaintext);
    if (!this.opts.guard.admit()) conn.fail(ErrorCode.REFUSED_STREAM, "too many connections");
    else {
      this.conns.add(conn);
      // A TLS connection is adopted when its handshake is done, which may be after stop() told the
      // others to go away; served as they were, it would take new requests until the drain ends.
      if (this.stopped) conn.shutdown(this.shuttingDown.message);
    }
    return conn;
  }

  /**
   * A CONNECT tunnel whose bytes this listener serves as HTTP/2 itself (winch: gRPC clients that
   * reach it through grpc_proxy); `rest` is what the client already sent, the preface first. Its
   * streams name the tunnel as their connection's socket.
   */
  adoptTunnel(tunnel: Duplex, rest: Buffer, remoteAddress: string): void {
    const conn = this.adoptStream(new NodeTransport(tunnel, remoteAddress), tunnel);
    if (rest.length > 0) conn.onData(rest);
    // Left paused by whoever read its first bytes to decide what it carries.
    tunnel.resume();
  }

  private adoptStream(transport: NodeTransport, peer: Duplex): H2ServerConnection {
    const conn = this.adopt(transport, peer, false);
    transport.deliverTo({
      onData: (d) => conn.onData(d),
      onDrain: () => conn.onDrain(),
      onEnd: () => conn.onEnd(),
      onClose: () => this.closed(conn),
    });
    return conn;
  }

  closed(conn: H2ServerConnection | undefined): void {
    if (!conn) return;
    if (this.conns.delete(conn)) this.opts.guard.release();
    conn.onClose();
  }

  /** GOAWAY to every connection: in-flight streams finish, no new ones start. */
  stop(): void {
    this.stopped = true;
    for (const conn of this.conns.snapshot()) if (this.conns.has(conn)) conn.shutdown(this.shuttingDown.message);
  }

  /** Requests and calls in flight over every connection. */
  activeStreams(): number {
    let n = 0;
    for (const conn of this.conns.snapshot()) n += conn.activeStreams;
    return n;
  }

  /**
   * The drain's deadline passed: what is still in flight ends with a clean answer, then each
   * connection closes once it is written. A gRPC call gets grpc-status UNAVAILABLE (its trailers,
   * or a trailers-only answer), an HTTP request without a response yet a 503, a response under
   * way RST_STREAM(CANCEL); each stream's close cancels its backend call.
   */
  abortInFlight(): void {
    const err = this.shuttingDown;
    for (const conn of this.conns.snapshot()) {
      if (!this.conns.has(conn)) continue;
      conn.finalGoaway();
      for (const stream of [...conn.streams.values()]) {
        if (stream.grpc) {
          const trailers = statusTrailers(GrpcStatus.UNAVAILABLE, err.message);
          if (stream.headersSent) stream.sendTrailers(trailers);
          else stream.respond({ ":status": 200, "content-type": "application/grpc", ...trailers }, { endStream: true });
        } else if (!stream.headersSent) sendError(new H2Response(stream), err, "", this.errorPrefix);
        else stream.close(ErrorCode.CANCEL);
      }
    }
  }

  kill(): void {
    clearInterval(this.sweeper);
    for (const conn of this.conns.snapshot()) conn.destroy();
  }

  private sweep(): void {
    const now = performance.now();
    const { headTimeoutMs, idleMs, sendTimeoutMs } = this.opts;
    for (const conn of this.conns.snapshot()) {
      if (!this.conns.has(conn)) continue;
      conn.resetStalled(now, sendTimeoutMs);
      if (conn.drainingSince > 0 && now - conn.drainingSince > finalGoawayAfterMs) conn.finalGoaway();
      if (!conn.settled) {
        if (now - conn.openedAt > headTimeoutMs) {
          this.opts.guard.refused.headTimeout++;
          conn.destroy();
        }
      } else if (conn.activeStreams === 0 && now - conn.lastActivity > idleMs) conn.shutdown("idle");
    }
  }
}
