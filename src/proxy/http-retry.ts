import type { Attempts } from "../backend/attempts.js";
import type { HttpBackend } from "../backend/http-backend.js";
import type { RetryReason } from "../backend/retry-policy.js";
import { KedgeError } from "../errors.js";
import type { UpstreamError } from "../upstream/h1-connection.js";
import type { PoolClient } from "../upstream/h1-pool.js";
import { pauseBody, type ForwardedBody } from "./forwarded-body.js";
import { attemptFailure, httpFailureReason } from "./retry-reasons.js";

/** What an HTTP attempt's failure reads and drives of its exchange (HttpExchange). */
export interface RetryingExchange extends Attempts<HttpBackend>, ForwardedBody, PoolClient {
  readonly recorded: boolean;
  readonly backendName: string;
  /** The status of the answer passed on; 0 before one. */
  readonly status: number;
  /** The method is idempotent and the route has a retry policy: an answer may be retried. */
  readonly idempotent: boolean;
  /** Makes the next attempt. */
  attempt(): void;
  /** Answers the client with this error, once. */
  fail(err: KedgeError): void;
}

/**
 * The attempt failed at the backend: made again (another endpoint, a fresh connection for a
 * request the backend gave back unread, the route's retry policy) or answered with the error.
 */
export function upstreamFailed(exchange: RetryingExchange, err: UpstreamError): void {
  exchange.conn = undefined;
  if (exchange.recorded) return;
  const failure = attemptFailure(err);
  // Reset, timed out or garbled after the request went (a 5xx head was counted already).
  if (failure === undefined && exchange.status < 500) exchange.answered(true);
  if (failure !== undefined) {
    if (exchange.retry(failure, !exchange.bodyStarted || exchange.kept !== undefined)) {
      pauseBody(exchange);
      if (failure !== "unprocessed") return exchange.attempt();
      const pool = exchange.sameEndpoint();
      if (pool) return pool.dial(exchange);
    } else if (failure !== "unprocessed") {
      return exchange.fail(new KedgeError("no-connection-to-all-resolved-addresses", 502, `backend ${exchange.backendName}: ${err.message}`));
    }
  } else if (exchange.retryPolicy !== undefined && !err.responseStarted) {
    const reason = httpFailureReason(err);
    if (reason !== undefined && retryAnswer(exchange, reason)) return;
  }
  if (err.failure === "response-timeout") return exchange.fail(new KedgeError("backend-timeout", 504, `backend ${exchange.backendName}: ${err.message}`));
  exchange.fail(new KedgeError("backend-transport-closed", 502, `backend ${exchange.backendName}: ${err.message}`));
}

/** The backend saw the request and this attempt failed: true when the route's policy sent it again. */
export function retryAnswer(exchange: RetryingExchange, reason: RetryReason): boolean {
  if (!exchange.retryAnswered(reason, exchange.idempotent && (exchange.bodyLength === 0 || exchange.kept !== undefined))) return false;
  // What is left of a failed answer is not worth reading: its connection goes.
  exchange.conn?.abort();
  exchange.conn = undefined;
  pauseBody(exchange);
  exchange.attempt();
  return true;
}
