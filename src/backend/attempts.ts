import type { Backend, EndpointPool } from "./backend.js";
import type { Endpoint } from "./endpoint.js";
import { retriesOn, withinBudget, type RetryPolicy, type RetryReason } from "./retry-policy.js";
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

/** What a re-send of an attempt that failed this way is counted as (kedge_retries_total's reason). */
const failureReason: Record<AttemptFailure, RetryReason> = { dial: "connect-failure", busy: "connect-failure", unprocessed: "refused-stream" };

type AnyBackend = Backend<unknown, EndpointPool<unknown>>;
type PoolOf<B extends AnyBackend> = NonNullable<ReturnType<B["poolFor"]>>;
/** An attempt's endpoint and its pool: the Attempts itself, once next() has set both (no object per attempt). */
export interface Picked<B extends AnyBackend> {
  readonly endpoint: Endpoint;
  readonly pool: PoolOf<B>;
}

/**
 * The attempts of one request, call or tunnel at its backend: which endpoint is tried next, when
 * a failed attempt may be retried, the endpoint's health and outstanding count, and the hand-over
 * from a backend a reload retired to its successor. HTTP, gRPC and CONNECT drive it the same way:
 * `next()`, then on a failure `retry(failure, resendable)` (the backend never processed it) or
 * `retryAnswered(reason, resendable)` (it did: the route's retry policy decides) and `next()`
 * again while it says yes. A protocol's per-request object extends it, so a request allocates
 * nothing more for it.
 */
export class Attempts<B extends AnyBackend> {
  /** Where the request goes: the routed backend, or the successor that replaced it. */
  backend!: B;
  /** The endpoint of the current (or last) attempt. */
  endpoint: Endpoint | undefined = undefined;
  /** performance.now() ms after which nothing is retried (gRPC's grpc-timeout); undefined: none. */
  deadlineAt: number | undefined = undefined;
  /** The route's retry policy; undefined: only what the backend never processed is sent again. */
  retryPolicy: RetryPolicy | undefined = undefined;
  /** The current attempt is counted in its endpoint's outstanding requests. */
  private holding = false;
  /** The backend whose retriesInFlight counts the current attempt: set while a policy retry holds an endpoint. */
  private retryHeldOn: AnyBackend | undefined = undefined;
  private failedOn: Set<Endpoint> | undefined = undefined;
  private replays = 0;
  /** Attempts the retry policy made again (answered, reset, timed out, or past the limits of `retry`). */
  private policyRetries = 0;

  /** Resolves once the backend (after any reload's hand-over) has its first endpoints; undefined when it has. */
  get pendingResolution(): Promise<void> | undefined {
    return this.toLive().pendingResolution;
  }

  /** The current (or last) attempt's pool, set by next(). */
  pool: PoolOf<B> | undefined = undefined;

