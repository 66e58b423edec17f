import type { FSWatcher } from "node:fs";
import tls from "node:tls";
import type { Config } from "../../gen/kedge/config/v1/config_pb.js";
import { durationMs } from "../../config/duration.js";
import { ConfigError } from "../../config/error.js";
import { loadConfig, type ConfigSources } from "../../config/load.js";
import { configSecrets } from "../../config/secrets.js";
import { watchConfigFiles, watchedFiles } from "../../config/watch.js";
import { defaultBindAddress, unguardedListeners } from "../../config/validate-exposure.js";
import { startDiscoveredRouting } from "../../k8s/discovery.js";
import { k8sEndpoints } from "../../k8s/endpoint-sets.js";
import { runNoHealthChecks } from "../../backend/health-check.js";
import { startDemoBackend } from "../../demo/backend.js";
import { log, setLogLevel } from "../../observe/log.js";
import { countBackendChanges, createMetrics } from "../../observe/metrics.js";
import { Counter, Gauge } from "../../observe/prometheus.js";
import { buildRuntime, type Runtime } from "../../runtime.js";
import { adminApp } from "../admin.js";
import { startAdminListener } from "../admin-listener.js";
import { defaultGracefulShutdownMs } from "../drain.js";
import { tlsFiles } from "../tls-files.js";
import { claimDataPorts } from "../port-claim.js";
import { nextRuntime, rejected, warnAboutListenerChanges } from "../next-runtime.js";
import type { ServeMessage, WorkerStats } from "./worker.js";
import { reopenLogsMessage } from "./channel.js";
import { supervisorAdminState } from "./admin-views.js";
import { WorkerPool } from "./supervisor.js";

export interface SupervisedKedge {
  readonly ports: Record<string, number>;
  readonly pool: WorkerPool;
  runtime(): Runtime;
  /** Loads and validates the config once; valid, every worker swaps to it; invalid, one error line and the workers keep theirs. */
  reload(): Promise<ConfigError | undefined>;
  /** Drains every worker (SIGTERM), then closes the admin port. */
  shutdown(): Promise<void>;
  /** SIGUSR1: the audit log's file is opened again, here and in every worker; settles once they all have. */
  reopenLogs(): Promise<void>;
}

/** Workers get the grace period, then this long to exit, before they are killed. */
const exitMarginMs = 3_000;
const workerStartTimeoutMs = 30_000;

/** This binary again with the same arguments: a compiled kedge is its own execPath; under `bun` the script follows. */
function workerCommand(): string[] {
  const compiled = Bun.main.startsWith("/$bunfs/");
  return [process.execPath, ...(compiled ? [] : [Bun.main]), ...process.argv.slice(2)];
}

/**
 * kedge with more than one worker: this process loads and validates the config, owns the admin
 * port, the demo backend and the file watches, and runs `count` worker processes that serve the
 * data ports. Its runtime (backends, access control) answers the admin surfaces; it serves no data.
 * It also holds the Kubernetes API's watches, once for all workers: its k8s backends' endpoint
 * sets go to every worker (a snapshot as each one starts, then every change), and discovery's
 * routes reach the workers inside the config they are sent, validated here like any reload.
 */
