import type { Socket, SocketHandler, TLSOptions } from "bun";
import { ParseError, type ResponseHead } from "./response-head.js";
import { ResponseParser } from "./response-parser.js";
import type { HeadWriter } from "../net/head-writer.js";
import { SocketWriter } from "../net/socket-writer.js";
import { TunnelSocket, type TunnelOutput } from "../net/tunnel-socket.js";
import { Members } from "../net/members.js";
import { readBegins } from "../net/read-epoch.js";

/** Why an exchange with a backend failed, and whether the request may be sent elsewhere. */
export type UpstreamFailure =
  | "connect" // dial or TLS handshake failed: nothing was sent
  | "connect-timeout"
  | "pool-timeout" // waited too long for a free connection: nothing was sent
  | "stale" // a reused keep-alive connection closed before any response byte
  | "closed" // the backend closed mid-exchange
  | "response-timeout" // no response head in time
  | "idle-timeout" // silence mid-response
  | "protocol"; // the backend spoke broken HTTP

export class UpstreamError extends Error {
  constructor(
    readonly failure: UpstreamFailure,
    message: string,
    /** The response head was already handed out. */
    readonly responseStarted: boolean,
  ) {
    super(message);
    this.name = "UpstreamError";
  }
}

export interface ExchangeHandlers {
  onHead(head: ResponseHead): void;
  /** Returns false when the client is not keeping up; call `exchange.resume()` when it drains. */
  onBody(chunk: Uint8Array): boolean;
  /** The response is complete; `last` is its final body bytes, if they came with the end. */
  onEnd(last?: Uint8Array): void;
  onError(err: UpstreamError): void;
}

/** What a connection needs of the pool that dialled it: its timeouts, and a way to hand itself back. */
export interface ConnectionPool {
  readonly options: { readonly tls?: TLSOptions; readonly responseHeaderTimeoutMs: number; readonly idleTimeoutMs: number; readonly keepAliveMs: number };
  release(conn: H1Connection): void;
  forget(conn: H1Connection): void;
}

/** Bun.connect handlers shared by every connection; the connection is the socket's data. */
export const socketHandlers: SocketHandler<H1Connection> = {
  data: (socket, data) => socket.data.onData(data),
  drain: (socket) => socket.data.onDrain(),
  close: (socket, err) => socket.data.onClose(err),
  end: (socket) => socket.data.onClose(),
  error: (socket, err) => socket.data.onClose(err),
  connectError: (socket, err) => socket.data?.onClose(err),
  handshake: (socket, success, authorizationError) => socket.data.onHandshake(success, authorizationError),
};

/**
 * Open connections (busy or idle in their pool), checked by one coarse timer: for a late response
 * head, for backend silence mid-body, and for an idle keep-alive past its time. Bun's socket
 * timeouts fire seconds late (uSockets checks them at a 4 s granularity), and arming a timer or a
 * socket timeout per request costs more on the hot path than this sweep, which fires a deadline at
 * most sweepMs late (a silence at most twice that: the sweep also keeps the time of the last read).
 * It runs while any connection is open.
 */
const watched = new Members<H1Connection>();
let sweeper: ReturnType<typeof setInterval> | undefined;
const sweepMs = 250;
/**
 * A wait for a response head this long is timed from the next sweep, not from a clock read per
 * request (~0.3% of a proxied request's CPU): it may then fire one sweep later, 12% of it at most.
 * A shorter one (a route's per_try_timeout, say) reads the clock.
 */
const stampedFromMs = 8 * sweepMs;
/** headDeadline until the next sweep stamps it: the request is sent, the wait has begun. */
const stampNextSweep = -1;

function watch(conn: H1Connection): void {
  watched.add(conn);
  if (sweeper) return;
  sweeper = setInterval(() => {
    const now = performance.now();
    for (const c of watched.snapshot()) if (watched.has(c)) c.sweep(now);
    if (watched.size === 0) {
      clearInterval(sweeper);
      sweeper = undefined;
    }
  }, sweepMs);
  sweeper.unref?.();
}

/**
 * One HTTP/1.1 connection to a backend, carrying one exchange at a time. Written against
 * Bun.connect: socket.write may take only part of a buffer, so the rest waits for `drain`.
 * After a 101 it leaves its pool and carries bytes for a TunnelSocket (TunnelOutput).
 */
