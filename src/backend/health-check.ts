import type { HealthCheck } from "../gen/kedge/config/v1/health_pb.js";
import { durationMs } from "../config/duration.js";
import { log } from "../observe/log.js";
import type { Endpoint } from "./endpoint.js";

/** What unset health_check fields mean. */
const checkDefaults = {
  intervalMs: 5_000,
  timeoutMs: 1_000,
  healthyThreshold: 2,
  unhealthyThreshold: 3,
};

/** One check of one endpoint over its pool or session: undefined when it passed, else why it failed. Settles within `timeoutMs`. */
export type Probe<Pool> = (endpoint: Endpoint, pool: Pool, timeoutMs: number) => Promise<string | undefined>;

/** What a checker reads of its backend. */
export interface Checked<Pool> {
  readonly name: string;
  /** The endpoints to probe now (every tier's but a kedge tier's without a Host to send it). */
  readonly checkedEndpoints: readonly Endpoint[];
  poolFor(endpoint: Endpoint): Pool | undefined;
}

let checksRun = true;

/**
 * This process serves no data (a supervisor of workers): its backends answer only the admin views,
 * which show the workers' own, so it does not check endpoints on top of every worker.
 */
export function runNoHealthChecks(): void {
  checksRun = false;
}

/**
 * Active health checks of one backend: one timer, and at each tick a probe of every endpoint not
 * still being checked. unhealthy_threshold failures in a row mark an endpoint down
 * (`failingChecks`), healthy_threshold passes bring it back; endpoints start up. The runs are
 * counted on the endpoints, as outlier detection's are, so an endpoint re-resolution drops takes
 * its count with it. Runs from the backend's start() to its close(), so a reload that replaces the
 * backend stops its checks.
 */
export class HealthChecker<Pool> {
  private readonly intervalMs: number;
  private readonly timeoutMs: number;
  private readonly healthyThreshold: number;
  private readonly unhealthyThreshold: number;
  private timer: Timer | undefined;
  private closed = false;

  constructor(
    private readonly backend: Checked<Pool>,
    config: HealthCheck,
    private readonly probe: Probe<Pool>,
  ) {
    this.intervalMs = durationMs(config.interval, checkDefaults.intervalMs);
    this.timeoutMs = durationMs(config.timeout, checkDefaults.timeoutMs);
    this.healthyThreshold = config.healthyThreshold ?? checkDefaults.healthyThreshold;
    this.unhealthyThreshold = config.unhealthyThreshold ?? checkDefaults.unhealthyThreshold;
  }

  start(): void {
    if (!checksRun || this.closed) return;
    this.timer = setInterval(() => this.round(), this.intervalMs);
    this.timer.unref?.();
    // The first round once the resolver's first answer is in (a static one answers in start()).
    setTimeout(() => this.round(), 0).unref?.();
  }

  close(): void {
    this.closed = true;
    clearInterval(this.timer);
  }

  private round(): void {
    if (this.closed) return;
    for (const endpoint of this.backend.checkedEndpoints) {
      if (endpoint.checking) continue;
      const pool = this.backend.poolFor(endpoint);
      if (pool === undefined) continue;
      endpoint.checking = true;
      const checked = (problem: string | undefined) => this.checked(endpoint, problem);
      this.probe(endpoint, pool, this.timeoutMs).then(checked, (e: Error) => checked(e.message));
    }
  }

  private checked(endpoint: Endpoint, problem: string | undefined): void {
    endpoint.checking = false;
    // Re-resolution dropped the endpoint while it was checked: its verdict no longer matters.
    if (this.closed || this.backend.poolFor(endpoint) === undefined) return;
    const fields = { backend: this.backend.name, endpoint: endpoint.address };
    if (problem === undefined) {
      endpoint.checkFailures = 0;
      // It was reached: a failed dial's backoff ends here, so traffic comes back (to its tier too)
      // once the checks say so, not at the backoff's end.
      endpoint.markHealthy();
      if (++endpoint.checkPasses >= this.healthyThreshold && endpoint.failingChecks) {
        endpoint.failingChecks = false;
        log.info("endpoint passes its health checks again", fields);
      }
      return;
    }
    endpoint.checkPasses = 0;
    if (++endpoint.checkFailures >= this.unhealthyThreshold && !endpoint.failingChecks) {
      endpoint.failingChecks = true;
      log.warn("endpoint fails its health checks", { ...fields, error: problem, failures: endpoint.checkFailures });
    }
  }
}
