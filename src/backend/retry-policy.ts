import type { RetryPolicy as RetryPolicyConfig } from "../gen/kedge/config/v1/retry_pb.js";
import { durationMs } from "../config/duration.js";
import { conditionName, isRetryCondition, type RetryCondition } from "../config/retry-conditions.js";

/**
 * Why an attempt was made again (the `reason` of kedge_retries_total, the access line's
 * `retry_reasons`): a condition of `on`, or `timeout`, an attempt without a response head within
 * per_try_timeout (allowed by 504, the answer kedge itself would give).
 */
export type RetryReason = RetryCondition | "timeout";

const defaultOn: readonly RetryCondition[] = ["connect-failure", "refused-stream", "reset", "503"];
const defaultAttempts = 2;
const defaultBudgetPercent = 20;

/** Retries in flight a backend always allows, whatever its budget (Envoy's min_retry_concurrency). */
export const minRetryConcurrency = 3;

/**
 * Request bytes kedge keeps to send again: an HTTP body or a gRPC call's messages larger than this
 * are sent once and never retried after their first byte went.
 */
export const resendLimitBytes = 64 * 1024;

/** A route's compiled retry policy: read on the hot path only when an attempt fails. */
export interface RetryPolicy {
  /** Attempts in all, the first included. */
  readonly attempts: number;
  readonly on: ReadonlySet<RetryCondition>;
  /** Each attempt's bound on the wait for the response head, ms; 0: the backend's own timeouts only. */
  readonly perTryTimeoutMs: number;
  readonly budgetPercent: number;
}

/** RFC 9110 §9.2.2: a request with one of these methods means the same sent twice as once. */
const idempotentMethods = new Set(["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"]);

export function isIdempotent(method: string): boolean {
  return idempotentMethods.has(method);
}

/** The runtime form of a route's `retry`; undefined when the route has none. Expects a validated config. */
export function compileRetryPolicy(config: RetryPolicyConfig | undefined): RetryPolicy | undefined {
  if (!config) return undefined;
  const on = config.on.map(conditionName).filter(isRetryCondition);
  return {
    attempts: config.attempts ?? defaultAttempts,
    on: new Set(on.length > 0 ? on : defaultOn),
    perTryTimeoutMs: durationMs(config.perTryTimeout, 0),
    budgetPercent: config.budgetPercent ?? defaultBudgetPercent,
  };
}

/** The policy retries failures of this kind. */
export function retriesOn(policy: RetryPolicy, reason: RetryReason): boolean {
  return policy.on.has(reason === "timeout" ? "504" : reason);
}

/**
 * The budget: one more retry may start while the backend's retries in flight stay under
 * budgetPercent of its requests in flight (retries included), or under minRetryConcurrency.
 */
export function withinBudget(policy: RetryPolicy, retriesInFlight: number, requestsInFlight: number): boolean {
  return retriesInFlight < Math.max(minRetryConcurrency, (policy.budgetPercent * requestsInFlight) / 100);
}
