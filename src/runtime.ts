import { toJsonString } from "@bufbuild/protobuf";
import { create } from "@bufbuild/protobuf";
import { ConfigSchema, type Config } from "./gen/kedge/config/v1/config_pb.js";
import { HttpBackendSchema } from "./gen/kedge/config/v1/backend_pb.js";
import { HttpBackend } from "./backend/http-backend.js";
import { ConfigError } from "./config/parse.js";
import { compileAdhocRules, type AdhocTable } from "./router/adhoc.js";
import { compileHttpRoutes, type HttpRouteTable } from "./router/http.js";
import { formatHostPort } from "./router/host.js";

const maxAdhocBackends = 1024;

/** The compiled, immutable form of one config version; the hot path reads only this. */
export class Runtime {
  readonly httpRoutes: HttpRouteTable;
  readonly httpAdhoc: AdhocTable;

  constructor(
    readonly version: number,
    readonly config: Config,
    readonly httpBackends: ReadonlyMap<string, HttpBackend>,
    /** Shared by every runtime of a process: adhoc targets do not depend on the config version. */
    readonly adhocBackends: Map<string, HttpBackend>,
  ) {
    this.httpRoutes = compileHttpRoutes(config.http?.routes ?? []);
    this.httpAdhoc = compileAdhocRules(config.http?.adhocRules ?? []);
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
    for (const [name, backend] of this.httpBackends) {
      if (next?.httpBackends.get(name) !== backend) backend.close();
    }
    if (!next) for (const b of this.adhocBackends.values()) b.close();
  }
}

/**
 * Builds a runtime from a validated config. Backends whose config is unchanged are carried over
 * from `previous` with their warm connections; new ones start resolving now.
 */
export function buildRuntime(config: Config, version: number, previous?: Runtime): Runtime {
  const backends = new Map<string, HttpBackend>();
  const created: HttpBackend[] = [];
  const problems: string[] = [];
  (config.http?.backends ?? []).forEach((b, i) => {
    const old = previous?.httpBackends.get(b.name);
    if (old && toJsonString(HttpBackendSchema, old.config) === toJsonString(HttpBackendSchema, b)) {
      backends.set(b.name, old);
      return;
    }
    try {
      const backend = new HttpBackend(b);
      created.push(backend);
      backends.set(b.name, backend);
    } catch (e) {
      problems.push(`http.backends[${i}]: ${(e as Error).message}`);
    }
  });
  if (problems.length > 0) {
    for (const b of created) b.close();
    throw new ConfigError(problems);
  }
  for (const b of created) b.start();
  return new Runtime(version, config, backends, previous?.adhocBackends ?? new Map());
}

export function configToJson(config: Config): unknown {
  return JSON.parse(toJsonString(ConfigSchema, config, { useProtoFieldName: true }));
}
