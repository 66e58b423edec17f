import type { ProxyMetrics } from "../observe/metrics.js";
import type { Observation, ObservedRequest } from "../observe/observer.js";
import type { ConnectRequest } from "../proxy/connect.js";
import { requestIdFrom } from "../proxy/request.js";
import { recordError, recordFinished, recordStarted, recordTunnelClosed, type RecordedHttp } from "../proxy/record.js";
import type { TunnelEnd } from "../proxy/tunnel.js";
import { winchRequestId } from "./context.js";

/**
 * A CONNECT to winch as the one record path sees it, as kedge's own CONNECT: counted when the
 * tunnel opens or is refused; a spliced tunnel's access line waits for its close, with its bytes.
 */
export class WinchTunnelRecord implements RecordedHttp {
  readonly protocol = "http";
  recorded = false;
  readonly startedAt = performance.now();
  readonly requestId: string;
  readonly request: ObservedRequest;
  readonly path = "";
  readonly obs: Observation | undefined;
  readonly attempts = undefined;
  /** The kedge's host:port, "direct" or "none", as winch's request metrics name it. */
  backendName = "none";
  route = "none";

  constructor(
    private readonly metrics: ProxyMetrics,
    req: ConnectRequest,
  ) {
    this.requestId = requestIdFrom(req.headers, winchRequestId);
    this.request = { protocol: "http/1.1", method: "CONNECT", authority: req.target, remoteAddress: req.remoteAddress, socket: req.socket };
    recordStarted(metrics, this);
    this.obs = metrics.observer.start(req.headers);
  }

  /** Its bytes now go to `endpoint` (host:port). */
  sentTo(endpoint: string): void {
    if (this.obs) this.obs.sentUpstream(endpoint);
  }

  /** Answered with `status`; `spliced`: the access line waits for `closed`. */
  answered(status: number, spliced: boolean): void {
    if (this.obs) this.obs.firstByteAt = performance.now();
    recordFinished(this.metrics, this, status, spliced);
  }

  /** winch refused it with an error of `type`. */
  refused(type: string, status: number): void {
    recordError(this.metrics, this, type);
    recordFinished(this.metrics, this, status);
  }

  readonly closed = (end: TunnelEnd): void => recordTunnelClosed(this.metrics, this, this.obs, 200, end);
}
