import { watch, type FSWatcher } from "node:fs";
import { basename, dirname, resolve } from "node:path";
import type { Config } from "../gen/kedge/config/v1/config_pb.js";
import { configFiles, type ConfigSources } from "./load.js";

/** The files a reload re-reads: the config files, and the cert, token and JWKS files (cert-manager and friends rotate them in place). */
export function watchedFiles(sources: ConfigSources, config: Config): string[] {
  const server = config.server;
  return [
    ...configFiles(sources),
    server?.tlsCertFile ?? "",
    server?.tlsKeyFile ?? "",
    ...(server?.tlsClientCaFiles ?? []),
    config.auth?.bearerTokenFile ?? "",
    config.auth?.oidc?.jwksFile ?? "",
  ].filter(Boolean);
}

/**
 * Watches the directories, not the files: editors and Kubernetes ConfigMaps replace files by
 * rename, which a watch on the old inode never reports. Changes are debounced.
 */
export function watchConfigFiles(files: string[], onChange: () => void): FSWatcher[] {
  let timer: Timer | undefined;
  const names = new Set(files.map((f) => basename(f)));
  const dirs = new Set(files.map((f) => dirname(resolve(f))));
  return [...dirs].map((dir) =>
    watch(dir, (_event, name) => {
      if (name && !names.has(String(name)) && !String(name).startsWith("..")) return;
      clearTimeout(timer);
      timer = setTimeout(onChange, 200);
    }),
  );
}
