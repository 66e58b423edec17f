import type { TLSOptions } from "bun";
import { H1Connection, socketHandlers, UpstreamError } from "./h1-connection.js";

export interface PoolOptions {
  host: string;
  port: number;
  tls?: TLSOptions;
  maxConnections: number;
  connectTimeoutMs: number;
  responseHeaderTimeoutMs: number;
  idleTimeoutMs: number;
  keepAliveMs: number;
}

export interface PoolStats {
  open: number;
  idle: number;
  waiting: number;
}

/** Who asked for a connection: told once, granted one or failed. An object, not two callbacks: no closures per request. */
export interface PoolClient {
  granted(conn: H1Connection): void;
  failed(err: UpstreamError): void;
}

type Waiter = { client: PoolClient; timer: Timer };

/** A bounded pool of keep-alive connections to one endpoint, with a FIFO queue of waiters. */
export class H1Pool {
  private readonly idle: H1Connection[] = [];
  private readonly waiters: Waiter[] = [];
  private open = 0;
  private closing = false;

  constructor(readonly options: PoolOptions) {}

  get stats(): PoolStats {
    return { open: this.open, idle: this.idle.length, waiting: this.waiters.length };
  }

  /** Hands out an idle connection, dials a new one, or queues. The client hears once, possibly synchronously. */
  acquire(client: PoolClient): void {
    const conn = this.idle.pop();
    if (conn) return client.granted(conn);
    if (this.open < this.options.maxConnections) return this.dial(client);
    const waiter: Waiter = {
      client,
      timer: setTimeout(() => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        client.failed(new UpstreamError("pool-timeout", "no free connection to the backend in time", false));
      }, this.options.connectTimeoutMs),
    };
    this.waiters.push(waiter);
  }

  /** Always dials a new connection (used to retry after a stale keep-alive connection). */
  dial(client: PoolClient): void {
    const { host, port, tls, connectTimeoutMs } = this.options;
    this.open++;
    const conn = new H1Connection(this);
    let settled = false;
    // Exactly one outcome per dial: granted, or failed and its slot given back.
    const settle = (err: UpstreamError | undefined) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (!err) return client.granted(conn);
      conn.closed = true;
      conn.socket?.terminate();
      this.open--;
      client.failed(err);
    };
    const timer = setTimeout(() => settle(new UpstreamError("connect-timeout", `dial ${host}:${port} timed out`, false)), connectTimeoutMs);
    Bun.connect<H1Connection>({ hostname: host, port, tls, data: conn, socket: socketHandlers }).then(
      (socket) => {
        conn.socket = socket;
        if (settled) return void socket.terminate();
        socket.setNoDelay(true);
        if (!tls) return settle(undefined);
        conn.handshakeWaiter = (err) =>
          settle(err ? new UpstreamError("connect", `TLS to ${host}:${port}: ${err.message}`, false) : undefined);
      },
      (err: Error) => settle(new UpstreamError("connect", `dial ${host}:${port}: ${err.message}`, false)),
    );
  }

  release(conn: H1Connection): void {
    const waiter = this.waiters.shift();
    if (waiter) {
      clearTimeout(waiter.timer);
      waiter.client.granted(conn);
      return;
    }
    if (this.closing) {
      conn.destroy();
      return;
    }
    conn.parked();
    this.idle.push(conn);
  }

  forget(conn: H1Connection): void {
    const i = this.idle.indexOf(conn);
    if (i >= 0) this.idle.splice(i, 1);
    this.open--;
    // A slot freed up: let the oldest waiter dial.
    const waiter = this.waiters.shift();
    if (waiter) {
      clearTimeout(waiter.timer);
      this.dial(waiter.client);
    }
  }

  /** Closes idle connections now and busy ones as they finish. */
  close(): void {
    this.closing = true;
    for (const conn of this.idle.splice(0)) conn.destroy();
    for (const w of this.waiters.splice(0)) {
      clearTimeout(w.timer);
      w.client.failed(new UpstreamError("connect", "backend pool closed", false));
    }
  }
}