export class H1Connection implements TunnelOutput {
  socket!: Socket<H1Connection>;
  private readonly parser = new ResponseParser();
  private handlers: ExchangeHandlers | undefined;
  // The socket is assigned once Bun.connect resolves, after construction.
  private readonly writer = new SocketWriter({ write: (data, offset, length) => this.socket.write(data, offset, length) });
  private drainWaiter: (() => void) | undefined;
  /**
   * When the response head must have arrived (performance.now()): response_header counts from the
   * last request byte sent, so a slow upload is not the backend's delay. Infinity until then;
   * stampNextSweep from then until the sweep times it.
   */
  private headDeadline = Infinity;
  /** This exchange's wait for its response head: the pool's response_header, or a route's shorter per_try_timeout. */
  private headTimeoutMs = 0;
  private responseStarted = false;
  private responseBytes = 0;
  private requestEnded = false;
  private mustClose = false;
  /** Inside parser.feed: a response that completes is settled after the read, once it is known whether bytes followed it. */
  private feeding = false;
  private finishAfterRead = false;
  private paused = false;
  /** When the backend last sent bytes (performance.now(), as of the sweep after them), for the silence checks. */
  private lastActivity = 0;
  /** Bytes came since the last sweep, which stamps lastActivity: a read costs no clock read, a silence check fires at most one sweep later. */
  private active = false;
  /** Its slot among the connections the sweep watches (net/members.ts). */
  memberSlot = -1;
  closed = false;
  uses = 0;
  /** Set once the backend switched protocols: the connection is a byte stream, out of its pool. */
  private tunnel: TunnelSocket | undefined;
  private endWhenFlushed = false;
  /** Set while a TLS connection waits for its handshake: dial() is not done until it succeeds. */
  handshakeWaiter: ((err: Error | undefined) => void) | undefined;

  constructor(readonly pool: ConnectionPool) {}

  onHandshake(success: boolean, authorizationError: Error | null): void {
    const waiter = this.handshakeWaiter;
    this.handshakeWaiter = undefined;
    const rejected = !success || (authorizationError && this.pool.options.tls?.rejectUnauthorized !== false);
    waiter?.(rejected ? (authorizationError ?? new Error("TLS handshake failed")) : undefined);
  }

  /**
   * Starts an exchange: writes the request head `head` holds. The body follows with write()/end().
   * `perTryTimeoutMs` (a route's retry policy), when shorter, bounds the wait for the response head
   * in place of the pool's response_header.
   */
  begin(head: HeadWriter, noResponseBody: boolean, handlers: ExchangeHandlers, bodyless: boolean, upgrade = false, perTryTimeoutMs = 0): void {
    this.uses++;
    const headTimeoutMs = this.pool.options.responseHeaderTimeoutMs;
    this.headTimeoutMs = perTryTimeoutMs > 0 && perTryTimeoutMs < headTimeoutMs ? perTryTimeoutMs : headTimeoutMs;
    this.handlers = handlers;
    this.responseStarted = false;
    this.responseBytes = 0;
    this.requestEnded = bodyless;
    this.mustClose = false;
    this.parser.expect(this, noResponseBody, upgrade);
    this.headDeadline = Infinity;
    this.ensureWatched();
    if (this.closed) return;
    const own = head.ownBytes();
    const flushed = own ? this.writer.write(own) : this.writer.writeScratch(head.at);
    if (bodyless && flushed) this.startHeadClock();
  }

  private startHeadClock(): void {
    this.headDeadline = this.headTimeoutMs >= stampedFromMs ? stampNextSweep : performance.now() + this.headTimeoutMs;
  }

  /** The connection waits in its pool: the sweeper closes it once it has been idle for keepAliveMs. */
  parked(): void {
    if (this.lastActivity === 0) this.lastActivity = performance.now(); // never used: idle from now
    this.ensureWatched();
  }

  private ensureWatched(): void {
    if (watched.has(this)) return;
    watch(this);
  }

  private unwatch(): void {
    watched.delete(this);
  }

  /** Writes request bytes; false means wait for `onWritable` before writing more. */
  write(data: Uint8Array): boolean {
    if (this.closed) return false;
    return this.writer.write(data);
  }

  /**
   * Called from the exchange's onHead for a 101: the connection leaves its pool and its silence
   * checks (a WebSocket may rightly be quiet for hours) and becomes the stream returned.
   */
  switchProtocols(): TunnelSocket {
    this.unwatch();
    this.handlers = undefined;
    this.pool.forget(this);
    this.tunnel = new TunnelSocket(this);
    return this.tunnel;
  }

  // TunnelOutput, once switched.
  send(bytes: Uint8Array): boolean {
    return this.write(bytes);
  }

  closeWhenFlushed(): void {
    if (this.closed) return;
    if (this.writer.pending) this.endWhenFlushed = true;
    else this.socket.end();
  }

  onWritable(cb: () => void): void {
    this.drainWaiter = cb;
  }

  /** The request body is complete. */
  endRequest(): void {
    this.requestEnded = true;
    if (!this.writer.pending) this.startHeadClock();
  }

  pause(): void {
    if (!this.paused) {
      this.paused = true;
      this.socket.pause();
    }
  }

  resume(): void {
    if (this.paused) {
      this.paused = false;
      this.socket.resume();
    }
  }

  /** The client went away or the proxy gave up: the connection cannot be reused. */
  abort(): void {
    this.handlers = undefined;
    this.destroy();
  }