export async function startSupervisor(sources: ConfigSources, first: Config, count: number): Promise<SupervisedKedge> {
  setLogLevel(first.server?.logLevel || "info");
  const server = first.server!;
  const metrics = createMetrics();
  const restarts = metrics.registry.add(new Counter("kedge_worker_restarts_total", "Worker processes restarted after they died.", []));
  let restartCount = 0;
  let reload: () => Promise<ConfigError | undefined> = async () => undefined;
  const discovery = await startDiscoveredRouting(first, () => void reload());
  // Each worker checks its backends' endpoints itself; the admin views show theirs.
  runNoHealthChecks();
  let current: Runtime;
  try {
    current = buildRuntime(discovery.compose(first), 1, configSecrets);
  } catch (e) {
    discovery.stop();
    throw e;
  }
  countBackendChanges(metrics, undefined, current);
  // The admin port's decisions are this process's to write; the workers write those of the data ports.
  metrics.audit.configure(current.config.observability?.auditLog);
  metrics.configVersion.collect = () => [[[], current.version]];
  let draining = false;
  const ports: Record<string, number> = {};
  const demo = server.demoBackendPort !== undefined ? startDemoBackend(server.demoBackendPort) : undefined;
  if (demo) ports.demo = demo.port;

  let dataPorts: Record<string, number> | undefined;
  const serveMessage = (type: string, runtime: Runtime): ServeMessage => ({
    type,
    config: runtime.config,
    secrets: configSecrets(runtime.config),
    version: runtime.version,
    ports: dataPorts,
  });
  const pool = new WorkerPool({
    count,
    command: workerCommand(),
    env: process.env,
    start: async (worker, workers) => {
      // Before it serves, so its k8s backends have their endpoints from the first request.
      await workers.ask(worker.id, k8sEndpoints.snapshot(), workerStartTimeoutMs);
      const sent = current;
      const reply = await workers.ask<{ ports: Record<string, number> }>(worker.id, serveMessage("start", sent), workerStartTimeoutMs);
      dataPorts ??= reply.ports;
      // A reload while this worker was starting did not reach it (it was not serving yet).
      if (current !== sent) await workers.ask(worker.id, serveMessage("reload", current));
    },
    onRestart: () => {
      restartCount++;
      restarts.inc([]);
    },
  });
  k8sEndpoints.publishTo((message) => pool.broadcast(message));
  // Changes while a worker was starting were not broadcast to it (it was not serving yet).
  pool.onWorkerStart((worker) => void pool.ask(worker.id, k8sEndpoints.snapshot()).catch(() => undefined));
  try {
    // Workers bind with SO_REUSEPORT: only a port no other process holds may be shared by them.
    claimDataPorts(server);
    await pool.startAll();
  } catch (e) {
    await pool.stop(exitMarginMs);
    discovery.stop();
    demo?.stop();
    current.retire(undefined);
    throw e;
  }
  Object.assign(ports, dataPorts);
  const serving = metrics.registry.add(new Gauge("kedge_workers", "Worker processes serving the data ports now.", []));
  serving.collect = () => [[[], pool.workers().length]];
  const unguarded = unguardedListeners(first);
  if (unguarded.length > 0) {
    log.warn("data listeners are reachable beyond loopback without authentication (auth.allow_unauthenticated)", { listeners: unguarded.map((l) => l.address) });
  }

  const adminState = supervisorAdminState(pool, metrics.registry, {
    runtime: () => current,
    draining: () => draining,
    // Readiness: with every worker dead and restarting, nothing accepts on the data ports.
    notServing: () => (pool.workers().length === 0 ? "no worker serving" : undefined),
    audit: metrics.audit,
  });
  const app = adminApp(adminState);
  app.get("/debug/workers", async (c) => {
    const stats = await pool.askAll<WorkerStats>({ type: "stats" });
    const byId = new Map(stats.map((s) => [s.workerId, s]));
    return c.json({
      supervisor: { pid: process.pid, workerRestarts: restartCount },
      workers: pool.workers().map((w) => ({ ...w, ...byId.get(w.id)?.reply, error: byId.get(w.id)?.error })),
    });
  });
  const adminHost = server.bindAddress || defaultBindAddress;
  const admin = server.adminPort !== undefined ? await startAdminListener(app, adminState, adminHost, server.adminPort) : undefined;
  if (admin) ports.admin = admin.port;

  let reloading: Promise<ConfigError | undefined> = Promise.resolve(undefined);
  const reloadOnce = async (): Promise<ConfigError | undefined> => {
    let config: Config;
    try {
      config = discovery.compose(loadConfig(sources));
    } catch (e) {
      return rejected(e, current, metrics);
    }
    warnAboutListenerChanges(current.config, config);
    const next = nextRuntime(config, current, current.version + 1, metrics, (s) => void tls.createSecureContext(tlsFiles(s)));
    if (next instanceof ConfigError) return next;
    const previous = current;
    current = next;
    previous.retire(next);
    countBackendChanges(metrics, previous, next);
    metrics.audit.configure(next.config.observability?.auditLog);
    const replies = await pool.askAll<{ problems?: string[] }>(serveMessage("reload", next));
    const refused = replies.filter((r) => r.error !== undefined || r.reply?.problems);
    if (refused.length > 0) {
      // This process checked the config, its files included; a worker that refused it read
      // something else (a certificate rewritten between the two reads). Every worker must serve
      // one config: a fresh process in its place starts on this one.
      log.error("workers refused the new config: replacing them", { version: next.version, workers: refused.map((r) => ({ worker: r.workerId, problems: r.error ?? r.reply?.problems })) });
      for (const r of refused) pool.replace(r.workerId);
    }
    metrics.reloads.inc(["success"]);
    log.info("config reloaded", { version: next.version, workers: replies.length - refused.length });
    return undefined;
  };
  reload = () => (reloading = reloading.then(reloadOnce));

  const watchers: FSWatcher[] = watchConfigFiles(watchedFiles(sources, first), () => void reload());

  return {
    ports,
    pool,
    runtime: () => current,
    reload,
    async shutdown() {
      if (draining) return;
      draining = true;
      for (const w of watchers) w.close();
      discovery.stop();
      await pool.stop(durationMs(server.gracefulShutdown, defaultGracefulShutdownMs) + exitMarginMs);
      admin?.close();
      demo?.stop();
      current.retire(undefined);
      metrics.audit.close();
    },
    async reopenLogs() {
      if (!metrics.audit.reopen()) return;
      // A message, not the signal: a worker still starting has no handler yet, and SIGUSR1's
      // default action ends a process. One that starts later opens the file at its path anyway.
      const replies = await pool.askAll({ type: reopenLogsMessage });
      const failed = replies.filter((r) => r.error !== undefined).map((r) => ({ worker: r.workerId, error: r.error }));
      if (failed.length > 0) log.warn("workers did not reopen the audit log file", { workers: failed });
      log.info("audit log file reopened", { workers: replies.length - failed.length });
    },
  };
}
