import { statSync } from "node:fs";
import { dirname } from "node:path";
import { WinchConfigSchema, type WinchConfig } from "../gen/kedge/winch/v1/winch_pb.js";
import { fileProblem, keyPairProblems } from "../config/files.js";
import { configError, mergeConfigParts, readConfigFiles } from "../config/load.js";
import { expandTemplate, translateRe2 } from "./mapper.js";

/** Where winch's config comes from: one file, and/or kedge Go's mapper and auth files. */
export interface WinchSources {
  configFile?: string;
  mapperFile?: string;
  authFile?: string;
  /** Used when no file is named. */
  embedded?: unknown;
  /** The server section given as command-line flags, applied over the files'. */
  serverOverrides?: Record<string, unknown>;
}

export function winchConfigFiles(sources: WinchSources): string[] {
  return [sources.configFile, sources.mapperFile, sources.authFile].filter((f): f is string => !!f);
}

/** Reads, merges and validates winch's config; throws ConfigError naming every problem with its path. */
export function loadWinchConfig(sources: WinchSources): WinchConfig {
  const problems: string[] = [];
  const files = winchConfigFiles(sources);
  const parts = files.length === 0 ? [{ where: "embedded winch config", json: sources.embedded ?? {} }] : readConfigFiles(files, problems);
  const overrides = sources.serverOverrides;
  if (overrides && Object.keys(overrides).length > 0) parts.push({ where: "command-line flags", json: { server: overrides } });
  const config = mergeConfigParts(WinchConfigSchema, parts, problems);
  if (problems.length === 0) problems.push(...validateWinchConfig(config));
  if (problems.length > 0) throw configError(WinchConfigSchema, parts, problems);
  return config;
}

export function validateWinchConfig(config: WinchConfig): string[] {
  const problems: string[] = [];
  const names = new Map<string, number>();
  config.authSources.forEach((s, i) => {
    if (!s.name) problems.push(`auth_sources[${i}].name: required`);
    else if (names.has(s.name)) problems.push(`auth_sources[${i}].name: duplicate auth source "${s.name}" (also auth_sources[${names.get(s.name)}])`);
    else names.set(s.name, i);
    if (s.type.case === undefined) problems.push(`auth_sources[${i}]: set one of token, dummy, kube, oidc`);
    if (s.type.case === "kube" && s.type.value.path) problems.push(...present([fileProblem(`auth_sources[${i}].kube.path`, s.type.value.path, "text")]));
  });
  const server = config.server;
  if (server) {
    problems.push(...present(server.caFiles.map((f, i) => fileProblem(`server.ca_files[${i}]`, f, "certificate"))));
    problems.push(...keyPairProblems("server", "client_cert_file", server.clientCertFile, "client_key_file", server.clientKeyFile));
    if ((server.clientCertFile === "") !== (server.clientKeyFile === "")) problems.push("server.client_cert_file: client_cert_file and client_key_file go together");
    if (server.pacFile) problems.push(...present([fileProblem("server.pac_file", server.pacFile, "text")]));
    const logPath = server.accessLog?.path;
    if (logPath && !isDirectory(dirname(logPath))) problems.push(`server.access_log.path: ${JSON.stringify(dirname(logPath))} is not a directory`);
  }
  config.routes.forEach((r, i) => {
    const at = `routes[${i}]`;
    for (const [field, name] of [["backend_auth", r.backendAuth], ["proxy_auth", r.proxyAuth]] as const) {
      if (name && !names.has(name)) problems.push(`${at}.${field}: unknown auth source "${name}"`);
    }
    const t = r.type;
    if (t.case === undefined) return void problems.push(`${at}: set direct or regexp`);
    if (t.case === "direct") {
      if (!t.value.key) problems.push(`${at}.direct.key: required`);
      if (!isKedgeUrl(t.value.url)) problems.push(`${at}.direct.url: "${t.value.url}" is not an http(s) URL`);
      return;
    }
    let re: RegExp;
    try {
      re = translateRe2(t.value.exp);
    } catch (e) {
      return void problems.push(`${at}.regexp.exp: ${(e as Error).message}`);
    }
    // The URL template must make a URL whatever the groups hold: try it with a sample for each.
    const sample = Object.assign(["x"], { index: 0, input: "x", groups: Object.fromEntries(groupNames(re).map((g) => [g, "x"])) }) as unknown as RegExpExecArray;
    if (!isKedgeUrl(expandTemplate(t.value.url, sample))) problems.push(`${at}.regexp.url: "${t.value.url}" does not make an http(s) URL`);
  });
  return problems;
}

function present(problems: (string | undefined)[]): string[] {
  return problems.filter((p): p is string => !!p);
}

function isDirectory(path: string): boolean {
  return statSync(path, { throwIfNoEntry: false })?.isDirectory() ?? false;
}

function groupNames(re: RegExp): string[] {
  return [...re.source.matchAll(/\(\?<([A-Za-z_][A-Za-z0-9_]*)>/g)].map((m) => m[1]);
}

function isKedgeUrl(text: string): boolean {
  if (!URL.canParse(text)) return false;
  const url = new URL(text);
  return url.protocol === "https:" || url.protocol === "http:";
}
