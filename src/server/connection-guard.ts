import type { Duplex } from "node:stream";
import { KedgeError } from "../errors.js";
import { writeRawError } from "../proxy/tunnel.js";

const sweepEveryMs = 500;
export const tooManyConnections = new KedgeError("overloaded", 503, "too many connections");
export const headTimeout = new KedgeError("bad-request", 408, "no complete request head in time");

function refuse(socket: Duplex, err: KedgeError): void {
  writeRawError(socket, err, "", "x-kedge");
  setTimeout(() => socket.destroy(), 100).unref();
}

/**
 * Connection-level defences shared by every listener: a bound on open client connections (each
 * one costs a file descriptor and buffers), and a deadline for a new connection's first request
 * head (slowloris: many connections each dribbling a header). Deadlines are swept on one timer
 * instead of one timer per connection.
 */
export class ConnectionGuard {
  private open = 0;
  private readonly awaitingHead = new Map<Duplex, number>();
  /** Over the limit: refused at their first request, or by the sweeper (Bun cannot close a server socket before it has read). */
  private readonly overLimit = new Set<Duplex>();
  /** Connections whose first request came before Bun reported the connection itself (it does so a tick late). */
  private readonly served = new WeakSet<Duplex>();
  private readonly sweeper: ReturnType<typeof setInterval>;
  /** Connections closed at once because the limit was reached, and ones that missed the head deadline. */
  readonly refused = { overLimit: 0, headTimeout: 0 };

  constructor(
    private readonly maxConnections: number,
    private readonly headerTimeoutMs: number,
  ) {
    this.sweeper = setInterval(() => this.sweep(), sweepEveryMs);
    this.sweeper.unref();
  }

  get openConnections(): number {
    return this.open;
  }

  /** Counts a new connection; returns false, and refuses it soon, when the limit is reached. */
  admit(socket: Duplex, awaitsHead: boolean): boolean {
    const served = this.served.has(socket);
    if (this.open >= this.maxConnections && !served) {
      this.refused.overLimit++;
      this.overLimit.add(socket);
      socket.once("close", () => this.overLimit.delete(socket));
      return false;
    }
    this.open++;
    socket.once("close", () => {
      this.open--;
      this.awaitingHead.delete(socket);
    });
    if (awaitsHead && !served) this.awaitingHead.set(socket, performance.now() + this.headerTimeoutMs);
    return true;
  }

  /** Counts a connection whose listener reports its close itself (kedge's own HTTP/1.1 listener); false at the limit. */
  admitOwned(): boolean {
    if (this.open >= this.maxConnections) {
      this.refused.overLimit++;
      return false;
    }
    this.open++;
    return true;
  }

  releaseOwned(): void {
    this.open--;
  }

  /** The connection delivered a request head; false when it must be refused instead of served. */
  gotHead(socket: Duplex | null | undefined): boolean {
    if (!socket) return true;
    this.served.add(socket);
    this.awaitingHead.delete(socket);
    return this.overLimit.size === 0 || !this.overLimit.has(socket);
  }

  private sweep(): void {
    for (const socket of this.overLimit) refuse(socket, tooManyConnections);
    this.overLimit.clear();
    if (this.awaitingHead.size === 0) return;
    const now = performance.now();
    for (const [socket, deadline] of this.awaitingHead) {
      if (deadline > now) continue;
      this.awaitingHead.delete(socket);
      this.refused.headTimeout++;
      refuse(socket, headTimeout);
    }
  }

  close(): void {
    clearInterval(this.sweeper);
  }
}
