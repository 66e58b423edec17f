import type { Config } from "../gen/kedge/config/v1/config_pb.js";
import type { ServerConfig } from "../gen/kedge/config/v1/server_pb.js";
import { ConfigError } from "../config/error.js";
import { log } from "../observe/log.js";
import type { Metrics } from "../observe/metrics.js";
import { buildRuntime, type Runtime } from "../runtime.js";

/**
 * The runtime a reload would swap in, or a ConfigError (counted, and logged once) with the
 * previous one left serving. `useTls` takes the new cert and key for the TLS listeners (a worker
 * or a single kedge) or only checks them (the supervisor); throwing refuses the config.
 */
export function nextRuntime(config: Config, current: Runtime, version: number, metrics: Metrics, useTls: (server: ServerConfig) => void, supervised = false): Runtime | ConfigError {
  try {
    const next = buildRuntime(config, version, current.secretsOf, current);
    if (config.server?.httpTlsPort !== undefined || config.server?.grpcTlsPort !== undefined) {
      try {
        useTls(config.server);
      } catch (e) {
        next.retire(current); // closes only what the rejected runtime started
        throw new ConfigError([`server.tls_cert_file/tls_key_file/tls_client_ca_files: ${(e as Error).message}`]);
      }
    }
    return next;
  } catch (e) {
    return rejected(e, current, metrics, supervised);
  }
}

/**
 * A config that did not load or build: counted, one error line, the previous config keeps serving.
 * A worker (`supervised`) only hands its problems back: its supervisor counts and logs, once.
 */
export function rejected(e: unknown, current: Runtime, metrics: Metrics, supervised = false): ConfigError {
  const err = e instanceof ConfigError ? e : new ConfigError([(e as Error).message]);
  if (supervised) {
    log.debug("config refused; the previous config keeps serving", { problems: err.problems, version: current.version });
    return err;
  }
  metrics.reloads.inc(["failure"]);
  log.error("config rejected; the previous config keeps serving", { problems: err.problems, version: current.version });
  return err;
}

/** Listeners are bound once: the one who loaded the config says so when a reload changes them. */
export function warnAboutListenerChanges(before: Config, after: Config): void {
  const b = before.server;
  const a = after.server;
  const listenerFields = ["httpTlsPort", "httpPort", "grpcTlsPort", "h2cPort", "adminPort", "bindAddress", "workers"] as const;
  if (listenerFields.some((f) => JSON.stringify(b?.[f]) !== JSON.stringify(a?.[f]))) {
    log.warn("listener changes in the server section take effect on restart");
  }
}
