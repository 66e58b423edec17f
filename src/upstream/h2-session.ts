import type { TLSOptions } from "bun";
import { H2Connection } from "./h2/connection.js";
import { ErrorCode, StreamError } from "../h2/frames.js";
import { H2Stream, type StreamHandler } from "./h2/stream.js";

export interface H2SessionOptions {
  host: string;
  port: number;
  /** Bun TLS options (ALPN h2 is added); absent: h2c (prior knowledge). */
  tls?: TLSOptions;
  connectTimeoutMs: number;
  /** Keepalive PING interval and answer timeout (H2ConnectionOptions); defaults 300 s and 20 s. */
  keepaliveMs?: number;
  keepaliveTimeoutMs?: number;
  /** First reconnect delay after a lost connection; doubles per failure up to maxReconnectMs. */
  reconnectBaseMs?: number;
  maxReconnectMs?: number;
}

export interface H2SessionStats {
  connected: boolean;
  activeStreams: number;
  /** Connections opened over this endpoint's lifetime (reconnects and GOAWAY replacements). */
  sessionsOpened: number;
}

/** Connections per endpoint when every one is at the backend's MAX_CONCURRENT_STREAMS. */
const maxConnections = 8;

/**
 * The HTTP/2 connections to one endpoint: one, shared by every call (gRPC multiplexes), connected
 * as soon as the endpoint appears, as kedge Go did. When the calls in flight fill the backend's
 * MAX_CONCURRENT_STREAMS, another connection is opened (up to 8, as Envoy does) instead of making
 * new calls wait: a hundred long-lived watch streams must not starve every unary call behind them.
 * When the connections are lost they are re-dialled in the background with jittered exponential
 * backoff, so the endpoint is warm again before the next call needs it. On GOAWAY a new
 * connection is opened at once for new calls while streams already on the old one finish there
 * (the server promised to complete them).
 */
export class H2Session {
  /** Connections taking new calls, the warm one first. */
  private readonly conns: H2Connection[] = [];
  /** Connections that took GOAWAY and still carry streams. */
  private readonly draining = new Set<H2Connection>();
  private opened = 0;
  private closed = false;
  private failures = 0;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(readonly options: H2SessionOptions) {
    this.dial();
  }

  get stats(): H2SessionStats {
    let active = 0;
    for (const c of this.conns) active += c.activeStreams;
    for (const c of this.draining) active += c.activeStreams;
    return { connected: this.conns.some((c) => c.connected), activeStreams: active, sessionsOpened: this.opened };
  }

  private dial(): H2Connection {
    const { host, port, tls, connectTimeoutMs, keepaliveMs, keepaliveTimeoutMs } = this.options;
    const conn = new H2Connection({ host, port, tls, connectTimeoutMs, keepaliveMs, keepaliveTimeoutMs });
    this.conns.push(conn);
    conn.ready.then(
      () => {
        this.failures = 0;
        this.opened++;
      },
      () => {},
    );
    conn.onGoaway = () => {
      this.draining.add(conn);
      if (!this.forget(conn)) return;
      if (!this.closed && this.conns.length === 0) this.dial();
    };
    conn.whenClosed = () => {
      this.draining.delete(conn);
      // The last one lost, not replaced after GOAWAY nor closed by us: re-dial in the background.
      if (this.forget(conn) && this.conns.length === 0) this.scheduleReconnect();
    };
    return conn;
  }

  private forget(conn: H2Connection): boolean {
    const i = this.conns.indexOf(conn);
    if (i >= 0) this.conns.splice(i, 1);
    return i >= 0;
  }

  /** The first connection with a free stream slot; a new one when all are full (up to the cap), else the least queued. */
  private connectionForCall(): H2Connection {
    const conns = this.conns;
    for (let i = 0; i < conns.length; i++) if (conns[i].hasRoom) return conns[i];
    if (conns.length < maxConnections) return this.dial();
    let least = conns[0];
    for (const c of conns) if (c.activeStreams < least.activeStreams) least = c;
    return least;
  }

  private scheduleReconnect(): void {
    if (this.closed || this.retryTimer) return;
    const base = this.options.reconnectBaseMs ?? 100;
    const max = this.options.maxReconnectMs ?? 10_000;
    const delay = Math.min(max, base * 2 ** Math.min(this.failures, 16));
    this.failures++;
    // Jitter (50–100%) so every kedge replica does not re-dial a restarted pod in the same instant.
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      if (!this.closed && this.conns.length === 0) this.dial();
    }, delay * (0.5 + Math.random() / 2));
    this.retryTimer.unref?.();
  }

  /**
   * Starts a call on the current connection (dialling one if there is none); the request body
   * follows with write()/end(). A failure to connect reaches `handler.close` with `dialFailed`.
   * `block` undefined: the header block just encoded (hpack's current block), taken before this returns.
   */
  request(block: Uint8Array | undefined, handler: StreamHandler): H2Stream {
    const stream = new H2Stream(block, handler);
    if (this.closed) {
      stream.closed = true;
      queueMicrotask(() => handler.close(new StreamError("backend pool closed", ErrorCode.REFUSED_STREAM, true, true)));
      return stream;
    }
    this.connectionForCall().open(stream);
    return stream;
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.retryTimer);
    for (const c of this.conns.splice(0)) c.close(); // GOAWAY: in-flight streams finish
  }
}
