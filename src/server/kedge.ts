import type { FSWatcher } from "node:fs";
import type { Config } from "../gen/kedge/config/v1/config_pb.js";
import { durationMs } from "../config/duration.js";
import { ConfigError } from "../config/error.js";
import { withDiscovered } from "../config/compose.js";
import { configFiles, loadConfig, type ConfigSources } from "../config/load.js";
import { watchConfigFiles } from "../config/watch.js";
import { defaultBindAddress, unguardedListeners } from "../config/validate-exposure.js";
import { RoutingDiscovery } from "../k8s/discovery.js";
import { kubeClient, useKubernetesConfig } from "../k8s/shared-client.js";
import { startDemoBackend } from "../demo/backend.js";
import { log, setLogLevel } from "../observe/log.js";
import { countBackendChanges, createMetrics, watchBackends } from "../observe/metrics.js";
import { buildRuntime, type Runtime } from "../runtime.js";
import { debugServedWithoutToken } from "./admin-auth.js";
import { startAdminListener } from "./admin-listener.js";
import { backendsView } from "./backends-view.js";
import { defaultGracefulShutdownMs, drain } from "./drain.js";
import { startDataListeners, type DataListeners } from "./listeners.js";

export interface KedgeServer {
  readonly ports: Record<string, number>;
  /** The live runtime (tests and the admin API read it). */
  runtime(): Runtime;
  /** Re-reads the config files; a bad config is rejected and the old one keeps serving. Returns the error, if any. */
  reload(): Promise<ConfigError | undefined>;
  /** Graceful: stop accepting, wait for in-flight requests up to the deadline, then close everything. */
  shutdown(): Promise<void>;
}

/** How long start waits for discovery's first listing, so generated routes serve from the first request. */
const firstSyncWaitMs = 5_000;

function startDiscovery(config: Config, onChange: () => void): RoutingDiscovery | undefined {
  if (!config.discovery?.enabled) return undefined;
  useKubernetesConfig(config.kubernetes);
  const discovery = new RoutingDiscovery(kubeClient(), config.discovery, onChange);
  discovery.start();
  return discovery;
}

/** Starts kedge serve from config sources; throws ConfigError before binding anything when the config is bad. */
export async function startKedge(sources: ConfigSources, options: { watchFiles?: boolean } = {}): Promise<KedgeServer> {
  const base = loadConfig(sources);
  setLogLevel(base.server?.logLevel || "info");
  const metrics = createMetrics();
  let reload: () => Promise<ConfigError | undefined> = async () => undefined;
  const discovery = startDiscovery(base, () => void reload());
  if (discovery) await discovery.waitForFirstSync(firstSyncWaitMs);
  const compose = (config: Config) => (discovery ? withDiscovered(config, discovery.current) : config);
  let first: Config;
  let current: Runtime;
  try {
    first = compose(base);
    current = buildRuntime(first, 1);
  } catch (e) {
    discovery?.stop();
    throw e;
  }
  let draining = false;
  const server = first.server!;
  metrics.observer.configure(first.observability);
  countBackendChanges(metrics, undefined, current);
  watchBackends(metrics, () => current);
  metrics.configVersion.collect = () => [[[], current.version]];
  const ports: Record<string, number> = {};

  const demo = server.demoBackendPort !== undefined ? startDemoBackend(server.demoBackendPort) : undefined;
  if (demo) ports.demo = demo.port;
  const ctx = { runtime: () => current, metrics };
  let data: DataListeners;
  try {
    data = await startDataListeners(server, ctx);
  } catch (e) {
    demo?.stop();
    discovery?.stop();
    current.retire(undefined);
    throw e;
  }
  Object.assign(ports, data.ports);
  const unguarded = unguardedListeners(first);
  if (unguarded.length > 0) {
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
  const admin = server.adminPort !== undefined
    ? await startAdminListener(
        { runtime: () => current, draining: () => draining, metricsText: () => metrics.registry.render(), backends: () => backendsView(current) },
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
    let next: Runtime;
    try {
      const config = compose(loadConfig(sources));
      warnAboutListenerChanges(current.config, config);
      next = buildRuntime(config, current.version + 1, current);
      if (config.server?.httpTlsPort !== undefined || config.server?.grpcTlsPort !== undefined) {
        try {
          data.reloadTls(config.server);
        } catch (e) {
          next.retire(current); // closes only what the rejected runtime started
          throw new ConfigError([`server.tls_cert_file/tls_key_file/tls_client_ca_files: ${(e as Error).message}`]);
        }
      }
    } catch (e) {
      const err = e instanceof ConfigError ? e : new ConfigError([(e as Error).message]);
      metrics.reloads.inc(["failure"]);
      log.error("config rejected; the previous config keeps serving", { problems: err.problems, version: current.version });
      return err;
    }
    const previous = current;
    current = next; // one reference swap: new requests see the new runtime, in-flight ones keep theirs
    previous.retire(next);
    countBackendChanges(metrics, previous, next);
    metrics.observer.configure(next.config.observability);
    metrics.reloads.inc(["success"]);
    log.info("config reloaded", { version: next.version });
    return undefined;
  };
  reload = () => (reloading = reloading.then(reloadOnce));

  const watchers: FSWatcher[] = [];
  // Cert files too: cert-manager and friends rotate them in place.
  const auth = first.auth;
  const watched = [
    ...configFiles(sources),
    server.tlsCertFile,
    server.tlsKeyFile,
    ...server.tlsClientCaFiles,
    auth?.bearerTokenFile ?? "",
    auth?.oidc?.jwksFile ?? "",
  ].filter(Boolean);
  if (options.watchFiles) watchers.push(...watchConfigFiles(watched, () => void reload()));

  return {
    ports,
    runtime: () => current,
    reload,
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
      await metrics.observer.close(); // sends the spans still queued
    },
  };
}

function warnAboutListenerChanges(before: Config, after: Config): void {
  const b = before.server;
  const a = after.server;
  const listenerFields = ["httpTlsPort", "httpPort", "grpcTlsPort", "h2cPort", "adminPort", "bindAddress"] as const;
  if (listenerFields.some((f) => b?.[f] !== a?.[f])) {
    log.warn("listener changes in the server section take effect on restart");
  }
}
