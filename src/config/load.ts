import { readFileSync } from "node:fs";
import { create, mergeFromJson, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { ConfigSchema, type Config } from "../gen/kedge/config/v1/config_pb.js";
import { decodeMessage } from "./decode.js";
import { ConfigError } from "./error.js";
import { parseConfigText } from "./parse.js";
import { secretValues } from "./secrets.js";
import { scrubSecrets } from "./scrub.js";
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

export interface ConfigPart {
  /** A file name, "command-line flags", …: the prefix of its problems. */
  where: string;
  json: unknown;
}

/** Parses each file as JSON or YAML; problems are collected, not thrown. */
export function readConfigFiles(files: readonly string[], problems: string[]): ConfigPart[] {
  const parts: ConfigPart[] = [];
  for (const file of files) {
    try {
      parts.push({ where: file, json: parseConfigText(readText(file), file) });
    } catch (e) {
      if (e instanceof ConfigError) problems.push(...e.problems);
      else throw e;
    }
  }
  return parts;
}

/**
 * Decodes each part (reporting every problem with its path) and merges them in order into one
 * message. Merging appends repeated fields, which is how kedge Go's split files combine.
 */
export function mergeConfigParts<Desc extends DescMessage>(schema: Desc, parts: readonly ConfigPart[], problems: string[]): MessageShape<Desc> {
  const message = create(schema);
  for (const { where, json } of parts) {
    try {
      decodeMessage(schema, json, where);
      mergeFromJson(schema, message, json as never);
    } catch (e) {
      if (e instanceof ConfigError) problems.push(...e.problems);
      else throw e;
    }
  }
  return message;
}

/** A ConfigError listing the problems, none of them echoing a secret written in the parts. */
export function configError(schema: DescMessage, parts: readonly ConfigPart[], problems: readonly string[]): ConfigError {
  const secrets = parts.flatMap((p) => secretValues(schema, p.json));
  return new ConfigError(problems.map((p) => scrubSecrets(p, secrets)));
}

/**
 * Reads, decodes, merges and validates the config. Throws ConfigError listing every problem with
 * its file and field path; nothing is half-applied.
 */
export function loadConfig(sources: ConfigSources): Config {
  const files = configFiles(sources);
  const problems: string[] = [];
  const parts = files.length === 0 ? [{ where: "embedded default config", json: sources.embedded ?? {} }] : readConfigFiles(files, problems);
  const flagSections = {
    server: sources.serverOverrides,
    auth: sources.authOverrides,
    kubernetes: sources.kubernetesOverrides,
    discovery: sources.discoveryOverrides,
  };
  for (const [section, overrides] of Object.entries(flagSections)) {
    if (overrides && Object.keys(overrides).length > 0) parts.push({ where: "command-line flags", json: { [section]: overrides } });
  }
  const config = mergeConfigParts(ConfigSchema, parts, problems);
  if (problems.length > 0) throw configError(ConfigSchema, parts, problems);
  const semantic = validateConfig(config);
  if (semantic.length > 0) throw configError(ConfigSchema, parts, semantic);
  return config;
}

function readText(file: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch (e) {
    throw new ConfigError([`${file}: cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`]);
  }
}
