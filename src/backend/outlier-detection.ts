import type { OutlierDetection } from "../gen/kedge/config/v1/health_pb.js";
import { durationMs } from "../config/duration.js";
import { log } from "../observe/log.js";
import { backendHealthMetrics } from "../observe/metrics.js";
import type { Endpoint } from "./endpoint.js";

/** What unset outlier_detection fields mean (Envoy's defaults, but for the percentage: see health.proto). */
const outlierDefaults = {
  consecutiveFailures: 5,
  baseEjectionMs: 30_000,
  maxEjectionPercent: 50,
  maxEjectionMs: 300_000,
};

/**
 * Passive health of one backend's endpoints: an endpoint whose attempts fail `consecutive_failures`
 * times in a row is ejected for base_ejection_time, twice as long at each ejection that follows
 * (up to max_ejection_time), while no more than max_ejection_percent of the endpoints are out at
 * once. The counts live on the endpoints, so a success resets one on the request path without a
 * lookup; this object is reached only on a failure.
 */
export class OutlierDetector {
  private readonly threshold: number;
  private readonly baseMs: number;
  private readonly maxMs: number;
  private readonly maxPercent: number;
  /** The endpoints ejected now, each with the timer that brings it back. */
  private readonly ejected = new Map<Endpoint, Timer>();
  private closed = false;

  constructor(
    private readonly backendName: string,
    config: OutlierDetection,
    /** How many endpoints the backend has now: the base of max_ejection_percent. */
    private readonly endpointCount: () => number,
  ) {
    this.threshold = config.consecutiveFailures ?? outlierDefaults.consecutiveFailures;
    this.baseMs = durationMs(config.baseEjectionTime, outlierDefaults.baseEjectionMs);
    this.maxMs = Math.max(this.baseMs, durationMs(config.maxEjectionTime, outlierDefaults.maxEjectionMs));
    this.maxPercent = config.maxEjectionPercent ?? outlierDefaults.maxEjectionPercent;
  }

  /** An attempt at `endpoint` failed: a dial, a reset or timeout after sending, a 5xx, UNAVAILABLE. */
  failed(endpoint: Endpoint): void {
    // Sent there only because every endpoint is down (the balancer's fallback): nothing new.
    if (endpoint.ejected || this.closed) return;
    if (++endpoint.consecutiveFailures < this.threshold) return;
    // At the cap the count stays up, so the endpoint goes at its next failure once there is room.
    if ((this.ejected.size + 1) * 100 > this.endpointCount() * this.maxPercent) return;
    this.eject(endpoint);
  }

  private eject(endpoint: Endpoint): void {
    const now = performance.now();
    // Back in service for as long as the longest ejection: the doubling starts over.
    if (now - endpoint.returnedAt >= this.maxMs) endpoint.ejections = 0;
    const ms = Math.min(this.maxMs, this.baseMs * 2 ** Math.min(endpoint.ejections, 30));
    const failures = endpoint.consecutiveFailures;
    endpoint.ejections++;
    endpoint.ejectionMs = ms;
    endpoint.ejected = true;
    endpoint.consecutiveFailures = 0;
    const timer = setTimeout(() => this.restore(endpoint), ms);
    timer.unref?.();
    this.ejected.set(endpoint, timer);
    backendHealthMetrics.ejections.inc([this.backendName]);
    log.warn("endpoint ejected", { backend: this.backendName, endpoint: endpoint.address, consecutive_failures: failures, ejected_ms: ms, ejections: endpoint.ejections });
  }

  private restore(endpoint: Endpoint): void {
    if (!this.ejected.delete(endpoint)) return;
    endpoint.ejected = false;
    endpoint.returnedAt = performance.now();
    log.info("endpoint back after ejection", { backend: this.backendName, endpoint: endpoint.address });
  }

  /** Re-resolution dropped the endpoint: it no longer counts against the cap. */
  forget(endpoint: Endpoint): void {
    clearTimeout(this.ejected.get(endpoint));
    this.ejected.delete(endpoint);
  }

  close(): void {
    this.closed = true;
    for (const timer of this.ejected.values()) clearTimeout(timer);
    this.ejected.clear();
  }
}
