import { create, toJsonString, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { ConfigSchema, type Config } from "./gen/kedge/config/v1/config_pb.js";
import { GrpcBackendSchema, HttpBackendSchema } from "./gen/kedge/config/v1/backend_pb.js";
import { GrpcBackend } from "./backend/grpc-backend.js";
import { HttpBackend } from "./backend/http-backend.js";
import { ConfigError } from "./config/parse.js";
import { compileAdhocRules, type AdhocTable } from "./router/adhoc.js";
import { compileGrpcRoutes, type GrpcRouteTable } from "./router/grpc.js";
import { compileHttpRoutes, type HttpRouteTable } from "./router/http.js";
import { formatHostPort } from "./router/host.js";

const maxAdhocBackends = 1024;

/** The compiled, immutable form of one config version; the hot path reads only this. */
export class Runtime {
  readonly httpRoutes: HttpRouteTable;
  readonly httpAdhoc: AdhocTable;
  readonly grpcRoutes: GrpcRouteTable;

  constructor(
    readonly version: number,
    readonly config: Config,
    readonly httpBackends: ReadonlyMap<string, HttpBackend>,
    readonly grpcBackends: ReadonlyMap<string, GrpcBackend>,
    /** Shared by every runtime of a process: adhoc targets do not depend on the config version. */
    readonly adhocBackends: Map<string, HttpBackend>,
  ) {
    this.httpRoutes = compileHttpRoutes(config.http?.routes ?? []);
    this.httpAdhoc = compileAdhocRules(config.http?.adhocRules ?? []);
    this.grpcRoutes = compileGrpcRoutes(config.grpc?.routes ?? []);
  }

  /** A backend for an adhoc target, resolved by DNS like kedge Go; kept warm for reuse, bounded. */
  adhocBackend(host: string, port: number): HttpBackend {
    const key = formatHostPort(host, port);
    let backend = this.adhocBackends.get(key);
    if (!backend) {
      if (this.adhocBackends.size >= maxAdhocBackends) {
        const [oldestKey, oldest] = this.adhocBackends.entries().next().value!;
        this.adhocBackends.delete(oldestKey);
        oldest.close();
      }
      backend = new HttpBackend(create(HttpBackendSchema, { name: "adhoc", resolver: { case: "host", value: { dnsName: host, port } } }));
      backend.start();
      this.adhocBackends.set(key, backend);
    }
    return backend;
  }

  /** Stops what the next runtime did not take over. */
  retire(next: Runtime | undefined): void {
    for (const [name, backend] of this.httpBackends) if (next?.httpBackends.get(name) !== backend) backend.close();
    for (const [name, backend] of this.grpcBackends) if (next?.grpcBackends.get(name) !== backend) backend.close();
    if (!next) for (const b of this.adhocBackends.values()) b.close();
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
  const http = buildBackends("http", HttpBackendSchema, config.http?.backends ?? [], previous?.httpBackends, (c) => new HttpBackend(c), problems, created);
  const grpc = buildBackends("grpc", GrpcBackendSchema, config.grpc?.backends ?? [], previous?.grpcBackends, (c) => new GrpcBackend(c), problems, created);
  if (problems.length > 0) {
    for (const b of created) b.close();
    throw new ConfigError(problems);
  }
  for (const b of created) b.start();
  return new Runtime(version, config, http, grpc, previous?.adhocBackends ?? new Map());
}

export function configToJson(config: Config): unknown {
  return JSON.parse(toJsonString(ConfigSchema, config, { useProtoFieldName: true }));
}
