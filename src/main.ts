import { runAdmin } from "./cli/admin.js";
import { authOverrides, discoveryOverrides, kubernetesOverrides, parseArgs, serverOverrides, usage, UsageError, winchServerOverrides } from "./cli/args.js";
import { ConfigError } from "./config/parse.js";
import { loadConfig, type ConfigSources } from "./config/load.js";
import { embeddedDefaultConfig } from "./config/default.js";
import { log } from "./observe/log.js";
import { startKedge } from "./server/kedge.js";
import { version } from "./version.js";
import { loadWinchConfig } from "./winch/config.js";
import { startWinch } from "./winch/winch.js";
import { setLogLevel } from "./observe/log.js";

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

async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv);
  switch (args.command) {
    case "help":
      process.stdout.write(usage);
      return 0;
    case "version":
      process.stdout.write(`kedge ${version.kedge} (${version.runtime})\n`);
      return 0;
    case "admin":
      process.stdout.write(await runAdmin(args.positional[0], args.flags.get("admin-address") ?? "127.0.0.1:8081"));
      return 0;
    case "winch": {
      const config = loadWinchConfig({
        configFile: args.flags.get("config"),
        mapperFile: args.flags.get("mapper-config"),
        authFile: args.flags.get("auth-config"),
        serverOverrides: winchServerOverrides(args.flags),
      });
      if (config.server?.logLevel) setLogLevel(config.server.logLevel);
      const winch = await startWinch(config, { log: (m) => process.stderr.write(`${m}\n`) });
      const listening = Object.entries(winch.ports).map(([name, port]) => `${name}=${port}`).join(" ");
      process.stdout.write(`winch ${version.kedge} listening: ${listening}\n`);
      process.on("uncaughtException", (e) => log.error("uncaught exception", { error: e.stack ?? String(e) }));
      process.on("unhandledRejection", (e) => log.error("unhandled rejection", { error: (e as Error)?.stack ?? String(e) }));
      const stop = async () => {
        await winch.close();
        process.exit(0);
      };
      process.once("SIGTERM", stop);
      process.once("SIGINT", stop);
      return -1;
    }
    case "validate": {
      const sources = sourcesFrom(args.flags);
      loadConfig(sources);
      process.stdout.write("config is valid\n");
      return 0;
    }
    default: {
      const sources = sourcesFrom(args.flags);
      const kedge = await startKedge(sources, { watchFiles: true });
      const listening = Object.entries(kedge.ports).map(([name, port]) => `${name}=${port}`).join(" ");
      log.info("kedge is serving", { ports: kedge.ports, configVersion: kedge.runtime().version });
      process.stdout.write(`kedge ${version.kedge} listening: ${listening}\n`);
      if (!sources.configFile && !sources.directorFile && !sources.backendpoolFile && kedge.ports.http) {
        process.stdout.write(`Embedded demo config. Try:\n  curl -s 'http://127.0.0.1:${kedge.ports.http}/?name=kedge'\n`);
      }
      process.on("SIGHUP", () => void kedge.reload());
      // One request's bug must not take down every other client's connection: log and keep serving.
      process.on("uncaughtException", (e) => log.error("uncaught exception", { error: e.stack ?? String(e) }));
      process.on("unhandledRejection", (e) => log.error("unhandled rejection", { error: (e as Error)?.stack ?? String(e) }));
      const stop = async () => {
        log.info("shutting down: draining in-flight requests");
        await kedge.shutdown();
        process.exit(0);
      };
      process.once("SIGTERM", stop);
      process.once("SIGINT", stop);
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
    else process.stderr.write(`kedge: ${(e as Error).stack ?? e}\n`);
    process.exit(1);
  },
);
