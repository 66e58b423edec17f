import type { MetricFamily } from "./metric-families.js";
import { mergeFamilies, type ProcessFamilies } from "./metrics-merge.js";

/** A worker's families from one scrape, and which process of that worker slot answered. */
export interface WorkerScrape {
  readonly workerId: number;
  /** The process (pid and start time): a restarted worker keeps its id but not this. */
  readonly instance: string;
  readonly families: readonly MetricFamily[];
}

/** What only ever grows: counters and histograms whose processes' series are summed. */
const cumulative = (families: readonly MetricFamily[]): MetricFamily[] =>
  families.filter((f) => (f.type === "counter" || f.type === "histogram") && f.merge === "sum");

/**
 * Keeps the merged counters of a supervisor's workers from going down. A sum over the workers that
 * answered this scrape drops whenever one does not (busy past the timeout, or dead and restarting)
 * and comes back with the next, and Prometheus reads each drop as a counter reset: rate() and
 * increase() then count the whole total again. So a worker that did not answer adds the counters
 * it last reported, and once its slot answers from a new process (a restart, whose counters start
 * at zero), the old process's last counters move into a retired part that stays in every sum.
 * What a process counted after its last answered scrape and before it died is lost: the total
 * may lag, it does not go back. Gauges come only from the processes that answered.
 */
export class WorkerCounters {
  private readonly last = new Map<number, { instance: string; families: MetricFamily[] }>();
  private retired: MetricFamily[] = [];

  /** The sources to merge for this scrape: the answers, the last counters of the silent, the retired. */
  sources(answered: readonly WorkerScrape[]): ProcessFamilies[] {
    const out: ProcessFamilies[] = [];
    const fresh = new Set<number>();
    for (const { workerId, instance, families } of answered) {
      const before = this.last.get(workerId);
      if (before !== undefined && before.instance !== instance) this.retire(before.families);
      this.last.set(workerId, { instance, families: cumulative(families) });
      out.push({ worker: String(workerId), families });
      fresh.add(workerId);
    }
    for (const [workerId, kept] of this.last) if (!fresh.has(workerId)) out.push({ worker: String(workerId), families: kept.families });
    if (this.retired.length > 0) out.push({ worker: "retired", families: this.retired });
    return out;
  }

  private retire(families: MetricFamily[]): void {
    this.retired = mergeFamilies([
      { worker: "retired", families: this.retired },
      { worker: "retired", families },
    ]);
  }
}
