import { statSync } from "node:fs";
import { dirname } from "node:path";
import { WinchConfigSchema, type WinchConfig } from "../gen/kedge/winch/v1/winch_pb.js";
import { fileProblem, keyPairProblems } from "../config/files.js";
import { configError, mergeConfigParts, readConfigFiles } from "../config/load.js";
import { templateGroups } from "../router/expand.js";
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
    const t = r.type;
    let re: RegExp | undefined;
    if (t.case === undefined) problems.push(`${at}: set direct or regexp`);
    else if (t.case === "direct") {
      if (!t.value.key) problems.push(`${at}.direct.key: required`);
      if (!isKedgeUrl(t.value.url)) problems.push(`${at}.direct.url: "${t.value.url}" is not an http(s) URL`);
    } else {
      try {
        re = translateRe2(t.value.exp);
      } catch (e) {
        problems.push(`${at}.regexp.exp: ${(e as Error).message}`);
      }
    }
    const groups = re && new Set(groupNames(re));
    if (re && t.case === "regexp") {
      // The URL template must make a URL whatever the groups hold: try it with a sample for each
      // ("1" fits a host name and a port alike).
      if (!isKedgeUrl(expandTemplate(t.value.url, sampleMatch(groups!, "1")))) problems.push(`${at}.regexp.url: "${t.value.url}" does not make an http(s) URL`);
    }
    // backend_auth, proxy_auth and client_tls's files may hold ${group} in a regexp route: check the groups exist.
    const templated = (field: string, value: string): boolean => {
      if (!value.includes("$")) return false;
      if (t.case !== "regexp") problems.push(`${at}.${field}: "${value}" holds \${…}, which only a regexp route fills`);
      else if (groups) {
        const unknown = templateGroups(value).filter((g) => !groups.has(g));
        if (unknown.length > 0) problems.push(`${at}.${field}: "${value}" names ${unknown.map((g) => `\${${g}}`).join(", ")}, which ${at}.regexp.exp does not capture (it captures ${[...groups].filter((g) => !/^[0-9]+$/.test(g)).join(", ") || "no named group"})`);
      }
      return true;
    };
    for (const [field, name] of [["backend_auth", r.backendAuth], ["proxy_auth", r.proxyAuth]] as const) {
      if (!name) continue;
      if (!templated(field, name)) {
        if (!names.has(name)) problems.push(`${at}.${field}: unknown auth source "${name}"`);
      } else if (groups && ![...names.keys()].some((n) => templateMatcher(name, groups).test(n))) {
        problems.push(`${at}.${field}: no auth source has a name "${name}" could make`);
      }
    }
    const tls = r.clientTls;
    if (tls) {
      if (!tls.certFile || !tls.keyFile) problems.push(`${at}.client_tls: cert_file and key_file go together`);
      const certTemplated = tls.certFile ? templated("client_tls.cert_file", tls.certFile) : false;
      const keyTemplated = tls.keyFile ? templated("client_tls.key_file", tls.keyFile) : false;
      // Templated files are per cluster and read when a request first needs them; fixed ones are checked now.
      if (!certTemplated && !keyTemplated) problems.push(...keyPairProblems(`${at}.client_tls`, "cert_file", tls.certFile, "key_file", tls.keyFile));
      else if (!certTemplated && tls.certFile) problems.push(...present([fileProblem(`${at}.client_tls.cert_file`, tls.certFile, "certificate")]));
      else if (!keyTemplated && tls.keyFile) problems.push(...present([fileProblem(`${at}.client_tls.key_file`, tls.keyFile, "private-key")]));
    }
  });
  return problems;
}

function present(problems: (string | undefined)[]): string[] {
  return problems.filter((p): p is string => !!p);
}

function isDirectory(path: string): boolean {
  return statSync(path, { throwIfNoEntry: false })?.isDirectory() ?? false;
}

/** The names of re's named groups and the numbers of all its groups ("0" is the whole match). */
function groupNames(re: RegExp): string[] {
  const named = [...re.source.matchAll(/\(\?<([A-Za-z_][A-Za-z0-9_]*)>/g)].map((m) => m[1]);
  // An alternative that matches "" makes exec report every group, so its length counts them.
  const count = new RegExp(`${re.source}|`).exec("")!.length;
  return [...named, ...Array.from({ length: count }, (_, i) => String(i))];
}

/** A match whose every group (named, or numbered as in groupNames) holds `value`, to fill templates with. */
function sampleMatch(groups: ReadonlySet<string>, value: string): RegExpExecArray {
  const numbered = [...groups].filter((g) => /^[0-9]+$/.test(g)).map(() => value);
  const named = Object.fromEntries([...groups].filter((g) => !/^[0-9]+$/.test(g)).map((g) => [g, value]));
  return Object.assign(numbered, { index: 0, input: value, groups: named }) as unknown as RegExpExecArray;
}

/** Matches the names a templated auth source name can fill to: each group stands for any text. */
function templateMatcher(template: string, groups: ReadonlySet<string>): RegExp {
  const filled = expandTemplate(template, sampleMatch(groups, "\0"));
  return new RegExp(`^${filled.split("\0").map((text) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join(".*")}$`, "s");
}

function isKedgeUrl(text: string): boolean {
  if (!URL.canParse(text)) return false;
  const url = new URL(text);
  return url.protocol === "https:" || url.protocol === "http:";
}
