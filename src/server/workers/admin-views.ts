import { renderFamilies, type MetricFamily } from "../../observe/metric-families.js";
import { mergeFamilies } from "../../observe/metrics-merge.js";
import { Counter, type Registry } from "../../observe/prometheus.js";
import { WorkerCounters } from "../../observe/worker-counters.js";
import type { Runtime } from "../../runtime.js";
import type { AdminState } from "../admin.js";
import { backendsView, mergeBackendsViews, type BackendsView } from "../backends-view.js";
import type { WorkerChannel } from "./channel.js";

/** The IPC messages the admin port's views travel in (type → what the worker answers). */
export const adminAsks = { metrics: "admin.metrics", backends: "admin.backends" } as const;

/** A worker's side: answers the supervisor's admin asks from its own registry and runtime. */
export function answerAdminAsks(worker: Pick<WorkerChannel, "handle">, registry: Registry, runtime: () => Runtime): void {
  worker.handle(adminAsks.metrics, (): MetricFamily[] => registry.families());
  worker.handle(adminAsks.backends, (): BackendsView => backendsView(runtime()));
}

/** The supervisor's side of the channel as the admin views use it (WorkerPool, workers/supervisor.ts). */
export interface WorkerAsker {
  /** Every serving worker's reply or error, in worker order; an ask not answered in `timeoutMs` is an error. */
  askAll<R>(message: { type: string }, timeoutMs: number): Promise<ReadonlyArray<{ workerId: number; instance: string; reply?: R; error?: string }>>;
}

/** A worker that has not answered by then is left out of the view (its counters as last reported stay in): a scrape never hangs on one worker. */
const askTimeoutMs = 1000;

/**
 * The admin views of a supervisor: /metrics merges every worker's registry with the supervisor's
 * own (restarts, reloads, its process metrics), /debug/backends and the AdminService merge their
 * backends; the config and routes are the supervisor's, the same as every worker's.
 */
export function supervisorAdminState(
  workers: WorkerAsker,
  registry: Registry,
  own: Pick<AdminState, "runtime" | "draining" | "notServing" | "audit">,
  timeoutMs = askTimeoutMs,
): AdminState {
  const scrapeErrors = registry.add(new Counter("kedge_worker_scrape_errors_total", "Admin views (metrics, backends) a worker did not answer within 1 s or answered with an error, by worker; the view was served without it.", ["worker"]));
  const askEach = async <T>(type: string): Promise<Array<{ workerId: number; instance: string; reply: T }>> => {
    const out: Array<{ workerId: number; instance: string; reply: T }> = [];
    for (const r of await workers.askAll<T>({ type }, timeoutMs)) {
      if (r.error === undefined) out.push({ workerId: r.workerId, instance: r.instance, reply: r.reply as T });
      else scrapeErrors.inc([String(r.workerId)]);
    }
    return out;
  };
  const counters = new WorkerCounters();
  return {
    ...own,
    async metricsText() {
      const replies = await askEach<MetricFamily[]>(adminAsks.metrics);
      const workerSources = counters.sources(replies.map(({ workerId, instance, reply }) => ({ workerId, instance, families: reply })));
      // The supervisor's families are read after the asks, so this scrape's errors are in them.
      const sources = [...workerSources, { worker: "supervisor", families: registry.families() }];
      return renderFamilies(mergeFamilies(sources));
    },
    async backends() {
      const replies = await askEach<BackendsView>(adminAsks.backends);
      return mergeBackendsViews(replies.map(({ workerId, reply }) => ({ worker: String(workerId), view: reply })));
    },
  };
}
