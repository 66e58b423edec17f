/** kedge Go's error types; winch and users key on them via x-kedge-error-type. */
export type KedgeErrorType =
  | "bad-request"
  | "no-route"
  | "no-backend"
  | "no-resolution-available"
  | "no-connection-to-all-resolved-addresses"
  | "backend-transport-closed"
  | "backend-timeout"
  | "adhoc-port-not-allowed"
  | "shutting-down"
  | "unauthorized"
  | "auth-unavailable"
  | "forbidden"
  | "internal"
  | "overloaded"
  | "loop-detected"
  | "rate-limited"
  // winch's own refusals, in x-winch-error-type
  | "unknown-host"
  | "ip-literal"
  | "auth-source";

/** An error a client sees: made in one place, rendered in one place (headers or grpc-status). */
export class KedgeError extends Error {
  constructor(
    readonly type: KedgeErrorType,
    readonly status: number,
    message: string,
    /** Whole seconds a refused caller should wait before it tries again (Retry-After; gRPC grpc-retry-pushback-ms). */
    readonly retryAfter?: number,
  ) {
    super(message);
    this.name = "KedgeError";
  }
}

export const noRoute = (what: string) => new KedgeError("no-route", 502, `unknown route to service: ${what}`);

/** Bad or missing credentials: 401 (gRPC UNAUTHENTICATED). Messages are kedge Go's. */
export const unauthorized = (message: string) => new KedgeError("unauthorized", 401, message);
/**
 * The issuer's keys cannot be had (discovery or JWKS unreachable, timing out, failing): 503 (gRPC
 * UNAVAILABLE), since the caller's token may be fine and a retry later may pass.
 */
export const authUnavailable = (message: string) => new KedgeError("auth-unavailable", 503, message);
/** A valid identity without the permission a route needs: 403 (gRPC PERMISSION_DENIED). */
export const forbidden = (message: string) => new KedgeError("forbidden", 403, message);

/** Over a rate limit: 429 with Retry-After (gRPC RESOURCE_EXHAUSTED). */
export const rateLimited = (message: string, retryAfter: number) => new KedgeError("rate-limited", 429, message, retryAfter);

/** Anything thrown on the request path, as the error a client may see (never an internal message). */
export function asKedgeError(e: unknown): KedgeError {
  return e instanceof KedgeError ? e : new KedgeError("internal", 500, "internal error");
}

/**
 * kedge cannot start, for a reason outside it (a port another process holds, a worker that could
 * not bind): the message says all an operator needs, so it is printed alone, without a stack.
 */
export class StartError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "StartError";
  }
}
