import type { FSWatcher } from "node:fs";
import type { Config } from "../gen/kedge/config/v1/config_pb.js";
import { durationMs } from "../config/duration.js";
import { ConfigError } from "../config/error.js";
import type { ConfigSources } from "../config/load.js";
import { defaultBindAddress, unguardedListeners } from "../config/validate-exposure.js";
import { log, setLogLevel } from "../observe/log.js";
import { countBackendChanges, createMetrics, watchBackends } from "../observe/metrics.js";
import type { Registry } from "../observe/prometheus.js";
import { buildRuntime, type Runtime, type SecretsOf } from "../runtime.js";
import type { AdminState } from "./admin.js";
import { debugServedWithoutToken } from "./admin-auth.js";
import { backendsView } from "./backends-view.js";
import { defaultGracefulShutdownMs, drain } from "./drain.js";
import { startDataListeners, type DataListeners } from "./listeners.js";
import { nextRuntime, rejected, warnAboutListenerChanges } from "./next-runtime.js";

export interface KedgeServer {
  readonly ports: Record<string, number>;
  /** The live runtime (tests and the admin API read it). */
  runtime(): Runtime;
  /** Re-reads the config files; a bad config is rejected and the old one keeps serving. Returns the error, if any. */
  reload(): Promise<ConfigError | undefined>;
  /** Graceful: stop accepting, wait for in-flight requests up to the deadline, then close everything. */
  shutdown(): Promise<void>;
  /** Client connections admitted since start (a worker's share of the ports). */
  acceptedConnections(): number;
  /** This process's metrics (a worker hands them to the supervisor's /metrics). */
  readonly registry: Registry;
  /** SIGUSR1: the audit log's file is opened again by its path (a log rotator renamed it). */
  reopenLogs(): void;
}

export interface KedgeOptions {
  watchFiles?: boolean;
  /**
   * Set in a worker process (server/workers): the config comes from the supervisor, which loaded
   * and validated it; the supervisor owns the admin port and the demo backend; the data ports
   * are bound with SO_REUSEPORT beside the other workers'.
   */
  supervised?: SupervisedConfig;
}

export interface SupervisedConfig {
  /** The config the supervisor sent last, with the ports every worker binds. */
  config(): Config;
  /** Its version number, the supervisor's. */
  version(): number;
  /** The secret values the supervisor found in it (a worker loads no schema to find them by). */
  secrets(): readonly string[];
}

