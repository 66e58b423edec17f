import { KedgeError } from "../errors.js";

export const tooManyConnections = new KedgeError("overloaded", 503, "too many connections");
export const headTimeout = new KedgeError("bad-request", 408, "no complete request head in time");
export const bodyTimeout = new KedgeError("bad-request", 408, "request body stalled past client_idle_timeout");

/**
 * The bound on open client connections over every listener (each one costs a file descriptor and
 * buffers). kedge's HTTP/1.1 and HTTP/2 connections report their own open and close.
 */
export class ConnectionGuard {
  private open = 0;
  /** Connections admitted so far (a worker's share of the port, in /debug/workers). */
  accepted = 0;
  /** Connections refused because the limit was reached, and ones that missed the head deadline. */
  readonly refused = { overLimit: 0, headTimeout: 0 };

  constructor(private readonly maxConnections: number) {}

  get openConnections(): number {
    return this.open;
  }

  /** Counts a connection; false at the limit (the caller refuses it). */
  admit(): boolean {
    if (this.open >= this.maxConnections) {
      this.refused.overLimit++;
      return false;
    }
    this.open++;
    this.accepted++;
    return true;
  }

  release(): void {
    this.open--;
  }
}
