import { AccessControl } from "./auth/access.js";
import { useKubernetesConfig } from "./k8s/shared-client.js";
import { create, toJsonString, type DescMessage, type JsonObject, type MessageShape } from "@bufbuild/protobuf";
import { ConfigSchema, type Config } from "./gen/kedge/config/v1/config_pb.js";
import { GrpcBackendSchema, HttpBackendSchema } from "./gen/kedge/config/v1/backend_pb.js";
import { ServerConfig_HeadersWithUnderscores as Underscores } from "./gen/kedge/config/v1/server_pb.js";
import { GrpcBackend } from "./backend/grpc-backend.js";
import { HttpBackend } from "./backend/http-backend.js";
import { defaultMaxHops } from "./backend/kedge-tier.js";
import { ConfigError } from "./config/error.js";
import { messageSecrets, redactedJson, scrubSecrets } from "./config/secrets.js";
import { compileAdhocRules, type AdhocTable } from "./router/adhoc.js";
import { compileGrpcRoutes, type GrpcRouteTable } from "./router/grpc.js";
import { compileHttpRoutes, type HttpRouteTable } from "./router/http.js";
import { formatHostPort } from "./net/host-port.js";
import { RateLimits } from "./ratelimit/rate-limits.js";

const maxAdhocBackends = 1024;

/** Backends made on demand for adhoc targets ("host:port"), kept warm for reuse; the oldest go first past the bound. */
export class AdhocBackends<B extends { start(): void; close(): void }> {
  private readonly byTarget = new Map<string, B>();

  constructor(private readonly make: (host: string, port: number) => B) {}

  get(host: string, port: number): B {
    const key = formatHostPort(host, port);
    let backend = this.byTarget.get(key);
    if (!backend) {
      if (this.byTarget.size >= maxAdhocBackends) {
        const [oldestKey, oldest] = this.byTarget.entries().next().value!;
        this.byTarget.delete(oldestKey);
        oldest.close();
      }
      backend = this.make(host, port);
      backend.start();
      this.byTarget.set(key, backend);
    }
    return backend;
  }

  /** The backends kept now (the pool gauges read them). */
  backends(): Iterable<B> {
    return this.byTarget.values();
  }

  close(): void {
    for (const b of this.byTarget.values()) b.close();
    this.byTarget.clear();
  }
}

/** Adhoc backends do not depend on the config version: one set per process, shared by every runtime. */
export interface AdhocPools {
  http: AdhocBackends<HttpBackend>;
  grpc: AdhocBackends<GrpcBackend>;
}

const hostResolver = (host: string, port: number) => ({ case: "host" as const, value: { dnsName: host, port } });

function newAdhocPools(): AdhocPools {
  return {
    http: new AdhocBackends((host, port) => new HttpBackend(create(HttpBackendSchema, { name: "adhoc", resolver: hostResolver(host, port) }))),
    grpc: new AdhocBackends((host, port) => new GrpcBackend(create(GrpcBackendSchema, { name: "adhoc", resolver: hostResolver(host, port) }))),
  };
}

/**
 * server.max_hops, or its default where this kedge can send a request on to another kedge. A loop
 * needs every kedge in it to have a kedge tier, so one without any need not read x-kedge-hops.
 */
function hopLimit(config: Config): number {
  const set = config.server?.maxHops ?? 0;
  if (set > 0) return set;
  const toKedge = (b: { failover: readonly { resolver: { case?: string } }[] }) => b.failover.some((t) => t.resolver.case === "kedge");
  return (config.http?.backends ?? []).some(toKedge) || (config.grpc?.backends ?? []).some(toKedge) ? defaultMaxHops : 0;
}

/** The compiled, immutable form of one config version; the hot path reads only this. */
export class Runtime {
  readonly httpRoutes: HttpRouteTable;
  readonly httpAdhoc: AdhocTable;
  readonly grpcRoutes: GrpcRouteTable;
  readonly grpcAdhoc: AdhocTable;
  /**
   * Per-request limits from the server section that a reload may change. maxHops 0: no hop check,
   * since this kedge sends nothing on to another (it has no kedge tier) and max_hops is unset.
   */
  readonly limits: { maxBodyBytes: number; allowEncodedSlashes: boolean; headersWithUnderscores: Underscores; maxHops: number };

