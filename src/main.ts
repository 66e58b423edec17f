// Only what every command needs is imported here. Each command loads its own modules when it runs
// (dynamic import): module initialisation (protobuf descriptors, node:http2, Connect, …) is most of
// the start-up time, so `kedge --help` or a bad flag should not pay for the proxy's, nor the proxy
// for winch's or the admin client's.
import { authOverrides, discoveryOverrides, kubernetesOverrides, parseArgs, serverOverrides, usage, UsageError, winchServerOverrides } from "./cli/args.js";
import { ConfigError } from "./config/error.js";
import { StartError } from "./errors.js";
import type { ConfigSources } from "./config/load.js";
import { embeddedDefaultConfig } from "./config/default.js";
import { log, setLogLevel } from "./observe/log.js";
import { version } from "./version.js";
import { workerIdEnv } from "./server/workers/channel.js";
import { holdStartSignals } from "./server/start-signals.js";

function sourcesFrom(flags: Map<string, string>): ConfigSources {
  return {
    configFile: flags.get("config"),
    directorFile: flags.get("director-config"),
    backendpoolFile: flags.get("backendpool-config"),
    embedded: embeddedDefaultConfig,
    serverOverrides: serverOverrides(flags),
    authOverrides: authOverrides(flags),
    kubernetesOverrides: kubernetesOverrides(flags),
    discoveryOverrides: discoveryOverrides(flags),
  };
}

/**
 * Start-up is over: back to JavaScriptCore's normal JIT tier-up thresholds. The binary is built
 * with them raised (--compile-jit-policy in package.json) so that run-once start-up code (protobuf
 * descriptors, config decoding) stays in the interpreter instead of being compiled: that is start-up
 * time and memory that would stay resident for code that never runs again. The request path, which
 * runs from here on, is compiled as usual.
 */
function interactive(): void {
  Bun.unsafe.setJITPolicy(1);
}

/** The line tests and operators read the ports from, and the demo's first request. */
function announce(ports: Record<string, number>, configVersion: number, sources: ConfigSources, extra: Record<string, unknown>): void {
  const listening = Object.entries(ports).map(([name, port]) => `${name}=${port}`).join(" ");
  log.info("kedge is serving", { ports, configVersion, ...extra });
  process.stdout.write(`kedge ${version.kedge} listening: ${listening}\n`);
  if (!sources.configFile && !sources.directorFile && !sources.backendpoolFile && ports.http) {
    process.stdout.write(`Embedded demo config. Try:\n  curl -s 'http://127.0.0.1:${ports.http}/?name=kedge'\n`);
  }
}

/** One request's bug must not take down every other client's connection: log and keep serving. */
function keepServingOnErrors(): void {
  process.on("uncaughtException", (e) => log.error("uncaught exception", { error: e.stack ?? String(e) }));
  process.on("unhandledRejection", (e) => log.error("unhandled rejection", { error: (e as Error)?.stack ?? String(e) }));
}

function onStop(shutdown: () => Promise<void>): void {
  const stop = async () => {
    await shutdown();
    process.exit(0);
  };
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
}

async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv);
  switch (args.command) {
    case "help":
      process.stdout.write(usage);
      return 0;
    case "version":
      process.stdout.write(`kedge ${version.kedge} (${version.runtime})\n`);
      return 0;
    case "admin": {
      const { runAdmin } = await import("./cli/admin.js");
      process.stdout.write(await runAdmin(args.positional[0], args.flags.get("admin-address") ?? "127.0.0.1:8081", process.env.KEDGE_ADMIN_TOKEN || undefined));
      return 0;
    }
    case "winch": {
      const [{ loadWinchConfig }, { startWinch }, { reloadWinch, watchWinchFiles }] = await Promise.all([
        import("./winch/config.js"),
        import("./winch/winch.js"),
        import("./winch/reload.js"),
      ]);
      const sources = {
        configFile: args.flags.get("config"),
        mapperFile: args.flags.get("mapper-config"),
        authFile: args.flags.get("auth-config"),
        serverOverrides: winchServerOverrides(args.flags),
      };
      const config = loadWinchConfig(sources);
      if (config.server?.logLevel) setLogLevel(config.server.logLevel);
      const winch = await startWinch(config, { log: (m) => process.stderr.write(`${m}\n`) });
      interactive();
      const listening = Object.entries(winch.ports).map(([name, port]) => `${name}=${port}`).join(" ");
      process.stdout.write(`winch ${version.kedge} listening: ${listening}\n`);
      const watchers = watchWinchFiles(winch, sources, config);
      process.on("SIGHUP", () => void reloadWinch(winch, sources));
      process.on("uncaughtException", (e) => log.error("uncaught exception", { error: e.stack ?? String(e) }));
      process.on("unhandledRejection", (e) => log.error("unhandled rejection", { error: (e as Error)?.stack ?? String(e) }));
      const stop = async () => {
        for (const w of watchers) w.close();
        await winch.shutdown();
        process.exit(0);
      };
      process.once("SIGTERM", stop);
      process.once("SIGINT", stop);
      return -1;
    }
    case "validate": {
      const sources = sourcesFrom(args.flags);
      const { loadConfig } = await import("./config/load.js");
      loadConfig(sources);
      process.stdout.write("config is valid\n");
      return 0;
    }
    default: {
      const sources = sourcesFrom(args.flags);
      const workerId = process.env[workerIdEnv];
      if (workerId) {
        const { runWorker } = await import("./server/workers/worker.js");
        runWorker(Number(workerId), sources, interactive);
        keepServingOnErrors();
        return -1;
      }
      const handOverSignals = holdStartSignals();
      const [{ loadConfig }, { workersSetting }, { availableCpus, readCpuLimitFiles }] = await Promise.all([
        import("./config/load.js"),
        import("./config/workers.js"),
        import("./server/workers/cpus.js"),
      ]);
      const config = loadConfig(sources);
      const setting = workersSetting(config);
      const workers = setting === "auto" ? availableCpus(readCpuLimitFiles(navigator.hardwareConcurrency)) : setting;
      if (workers > 1) {
        const { startSupervisor } = await import("./server/workers/supervised.js");
        const kedge = await startSupervisor(sources, config, workers);
        interactive();
        announce(kedge.ports, kedge.runtime().version, sources, { workers: kedge.pool.workers() });
        handOverSignals({ SIGHUP: () => void kedge.reload(), SIGUSR1: () => void kedge.reopenLogs() });
        keepServingOnErrors();
        onStop(async () => {
          log.info("shutting down: draining every worker");
          await kedge.shutdown();
        });
        return -1;
      }
      const { startKedge } = await import("./server/kedge.js");
      const kedge = await startKedge(sources, { watchFiles: true });
      interactive();
      announce(kedge.ports, kedge.runtime().version, sources, {});
      // SIGUSR1: a log rotator renamed the audit log; write to a new file at its path.
      handOverSignals({ SIGHUP: () => void kedge.reload(), SIGUSR1: () => kedge.reopenLogs() });
      keepServingOnErrors();
      onStop(async () => {
        log.info("shutting down: draining in-flight requests");
        await kedge.shutdown();
      });
      return -1; // keep running
    }
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (e) => {
    if (e instanceof ConfigError) process.stderr.write(`invalid config:\n  ${e.problems.join("\n  ")}\n`);
    else if (e instanceof UsageError) process.stderr.write(`${e.message}\n`);
    else if (e instanceof StartError) process.stderr.write(`kedge: ${e.message}\n`);
    else process.stderr.write(`kedge: ${(e as Error).stack ?? e}\n`);
    process.exit(1);
  },
);
