import type { Config } from "../../gen/kedge/config/v1/config_pb.js";
import type { ConfigSources } from "../../config/load.js";
import { endpointSetsMessageType, k8sEndpoints, type EndpointSetsMessage } from "../../k8s/endpoint-sets.js";
import { log, setLogProcessFields } from "../../observe/log.js";
import { startKedge, type KedgeServer } from "../kedge.js";
import { answerAdminAsks } from "./admin-views.js";
import { reopenLogsMessage, WorkerChannel, type WorkerMessage } from "./channel.js";

/** The listener names kedge reports ports under, and the server fields that set them. */
const portFields = { tls: "httpTlsPort", grpc_tls: "grpcTlsPort", h2c: "h2cPort", http: "httpPort" } as const;

/** What the supervisor sends a worker to serve (`start`) and to swap to (`reload`). */
export interface ServeMessage extends WorkerMessage {
  /** The validated, composed config, the decoded message itself (structured clone). */
  config: Config;
  /** Its secret values, for the worker to keep out of the problems it reports. */
  secrets: readonly string[];
  version: number;
  /** The ports worker 1 bound (absent for worker 1 itself): every worker binds the same ones. */
  ports?: Record<string, number>;
}

/** What a worker answers `stats` with. */
export interface WorkerStats {
  pid: number;
  configVersion: number;
  acceptedConnections: number;
}

function withPorts(config: Config, ports: Record<string, number> | undefined): Config {
  if (!ports || !config.server) return config;
  for (const [name, field] of Object.entries(portFields)) {
    if (ports[name] !== undefined) config.server[field] = ports[name];
  }
  return config;
}

/**
 * A worker process: serves the data ports with the config the supervisor sends, swaps on its
 * `reload`, and drains on SIGTERM or when the supervisor goes away. It watches no files and owns
 * no admin port: the supervisor does both, once for all workers.
 */
export function runWorker(workerId: number, sources: ConfigSources, onServing: () => void): void {
  setLogProcessFields({ worker: workerId });
  const channel = new WorkerChannel(workerId);
  let config: Config | undefined;
  let secrets: readonly string[] = [];
  let version = 0;
  let ports: Record<string, number> | undefined;
  let kedge: KedgeServer | undefined;
  const supervised = { config: () => withPorts(config!, ports), version: () => version, secrets: () => secrets };
  // The supervisor watches the API server for every worker: k8s backends here follow its sets.
  k8sEndpoints.receiveFromSupervisor();
  channel.handle(endpointSetsMessageType, (message) => k8sEndpoints.receive(message as EndpointSetsMessage));

  channel.handle("start", async (message) => {
    const serve = message as ServeMessage;
    config = serve.config;
    secrets = serve.secrets;
    version = serve.version;
    ports = serve.ports;
    kedge = await startKedge(sources, { supervised });
    answerAdminAsks(channel, kedge.registry, kedge.runtime);
    ports = { ...kedge.ports };
    onServing();
    return { ports: kedge.ports };
  });
  channel.handle("reload", async (message) => {
    const serve = message as ServeMessage;
    config = serve.config;
    secrets = serve.secrets;
    version = serve.version;
    const error = await kedge?.reload();
    return error ? { problems: error.problems } : { version };
  });
  channel.handle(reopenLogsMessage, () => kedge?.reopenLogs());
  channel.handle("stats", (): WorkerStats => ({
    pid: process.pid,
    configVersion: kedge?.runtime().version ?? 0,
    acceptedConnections: kedge?.acceptedConnections() ?? 0,
  }));

  let stopping = false;
  const stop = async (why: string) => {
    if (stopping) return;
    stopping = true;
    log.info("shutting down: draining in-flight requests", { reason: why });
    await kedge?.shutdown();
    process.exit(0);
  };
  process.once("SIGTERM", () => void stop("SIGTERM"));
  process.once("SIGINT", () => void stop("SIGINT"));
  // Reloads come from the supervisor, which validated the config; a SIGHUP sent to every kedge
  // process (pkill -HUP kedge) must not end a worker, whose default action on it is to exit.
  process.on("SIGHUP", () => {});
  // The supervisor forwards its SIGUSR1 as a message; one sent to every kedge process lands here too.
  process.on("SIGUSR1", () => kedge?.reopenLogs());
  // A supervisor that died must not leave workers holding the ports.
  channel.onDisconnect(() => void stop("supervisor gone"));
}
