import type { FSWatcher } from "node:fs";
import type { WinchConfig } from "../gen/kedge/winch/v1/winch_pb.js";
import { ConfigError } from "../config/error.js";
import { watchConfigFiles } from "../config/watch.js";
import { log } from "../observe/log.js";
import { loadWinchConfig, winchConfigFiles, type WinchSources } from "./config.js";
import type { Winch } from "./winch.js";

/** Reads winch's config files again and serves them; a bad config is rejected, logged with its field paths, and the old one keeps serving. */
export function reloadWinch(winch: Winch, sources: WinchSources): ConfigError | undefined {
  let next: WinchConfig;
  try {
    next = loadWinchConfig(sources);
  } catch (e) {
    const err = e instanceof ConfigError ? e : new ConfigError([(e as Error).message]);
    log.error("winch config rejected; the previous config keeps serving", { problems: err.problems });
    return err;
  }
  return winch.reload(next);
}

/** Reloads winch when its config files change, or the TLS files the running config names (rotated in place). */
export function watchWinchFiles(winch: Winch, sources: WinchSources, config: WinchConfig): FSWatcher[] {
  const server = config.server;
  const files = [...winchConfigFiles(sources), ...(server?.caFiles ?? []), server?.clientCertFile ?? "", server?.clientKeyFile ?? ""].filter(Boolean);
  return watchConfigFiles(files, () => void reloadWinch(winch, sources));
}