  /**
   * Picks the endpoint for the next attempt and counts it outstanding; returns this, its endpoint
   * and pool set (read them before the next attempt). Throws a KedgeError when none is left.
   */
  next(): Picked<B> {
    this.release();
    const live = this.toLive();
    const skip = this.failedOn;
    let picked;
    if (skip === undefined || this.policyRetries === 0) picked = live.pick(skip);
    else {
      // A policy retry prefers an endpoint not failed on yet, by the rule of a refused dial (the
      // tier's others, then the next tier's once it tried them all), and goes back to one when none is left.
      try {
        picked = live.pick(skip);
      } catch {
        picked = live.pick();
      }
    }
    this.hold(picked);
    this.pool = live.poolFor(picked) as PoolOf<B>;
    return this as Picked<B>;
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

  /**
   * How the backend's answer to the attempt went, for outlier detection: `failed` for an HTTP
   * status of 500 or more, gRPC UNAVAILABLE, or a reset or timeout after the request was sent
   * (any of those in a row eject the endpoint); anything else ends the endpoint's run of failures.
   */
  answered(failed: boolean): void {
    const endpoint = this.endpoint;
    if (endpoint === undefined) return;
    if (!failed) endpoint.consecutiveFailures = 0;
    else this.backend.failedAt(endpoint);
  }

  /** The attempt is over: its endpoint no longer counts it. Idempotent. */
  release(): void {
    if (!this.holding) return;
    this.holding = false;
    this.endpoint!.outstanding--;
    const retried = this.retryHeldOn;
    if (retried !== undefined) {
      retried.retriesInFlight--;
      this.retryHeldOn = undefined;
    }
  }

  /**
   * The current attempt failed before the backend processed the request: true when another may be
   * made (call `next()`, or `sameEndpoint()` for an HTTP/1.1 replay). `resendable`: kedge still
   * holds all the request the backend would need again, and the client is still there. A dial
   * failure backs its endpoint off and moves on to another, up to maxEndpointAttempts distinct
   * ones per tier, then to the next tier; an unprocessed request is replayed up to maxReplays
   * times; past those limits, a route's retry policy that lists the failure may go on. Nothing is
   * retried past the caller's deadline.
   */
  retry(failure: AttemptFailure, resendable: boolean): boolean {
    const endpoint = this.endpoint!;
    this.release();
    let again: boolean;
    if (failure === "unprocessed") {
      again = resendable && this.replays < maxReplays;
      if (again) this.replays++;
    } else {
      if (failure === "dial") {
        endpoint.markFailed(this.backend.failureBackoffMs, defaults.maxFailureBackoffMs);
        this.backend.failedAt(endpoint);
      }
      const failedOn = (this.failedOn ??= new Set());
      failedOn.add(endpoint);
      // Each tier gets its own tries: a whole cluster's endpoints refusing at once still leaves its failover tiers.
      again = resendable && this.backend.hasUntried(failedOn);
    }
    if (this.pastDeadline()) return false;
    const reason = failureReason[failure];
    if (again) {
      this.retryCounted(reason, true);
      return true;
    }
    if (!this.policyAllows(reason, resendable)) return false;
    this.retried(reason, endpoint);
    return true;
  }

  /**
   * The backend saw the request and the attempt failed for `reason` (a 502/503/504 answer, a
   * reset before any answer, no response head within per_try_timeout): true when the route's
   * retry policy sends it again now (the attempt is released; call `next()`). `resendable`: the
   * request may be sent again unchanged (HTTP: an idempotent method, its body held) and nothing of
   * the answer reached the client. A refused retry leaves the attempt as it was, to pass its
   * answer on. The policy's attempts, its `on` list, the caller's deadline and the backend's retry
   * budget all have to agree.
   */
  retryAnswered(reason: RetryReason, resendable: boolean): boolean {
    const endpoint = this.endpoint!;
    if (!this.policyAllows(reason, resendable)) return false;
    this.release();
    this.retried(reason, endpoint);
    return true;
  }

  /** Told of each retry made, and of each one the backend's retry budget refused (`made` false): for metrics and the access line. */
  protected retryCounted(_reason: RetryReason, _made: boolean): void {}

  private policyAllows(reason: RetryReason, resendable: boolean): boolean {
    const policy = this.retryPolicy;
    if (policy === undefined || !resendable || !retriesOn(policy, reason) || this.policyRetries + 1 >= policy.attempts || this.pastDeadline()) return false;
    const backend = this.backend;
    // This request is in flight whether or not its failed attempt still holds an endpoint, and a
    // retry that is retried again gives its own place in the budget back first.
    const retries = backend.retriesInFlight - (this.retryHeldOn === backend ? 1 : 0);
    if (withinBudget(policy, retries, backend.requestsInFlight + (this.holding ? 0 : 1))) return true;
    this.retryCounted(reason, false);
    return false;
  }

  /** A policy retry is decided: the next attempt counts against the budget and avoids `endpoint` when it can. */
  private retried(reason: RetryReason, endpoint: Endpoint): void {
    (this.failedOn ??= new Set()).add(endpoint);
    this.policyRetries++;
    this.retryCounted(reason, true);
  }

  /** The caller's deadline has passed. */
  pastDeadline(): boolean {
    return this.deadlineAt !== undefined && performance.now() >= this.deadlineAt;
  }

  private hold(endpoint: Endpoint): void {
    this.endpoint = endpoint;
    this.holding = true;
    endpoint.outstanding++;
    if (this.policyRetries > 0) {
      const backend = this.backend;
      backend.retriesInFlight++;
      this.retryHeldOn = backend;
    }
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