  // ResponseSink, called by the parser.
  onHead(head: ResponseHead): void {
    this.responseStarted = true;
    this.mustClose = head.close;
    this.handlers?.onHead(head); // the read (onData) that carried the head marked the connection active
  }

  /**
   * Called by the sweeper: a response head that is late, a backend gone silent mid-body, or (idle in
   * the pool) a keep-alive past its time.
   */
  sweep(now: number): void {
    if (this.closed || this.tunnel) return this.unwatch();
    if (this.active) {
      this.active = false;
      this.lastActivity = now;
    }
    if (!this.handlers) {
      // The last read of the previous response is when the connection went idle.
      if (now - this.lastActivity > this.pool.options.keepAliveMs) this.destroy();
      return;
    }
    if (!this.responseStarted) {
      if (this.headDeadline === stampNextSweep) this.headDeadline = now + this.headTimeoutMs;
      else if (now > this.headDeadline) this.timeoutHeader();
      return;
    }
    // A paused connection waits for a slow client, not for the backend.
    if (this.paused) this.lastActivity = now;
    else if (now - this.lastActivity > this.pool.options.idleTimeoutMs) {
      this.fail(new UpstreamError("idle-timeout", "backend went silent mid-response", true));
    }
  }

  onBody(chunk: Uint8Array): boolean {
    const more = this.handlers?.onBody(chunk) ?? true;
    if (!more) this.pause();
    return more;
  }

  onEnd(last?: Uint8Array): void {
    const handlers = this.handlers;
    this.handlers = undefined;
    // Answered before the whole request went: the exchange sends no more of it, so the framing is cut.
    if (!this.requestEnded) this.mustClose = true;
    if (this.feeding) this.finishAfterRead = true;
    else this.finishExchange();
    handlers?.onEnd(last);
  }

  // Socket events.
  onData(data: Uint8Array): void {
    readBegins();
    if (this.tunnel) return this.tunnel.received(data);
    // Bytes nobody asked for (on an idle connection): whatever they are, the next answer cannot be trusted.
    if (!this.handlers) return this.destroy();
    this.responseBytes += data.length;
    this.active = true;
    this.feeding = true;
    try {
      const used = this.parser.feed(data);
      if (used < data.length && this.parser.done) this.mustClose = true; // bytes after the response: not reusable
      // The new protocol's first bytes came with the 101.
      if (used < data.length && this.parser.switched) this.relay(data.subarray(used));
    } catch (e) {
      const err = e instanceof ParseError ? e : new ParseError(String(e));
      this.fail(new UpstreamError("protocol", `backend sent invalid HTTP: ${err.message}`, this.responseStarted));
    }
    this.feeding = false;
    if (this.finishAfterRead) {
      this.finishAfterRead = false;
      this.finishExchange();
    }
  }

  // A method, not `this.tunnel?.received` inline: onData's early return has narrowed `tunnel` to undefined there.
  private relay(bytes: Uint8Array): void {
    this.tunnel?.received(bytes);
  }

  onDrain(): void {
    if (!this.writer.flush()) return;
    if (this.requestEnded && this.headDeadline === Infinity && this.handlers) this.startHeadClock();
    if (this.tunnel) {
      if (this.endWhenFlushed) this.socket.end();
      return this.tunnel.drained();
    }
    const waiter = this.drainWaiter;
    this.drainWaiter = undefined;
    waiter?.();
  }

  onClose(err?: Error): void {
    if (this.handshakeWaiter) return this.onHandshake(false, err ?? new Error("closed during the TLS handshake"));
    // Before Bun.connect resolves, dial() owns failures (the promise rejects too).
    if (this.closed || !this.socket) return;
    this.closed = true;
    this.unwatch();
    if (this.tunnel) return this.tunnel.connectionClosed();
    this.pool.forget(this);
    if (!this.handlers) return;
    if (this.parser.eof()) return; // a close-delimited body ended
    const stale = this.uses > 1 && this.responseBytes === 0;
    const reason = err ? `: ${err.message}` : "";
    this.fail(new UpstreamError(stale ? "stale" : "closed", `backend closed the connection${reason}`, this.responseStarted));
  }

  private timeoutHeader(): void {
    this.fail(new UpstreamError("response-timeout", "backend sent no response in time", false));
  }

  private fail(err: UpstreamError): void {
    const handlers = this.handlers;
    this.handlers = undefined;
    this.destroy();
    handlers?.onError(err);
  }

  private finishExchange(): void {
    this.writer.clear();
    this.drainWaiter = undefined;
    this.resume();
    if (this.mustClose || this.closed) this.destroy();
    else this.pool.release(this);
  }

  destroy(): void {
    this.unwatch();
    if (!this.closed) {
      this.closed = true;
      if (!this.tunnel) this.pool.forget(this);
      this.socket?.terminate();
    }
  }
}
