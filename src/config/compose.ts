import { clone, mergeFromJson } from "@bufbuild/protobuf";
import { ConfigSchema, type Config } from "../gen/kedge/config/v1/config_pb.js";
import { ConfigError } from "./error.js";
import { messageSecrets } from "./secrets.js";
import { scrubSecrets } from "./scrub.js";
import { validateConfig } from "./validate.js";

/** Routes and backends in the config file's JSON shape, merged after the static ones. */
export interface DiscoveredConfig {
  http: { routes: unknown[]; backends: unknown[] };
  grpc: { routes: unknown[]; backends: unknown[] };
}

/**
 * The static config plus what discovery generated: generated routes after the static ones (first
 * match wins, so a hand-written route always beats a generated one), and a generated backend
 * dropped when a static backend has its name. Throws ConfigError when the result is invalid.
 */
export function withDiscovered(config: Config, discovered: DiscoveredConfig): Config {
  const merged = clone(ConfigSchema, config);
  const fragment: Record<string, unknown> = {};
  for (const kind of ["http", "grpc"] as const) {
    const taken = new Set(config[kind]?.backends.map((b) => b.name) ?? []);
    const backends = discovered[kind].backends.filter((b) => !taken.has((b as { name: string }).name));
    if (backends.length + discovered[kind].routes.length > 0) fragment[kind] = { routes: discovered[kind].routes, backends };
  }
  mergeFromJson(ConfigSchema, merged, fragment as never);
  const problems = validateConfig(merged);
  if (problems.length > 0) {
    const secrets = messageSecrets(ConfigSchema, merged);
    throw new ConfigError(problems.map((p) => scrubSecrets(`dynamic routing discovery: ${p}`, secrets)));
  }
  return merged;
}
