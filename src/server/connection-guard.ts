import type { Duplex } from "node:stream";
import { KedgeError } from "../errors.js";
import { writeRawError } from "../proxy/tunnel.js";

const sweepEveryMs = 500;
export const tooManyConnections = new KedgeError("overloaded", 503, "too many connections");
export const headTimeout = new KedgeError("bad-request", 408, "no complete request head in time");

/**
 * The bound on open client connections over every listener (each one costs a file descriptor and
 * buffers). kedge's HTTP/1.1 connections report their own close (admitOwned/releaseOwned); the
 * node sockets HTTP/2 runs on are watched here.
 */
export class ConnectionGuard {
  private open = 0;
  /** Over the limit, refused on the next sweep: Bun cannot close a server socket before it has read. */
  private readonly overLimit = new Set<Duplex>();
  private readonly sweeper: ReturnType<typeof setInterval>;
  /** Connections refused because the limit was reached, and ones that missed the head deadline. */
  readonly refused = { overLimit: 0, headTimeout: 0 };

  constructor(private readonly maxConnections: number) {
    this.sweeper = setInterval(() => this.sweep(), sweepEveryMs);
    this.sweeper.unref();
  }

  get openConnections(): number {
    return this.open;
  }

  /** Counts a node socket; false, and refused soon, when the limit is reached. */
  admit(socket: Duplex): boolean {
    if (this.open >= this.maxConnections) {
      this.refused.overLimit++;
      this.overLimit.add(socket);
      socket.once("close", () => this.overLimit.delete(socket));
      return false;
    }
    this.open++;
    socket.once("close", () => this.open--);
    return true;
  }

  /** Counts a connection whose listener reports its close itself; false at the limit. */
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

  private sweep(): void {
    for (const socket of this.overLimit) {
      writeRawError(socket, tooManyConnections, "", "x-kedge");
      setTimeout(() => socket.destroy(), 100).unref();
    }
    this.overLimit.clear();
  }

  close(): void {
    clearInterval(this.sweeper);
  }
}
