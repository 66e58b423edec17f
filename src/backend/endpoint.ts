import { formatHostPort } from "../net/host-port.js";
import type { KedgeHop } from "./kedge-tier.js";

/** One address of a backend, with the health state the balancer reads. */
export class Endpoint {
  readonly address: string;
  /** Requests in flight (least-outstanding-requests balancing). */
  outstanding = 0;
  /** Until this time (ms) the endpoint is skipped after a failed dial. */
  badUntil = 0;
  private failures = 0;
  /** Failed attempts in a row on real traffic (outlier detection): a dial, a reset, a 5xx, UNAVAILABLE. */
  consecutiveFailures = 0;
  /** Outlier detection took it out until its ejection ends. */
  ejected = false;
  /** Ejections its next one doubles over (outlier detection forgets them after a good spell). */
  ejections = 0;
  /** How long its latest ejection lasts (ms). */
  ejectionMs = 0;
  /** performance.now() when its last ejection ended. */
  returnedAt = 0;
  /** Active health checks find it down. */
  failingChecks = false;
  /** Active health checks' passes and failures in a row, and whether one is in flight (the next round skips it). */
  checkPasses = 0;
  checkFailures = 0;
  checking = false;

  constructor(
    readonly host: string,
    readonly port: number,
    /** The backend's tier it belongs to: 0 for its own resolver, 1… for its failover tiers in order. */
    readonly tier = 0,
    /** Set when the endpoint is another cluster's kedge: what requests sent there carry. */
    readonly hop: KedgeHop | undefined = undefined,
  ) {
    this.address = formatHostPort(host, port);
  }

  /** Neither ejected, failing its health checks, nor backing off after a failed dial. */
  get healthy(): boolean {
    return !this.ejected && !this.failingChecks && (this.badUntil === 0 || this.badUntil <= performance.now());
  }

  /**
   * Backoff doubles per consecutive failure: base, 2×base, … up to max. Attempts already under
   * way when an earlier one failed fail with it (a burst of gRPC calls on one dial): they belong
   * to that failure and neither extend nor double the backoff, or one try of a dead endpoint
   * would push its next try, and traffic's return to it, out to max.
   */
  markFailed(baseMs: number, maxMs: number): void {
    if (this.badUntil > performance.now()) return;
    const backoff = Math.min(maxMs, baseMs * 2 ** Math.min(this.failures, 16));
    this.failures++;
    this.badUntil = performance.now() + backoff;
  }

  markHealthy(): void {
    this.failures = 0;
    this.badUntil = 0;
  }
}

/** What a resolver emits: the full current set of addresses. */
export interface ResolvedAddress {
  host: string;
  port: number;
}

/** Drops repeated host:port pairs (a name resolving twice, an address in two slices), keeping order. */
export function dedupeAddresses(addresses: ResolvedAddress[]): ResolvedAddress[] {
  const seen = new Set<string>();
  return addresses.filter((a) => {
    const key = `${a.host}|${a.port}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/** A Resolver watches a name and reports the complete address set whenever it changes. */
export interface Resolver {
  start(onUpdate: (addresses: ResolvedAddress[]) => void, onError: (message: string) => void): void;
  stop(): void;
  readonly description: string;
}
