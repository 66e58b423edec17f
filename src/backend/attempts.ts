import type { Backend, EndpointPool } from "./backend.js";
import type { Endpoint } from "./endpoint.js";
import { defaults } from "../config/backend-defaults.js";

/**
 * How an attempt ended short of the backend's application, which is all that makes a request safe
 * to send again. Anything else (a request byte may have been processed) is never retried.
 */
export type AttemptFailure =
  /** The endpoint could not be reached (dial, TLS handshake, connect timeout): nothing was sent. */
  | "dial"
  /** No connection of the endpoint's pool came free in time: nothing was sent, and the endpoint is not at fault. */
  | "busy"
  /**
   * The backend gave the request back unread: HTTP/2 REFUSED_STREAM or a stream above GOAWAY's
   * last-stream-id (RFC 9113 §8.7), or a reused HTTP/1.1 keep-alive connection it had closed
   * before answering (RFC 9112 §9.3.1).
   */
  | "unprocessed";

export { maxEndpointAttempts } from "./tier.js";
/** Unprocessed sends replayed per request: a GOAWAY race or a stale keep-alive connection needs one. */
export const maxReplays = 2;

type AnyBackend = Backend<unknown, EndpointPool<unknown>>;
type PoolOf<B extends AnyBackend> = ReturnType<B["pick"]>["pool"];

/**
 * The attempts of one request, call or tunnel at its backend: which endpoint is tried next, when
 * a failed attempt may be retried, the endpoint's health and outstanding count, and the hand-over
 * from a backend a reload retired to its successor. HTTP, gRPC and CONNECT drive it the same way:
 * `next()`, then on a failure `retry(failure, resendable)` and `next()` again while it says yes.
 * A protocol's per-request object extends it, so a request allocates nothing more for it.
 */
export class Attempts<B extends AnyBackend> {
  /** Where the request goes: the routed backend, or the successor that replaced it. */
  backend!: B;
  /** The endpoint of the current (or last) attempt. */
  endpoint: Endpoint | undefined = undefined;
  /** performance.now() ms after which nothing is retried (gRPC's grpc-timeout); undefined: none. */
  deadlineAt: number | undefined = undefined;
  /** The current attempt is counted in its endpoint's outstanding requests. */
  private holding = false;
  private failedOn: Set<Endpoint> | undefined = undefined;
  private replays = 0;

  /** Resolves once the backend (after any reload's hand-over) has its first endpoints; undefined when it has. */
  get pendingResolution(): Promise<void> | undefined {
    return this.toLive().pendingResolution;
  }

  /** Picks the endpoint for the next attempt and counts it outstanding. Throws a KedgeError when none is left. */
  next(): { endpoint: Endpoint; pool: PoolOf<B> } {
    this.release();
    const picked = this.toLive().pick(this.failedOn) as { endpoint: Endpoint; pool: PoolOf<B> };
    this.hold(picked.endpoint);
    return picked;
  }

  /**
   * The pool of the last attempt's endpoint, held again: an HTTP/1.1 replay goes on a fresh
   * connection there, since the pool's other idle connections may be as stale as the one that
   * failed. Undefined when re-resolution dropped the endpoint.
   */
  sameEndpoint(): PoolOf<B> | undefined {
    const endpoint = this.endpoint;
    const pool = endpoint && (this.backend.poolFor(endpoint) as PoolOf<B> | undefined);
    if (pool) this.hold(endpoint);
    return pool;
  }

  /** The backend answered: its endpoint is reachable again, and its tier is where the backend's traffic goes. */
  succeeded(): void {
    const endpoint = this.endpoint;
    if (endpoint === undefined) return;
    endpoint.markHealthy();
    if (endpoint.tier !== this.backend.activeTier) this.backend.answeredFrom(endpoint.tier);
  }

  /** The attempt is over: its endpoint no longer counts it. Idempotent. */
  release(): void {
    if (!this.holding) return;
    this.holding = false;
    this.endpoint!.outstanding--;
  }

  /**
   * The current attempt failed before the backend processed the request: true when another may be
   * made (call `next()`, or `sameEndpoint()` for an HTTP/1.1 replay). `resendable`: kedge still
   * holds all the request the backend would need again, and the client is still there. A dial
   * failure backs its endpoint off and moves on to another, up to maxEndpointAttempts distinct
   * ones per tier; an unprocessed request is replayed up to maxReplays times; nothing is retried past the
   * caller's deadline.
   */
  retry(failure: AttemptFailure, resendable: boolean): boolean {
    const endpoint = this.endpoint!;
    this.release();
    if (failure === "unprocessed") {
      if (!resendable || this.replays >= maxReplays) return false;
      this.replays++;
    } else {
      if (failure === "dial") endpoint.markFailed(this.backend.failureBackoffMs, defaults.maxFailureBackoffMs);
      const failedOn = (this.failedOn ??= new Set());
      failedOn.add(endpoint);
      // Each tier gets its own tries: a whole cluster's endpoints refusing at once still leaves its failover tiers.
      if (!resendable || !this.backend.hasUntried(failedOn)) return false;
    }
    return !this.pastDeadline();
  }

  /** The caller's deadline has passed. */
  pastDeadline(): boolean {
    return this.deadlineAt !== undefined && performance.now() >= this.deadlineAt;
  }

  private hold(endpoint: Endpoint): void {
    this.endpoint = endpoint;
    this.holding = true;
    endpoint.outstanding++;
  }

  /** Endpoints failed on belong to the retired backend: its successor starts afresh. */
  private toLive(): B {
    const live = this.backend.live;
    if (live !== this.backend) {
      this.backend = live;
      this.failedOn?.clear();
    }
    return live;
  }
}