  constructor(
    readonly version: number,
    readonly config: Config,
    readonly httpBackends: ReadonlyMap<string, HttpBackend>,
    readonly grpcBackends: ReadonlyMap<string, GrpcBackend>,
    readonly adhoc: AdhocPools,
    readonly access: AccessControl,
    /** The server's and the routes' rate limits, with their buckets. */
    readonly rateLimits: RateLimits,
  ) {
    this.httpRoutes = compileHttpRoutes(config.http?.routes ?? []);
    this.httpAdhoc = compileAdhocRules(config.http?.adhocRules ?? []);
    this.grpcRoutes = compileGrpcRoutes(config.grpc?.routes ?? []);
    this.grpcAdhoc = compileAdhocRules(config.grpc?.adhocRules ?? []);
    this.limits = { maxBodyBytes: Number(config.server?.maxRequestBodyBytes ?? 0), allowEncodedSlashes: config.server?.allowEncodedSlashes ?? false,
      headersWithUnderscores: config.server?.headersWithUnderscores ?? Underscores.REJECT,
      maxHops: hopLimit(config),
    };
  }

  /** Stops what the next runtime did not take over. */
  retire(next: Runtime | undefined): void {
    for (const [name, backend] of this.httpBackends) {
      const successor = next?.httpBackends.get(name);
      if (successor !== backend) backend.close(successor);
    }
    for (const [name, backend] of this.grpcBackends) {
      const successor = next?.grpcBackends.get(name);
      if (successor !== backend) backend.close(successor);
    }
    if (!next) {
      this.adhoc.http.close();
      this.adhoc.grpc.close();
    }
  }
}

interface Startable {
  start(): void;
  close(): void;
}

/**
 * Builds the backends of one kind, carrying over from the previous runtime every backend whose
 * config is unchanged (with its warm connections). New ones are returned unstarted.
 */
function buildBackends<Desc extends DescMessage, B extends Startable & { config: MessageShape<Desc> }>(
  kind: string,
  schema: Desc,
  configs: readonly (MessageShape<Desc> & { name: string })[],
  previous: ReadonlyMap<string, B> | undefined,
  make: (config: MessageShape<Desc>) => B,
  problems: string[],
  created: Startable[],
): Map<string, B> {
  const backends = new Map<string, B>();
  configs.forEach((config, i) => {
    const old = previous?.get(config.name);
    if (old && toJsonString(schema, old.config) === toJsonString(schema, config)) {
      backends.set(config.name, old);
      return;
    }
    try {
      const backend = make(config);
      created.push(backend);
      backends.set(config.name, backend);
    } catch (e) {
      problems.push(`${kind}.backends[${i}]: ${(e as Error).message}`);
    }
  });
  return backends;
}

/** Builds a runtime from a validated config; throws ConfigError (and starts nothing) when a backend cannot be built. */
export function buildRuntime(config: Config, version: number, previous?: Runtime): Runtime {
  const problems: string[] = [];
  const created: Startable[] = [];
  useKubernetesConfig(config.kubernetes);
  const http = buildBackends("http", HttpBackendSchema, config.http?.backends ?? [], previous?.httpBackends, (c) => new HttpBackend(c), problems, created);
  const grpc = buildBackends("grpc", GrpcBackendSchema, config.grpc?.backends ?? [], previous?.grpcBackends, (c) => new GrpcBackend(c), problems, created);
  let access: AccessControl | undefined;
  try {
    access = new AccessControl(config.auth, (config.server?.tlsClientCaFiles.length ?? 0) > 0, previous?.access);
  } catch (e) {
    problems.push(`auth: ${(e as Error).message}`);
  }
  if (problems.length > 0 || !access) {
    for (const b of created) b.close();
    const secrets = messageSecrets(ConfigSchema, config);
    throw new ConfigError(problems.map((p) => scrubSecrets(p, secrets)));
  }
  for (const b of created) b.start();
  return new Runtime(version, config, http, grpc, previous?.adhoc ?? newAdhocPools(), access, new RateLimits(config, previous?.rateLimits));
}

/** The config as the admin surfaces show it: protobuf JSON with every secret redacted. */
export function configToJson(config: Config): JsonObject {
  return redactedJson(ConfigSchema, config);
}
