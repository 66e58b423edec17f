import { readFileSync } from "node:fs";
import type { GrpcBackend as GrpcBackendConfig } from "../gen/kedge/config/v1/backend_pb.js";
import { H2Session, type H2SessionOptions, type H2SessionStats } from "../upstream/h2-session.js";
import { Backend } from "./backend.js";
import { balancerFor } from "./balancer.js";
import { defaults, durationMs, sniName } from "./http-backend.js";
import { resolverFor } from "./resolvers.js";

function nodeTls(config: GrpcBackendConfig, host: string): H2SessionOptions["tls"] {
  const s = config.security;
  if (!s) return undefined;
  const read = (f: string) => readFileSync(f, "utf8");
  return {
    rejectUnauthorized: !s.insecureSkipVerify,
    ca: s.caFiles.length > 0 ? s.caFiles.map(read) : undefined,
    servername: s.serverName || sniName(config, host),
    cert: s.clientCertFile ? read(s.clientCertFile) : undefined,
    key: s.clientKeyFile ? read(s.clientKeyFile) : undefined,
  };
}

/** A named gRPC backend: endpoints from its resolver, each with one warm HTTP/2 session. */
export class GrpcBackend extends Backend<H2SessionStats, H2Session> {
  readonly connectTimeoutMs: number;

  constructor(readonly config: GrpcBackendConfig) {
    const connectTimeoutMs = durationMs(config.timeouts?.connect, defaults.connectTimeoutMs);
    super(
      config.name,
      resolverFor(config),
      balancerFor(config.balancer),
      (host, port) => new H2Session({ host, port, tls: nodeTls(config, host), connectTimeoutMs }),
      defaults.failureBackoffMs,
    );
    this.connectTimeoutMs = connectTimeoutMs;
  }
}
