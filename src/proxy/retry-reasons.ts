import type { AttemptFailure } from "../backend/attempts.js";
import type { RetryReason } from "../backend/retry-policy.js";
import type { UpstreamError } from "../upstream/h1-connection.js";

// What a failed attempt means to the attempt policy (backend/attempts.ts), in each protocol's
// terms: the AttemptFailure of one the backend never processed, the RetryReason of one it did.

/** What an HTTP/1.1 backend failure means to the attempt policy; undefined: the request may have been processed. */
export function attemptFailure(err: UpstreamError): AttemptFailure | undefined {
  switch (err.failure) {
    case "connect":
    case "connect-timeout":
      return "dial";
    case "pool-timeout":
      return "busy";
    case "stale":
      return "unprocessed";
    default:
      return undefined;
  }
}

/** The retry reason of an HTTP/1.1 attempt the backend saw that failed before its answer began: a reset or per_try_timeout. */
export function httpFailureReason(err: UpstreamError): RetryReason | undefined {
  return err.failure === "closed" ? "reset" : err.failure === "response-timeout" ? "timeout" : undefined;
}

/** The retry reason of a 502, 503 or 504 answer, by status - 502. */
const statusReasons: readonly RetryReason[] = ["502", "503", "504"];

/** The retry reason of an HTTP answer's status; undefined for one no policy retries. */
export function httpAnswerReason(status: number): RetryReason | undefined {
  return status >= 502 && status <= 504 ? statusReasons[status - 502] : undefined;
}

/**
 * The retry reason of a gRPC answer that carries no message: grpc-status UNAVAILABLE is gRPC's 503
 * (doc/http-grpc-status-mapping.md); without a grpc-status, the HTTP status of what answered
 * (a proxy in front of the backend).
 */
export function grpcAnswerReason(status: string | string[] | undefined, grpcStatus: string | string[] | undefined): RetryReason | undefined {
  if (grpcStatus !== undefined) return grpcStatus === "14" ? "503" : undefined;
  return status === "502" || status === "503" || status === "504" ? status : undefined;
}
