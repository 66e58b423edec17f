import type { IncomingHttpHeaders } from "node:http";
import type { ProxyMetrics } from "../observe/metrics.js";
import type { Observation, ObservedRequest } from "../observe/observer.js";
import type { TunnelEnd } from "./tunnel.js";
import type { RetryReason } from "../backend/retry-policy.js";

/** HTTP requests and CONNECT tunnels not yet answered, for graceful shutdown. */
export const inflight = { count: 0 };

/** What every request, call and tunnel tells the accounting, whatever its protocol. */
interface RecordedCommon {
  /** Set by the accounting: a request is counted once, whichever of its ends comes first. */
  recorded: boolean;
  /** performance.now() at its first byte. */
  readonly startedAt: number;
  /** Access log and trace record; undefined unless logging samples it or tracing is on. */
  readonly obs: Observation | undefined;
  /** The backend's label: its name, "adhoc" or "none". */
  readonly backendName: string;
  /** The matched route's label (its index, "adhoc" or "none"). */
  readonly route: string;
  /** Its attempts at the backend: the last attempt's endpoint stops counting it when it is recorded. */
  readonly attempts: { release(): void } | undefined;
}

/** An HTTP request (HTTP/1.1 or HTTP/2), a switched connection's 101 or a CONNECT tunnel. */
export interface RecordedHttp extends RecordedCommon {
  readonly protocol: "http";
  readonly requestId: string;
  readonly request: ObservedRequest;
  /** The normalized path ("" for a tunnel). */
  readonly path: string;
}

/** A gRPC call. */
export interface RecordedGrpc extends RecordedCommon {
  readonly protocol: "grpc";
  /** The call's :path, /service/method. */
  readonly method: string;
  readonly headers: IncomingHttpHeaders;
  readonly socket: { remoteAddress?: string } | null | undefined;
}

export type Recorded = RecordedHttp | RecordedGrpc;

/** An HTTP status or a grpc-status (a number, or "cancelled" when the client went away). */
export type Outcome = number | string | string[] | undefined;

const statusLabels: string[] = [];
/** A status code as a metric label, made once per code. */
function statusLabel(status: number): string {
  return (statusLabels[status] ??= String(status));
}

/** It began: counted in flight until recordFinished. */
export function recordStarted(metrics: ProxyMetrics, r: Recorded): void {
  if (r.protocol === "grpc") {
    metrics.inflight.grpc++;
    return;
  }
  inflight.count++;
  metrics.inflight.http++;
}

/** kedge answered it with an error of `type` (not the backend): counted by backend and type, named in its access line. */
export function recordError(metrics: ProxyMetrics, r: Recorded, type: string): void {
  metrics.proxyErrors.inc([r.backendName, type]);
  if (r.obs) r.obs.errorType = type;
}

/**
 * An attempt of it was sent again for `reason` (counted by backend and reason, named on its access
 * line), or (`made` false) its route's policy would have and the backend's retry budget refused.
 */
export function recordRetry(metrics: ProxyMetrics, r: Recorded, reason: RetryReason, made: boolean): void {
  if (!made) return metrics.retryBudgetExceeded.inc([r.backendName]);
  metrics.retries.inc([r.backendName, reason]);
  r.obs?.retried(reason);
}

/**
 * Label values for the finished-request metrics, filled per request: the metrics copy what they
 * keep (SeriesIndex), so one array serves every request instead of two made per request.
 */
const httpLabels = ["", "", ""];
const grpcLabels = ["", "", "", ""];

/**
 * It is answered, failed or abandoned: the one place a finished request, call or tunnel is
 * counted (requests and latency by backend, status and route), leaves the in-flight gauges and
 * its endpoint's outstanding count, and gets its access line and span. Only the first call
 * counts. A tunnel (CONNECT, a 101) is counted when it opens; `deferLog` leaves its access line
 * to recordTunnelClosed, once its bytes and lifetime are known.
 */
export function recordFinished(metrics: ProxyMetrics, r: Recorded, outcome: Outcome, deferLog = false): void {
  if (r.recorded) return;
  r.recorded = true;
  r.attempts?.release();
  const seconds = (performance.now() - r.startedAt) / 1000;
  if (r.protocol === "http") {
    inflight.count--;
    metrics.inflight.http--;
    const labels = httpLabels;
    labels[0] = r.backendName;
    labels[1] = statusLabel(outcome as number);
    labels[2] = r.route;
    metrics.httpRequests.inc(labels);
    metrics.httpLatency.observe(labels, seconds);
  } else {
    metrics.inflight.grpc--;
    const code = String(outcome ?? "unknown");
    // Unrouted calls name any path a client makes up: one label keeps the series bounded.
    const method = r.backendName === "none" ? "unrouted" : metrics.methodLabel(r.method);
    const labels = grpcLabels;
    labels[0] = r.backendName;
    labels[1] = method;
    labels[2] = code;
    labels[3] = r.route;
    metrics.grpcRequests.inc(labels);
    // The latency histogram orders its labels backend, code, method, route.
    labels[1] = code;
    labels[2] = method;
    metrics.grpcLatency.observe(labels, seconds);
  }
  if (r.obs && !deferLog) writeAccess(metrics, r, r.obs, outcome);
}

/** A tunnel recorded when it opened has closed: a close for silence is kedge's doing, an error of its backend. */
export function recordTunnelClosed(metrics: ProxyMetrics, r: RecordedHttp, obs: Observation | undefined, status: number, end: TunnelEnd): void {
  if (end === "idle") {
    metrics.proxyErrors.inc([r.backendName, "tunnel-idle-timeout"]);
    if (obs) obs.errorType = "tunnel-idle-timeout";
  }
  if (obs) writeAccess(metrics, r, obs, status);
}

function writeAccess(metrics: ProxyMetrics, r: Recorded, obs: Observation, outcome: Outcome): void {
  if (r.protocol === "http") metrics.observer.finishHttp(obs, r.requestId, r.request, r.path, outcome as number, r.route, r.backendName);
  else metrics.observer.finishGrpc(obs, r.headers, r.socket, r.method, String(outcome ?? "unknown"), r.route, r.backendName);
}