/** Starts kedge serve from config sources; throws ConfigError before binding anything when the config is bad. */
export async function startKedge(sources: ConfigSources, options: KedgeOptions = {}): Promise<KedgeServer> {
  const supervised = options.supervised;
  // A worker's supervisor loads, validates and composes the config: the loader, the schemas,
  // discovery and the watches are imported only by a kedge that reads its own files.
  const own = supervised ? undefined : await import("./self-loaded.js");
  const load = own ? () => own.loadConfig(sources) : supervised!.config;
  const secretsOf: SecretsOf = own ? own.configSecrets : supervised!.secrets;
  const base = load();
  setLogLevel(base.server?.logLevel || "info");
  const metrics = createMetrics();
  let reload: () => Promise<ConfigError | undefined> = async () => undefined;
  // A worker's config comes composed: the supervisor runs discovery for all of them.
  const discovery = own ? await own.startDiscoveredRouting(base, () => void reload()) : undefined;
  const compose = (config: Config) => (discovery ? discovery.compose(config) : config);
  let first: Config;
  let current: Runtime;
  try {
    first = compose(base);
    current = buildRuntime(first, supervised?.version() ?? 1, secretsOf);
  } catch (e) {
    discovery?.stop();
    throw e;
  }
  let draining = false;
  const server = first.server!;
  metrics.observer.configure(first.observability);
  metrics.audit.configure(first.observability?.auditLog);
  if (!supervised) countBackendChanges(metrics, undefined, current);
  watchBackends(metrics, () => current);
  metrics.configVersion.collect = () => [[[], current.version]];
  const ports: Record<string, number> = {};

  const demo = server.demoBackendPort !== undefined && own ? own.startDemoBackend(server.demoBackendPort) : undefined;
  if (demo) ports.demo = demo.port;
  const ctx = { runtime: () => current, metrics };
  let data: DataListeners;
  try {
    data = await startDataListeners(server, ctx, !!supervised);
  } catch (e) {
    demo?.stop();
    discovery?.stop();
    current.retire(undefined);
    throw e;
  }
  Object.assign(ports, data.ports);
  const unguarded = unguardedListeners(first);
  if (unguarded.length > 0 && !supervised) {
    log.warn("data listeners are reachable beyond loopback without authentication (auth.allow_unauthenticated)", { listeners: unguarded.map((l) => l.address) });
  }
  metrics.activeConnections.collect = () => [[[], data.openConnections()]];
  metrics.tlsHandshakeFailures.collect = () => data.tlsHandshakeFailures();
  metrics.refusedConnections.collect = () => {
    const refused = data.refusedConnections();
    return [
      [["max_connections"], refused.overLimit],
      [["header_timeout"], refused.headTimeout],
    ];
  };

  const adminHost = server.bindAddress || defaultBindAddress;
  const admin = server.adminPort !== undefined && !supervised
    ? await startAdmin(
        { runtime: () => current, draining: () => draining, metricsText: () => metrics.registry.render(), backends: () => backendsView(current), audit: metrics.audit },
        adminHost,
        server.adminPort,
      )
    : undefined;
  if (admin) ports.admin = admin.port;
  if (admin && !current.access.requiresToken && !debugServedWithoutToken(current, adminHost)) {
    log.warn("the admin port is reachable beyond loopback and no token authenticator is configured: /debug/* and the AdminService answer 403; /_healthz, /_version and /metrics stay open", {
      address: `${adminHost}:${admin.port}`,
      allowWith: "auth.oidc, auth.bearer_token, a loopback bind_address, or auth.allow_unauthenticated",
    });
  }

  let reloading: Promise<ConfigError | undefined> = Promise.resolve(undefined);
  const reloadOnce = async (): Promise<ConfigError | undefined> => {
    let config: Config;
    try {
      config = compose(load());
    } catch (e) {
      return rejected(e, current, metrics, !!supervised);
    }
    // A worker's supervisor has warned already, once for all of them.
    if (!supervised) warnAboutListenerChanges(current.config, config);
    const next = nextRuntime(config, current, supervised?.version() ?? current.version + 1, metrics, (s) => data.reloadTls(s), !!supervised);
    if (next instanceof ConfigError) return next;
    const previous = current;
    current = next; // one reference swap: new requests see the new runtime, in-flight ones keep theirs
    previous.retire(next);
    metrics.observer.configure(next.config.observability);
    metrics.audit.configure(next.config.observability?.auditLog);
    // Under a supervisor, config changes are counted and logged once, by the supervisor, not once per worker.
    if (!supervised) {
      countBackendChanges(metrics, previous, next);
      metrics.reloads.inc(["success"]);
    }
    (supervised ? log.debug : log.info)("config reloaded", { version: next.version });
    return undefined;
  };
  reload = () => (reloading = reloading.then(reloadOnce));

  const watchers: FSWatcher[] = [];
  if (options.watchFiles && own) watchers.push(...own.watchConfigFiles(own.watchedFiles(sources, first), () => void reload()));

  return {
    ports,
    registry: metrics.registry,
    runtime: () => current,
    reload,
    acceptedConnections: () => data.acceptedConnections(),
    reopenLogs() {
      // A worker's supervisor says so once, when every worker has.
      if (metrics.audit.reopen() && !supervised) log.info("audit log file reopened");
    },
    async shutdown() {
      if (draining) return;
      draining = true;
      for (const w of watchers) w.close();
      discovery?.stop();
      data.stopAccepting();
      await drain(data.draining, durationMs(server.gracefulShutdown, defaultGracefulShutdownMs));
      data.closeAll();
      admin?.close();
      demo?.stop();
      current.retire(undefined);
      metrics.audit.close();
      await metrics.observer.close(); // sends the spans still queued
    },
  };
}

/**
 * The admin port, its modules (Hono, node:http and node:http2) loaded only where it is served:
 * a worker process has none, the supervisor serves it for all of them.
 */
async function startAdmin(state: AdminState, host: string, port: number): Promise<{ port: number; close: () => void }> {
  const [{ adminApp }, { startAdminListener }] = await Promise.all([import("./admin.js"), import("./admin-listener.js")]);
  return startAdminListener(adminApp(state), state, host, port);
}
