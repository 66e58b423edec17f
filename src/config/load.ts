import { readFileSync } from "node:fs";
import { create, mergeFromJson } from "@bufbuild/protobuf";
import { ConfigSchema, type Config } from "../gen/kedge/config/v1/config_pb.js";
import { decodeMessage } from "./decode.js";
import { ConfigError, parseConfigText } from "./parse.js";
import { validateConfig } from "./validate.js";

/** Where the config comes from: one kedge file, and/or kedge Go's two files. */
export interface ConfigSources {
  configFile?: string;
  directorFile?: string;
  backendpoolFile?: string;
  /** Used when no file is named: the embedded default config, as JSON. */
  embedded?: unknown;
  /** Server fields from command-line flags; they win over the files. */
  serverOverrides?: Record<string, unknown>;
  /** Auth fields from command-line flags (kedge Go's names); they win over the files. */
  authOverrides?: Record<string, unknown>;
  /** Kubernetes API settings from command-line flags. */
  kubernetesOverrides?: Record<string, unknown>;
  /** Discovery settings from command-line flags. */
  discoveryOverrides?: Record<string, unknown>;
}

export function configFiles(sources: ConfigSources): string[] {
  return [sources.configFile, sources.directorFile, sources.backendpoolFile].filter((f): f is string => !!f);
}

/**
 * Reads, decodes, merges and validates the config. Throws ConfigError listing every problem with
 * its file and field path; nothing is half-applied.
 */
export function loadConfig(sources: ConfigSources): Config {
  const files = configFiles(sources);
  const config = create(ConfigSchema);
  const problems: string[] = [];
  const parts: Array<{ where: string; json: unknown }> = [];
  if (files.length === 0) parts.push({ where: "embedded default config", json: sources.embedded ?? {} });

  for (const file of files) {
    try {
      parts.push({ where: file, json: parseConfigText(readText(file), file) });
    } catch (e) {
      if (e instanceof ConfigError) problems.push(...e.problems);
      else throw e;
    }
  }
  if (sources.serverOverrides && Object.keys(sources.serverOverrides).length > 0) {
    parts.push({ where: "command-line flags", json: { server: sources.serverOverrides } });
  }
  const flagSections = { auth: sources.authOverrides, kubernetes: sources.kubernetesOverrides, discovery: sources.discoveryOverrides };
  for (const [section, overrides] of Object.entries(flagSections)) {
    if (overrides && Object.keys(overrides).length > 0) parts.push({ where: "command-line flags", json: { [section]: overrides } });
  }
  for (const { where, json } of parts) {
    try {
      // Decoding alone reports every problem with its path; merging appends repeated fields,
      // which is how kedge Go's director + backendpool files combine.
      decodeMessage(ConfigSchema, json, where);
      mergeFromJson(ConfigSchema, config, json as never);
    } catch (e) {
      if (e instanceof ConfigError) problems.push(...e.problems);
      else throw e;
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  const semantic = validateConfig(config);
  if (semantic.length > 0) throw new ConfigError(semantic);
  return config;
}

function readText(file: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch (e) {
    throw new ConfigError([`${file}: cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`]);
  }
}
