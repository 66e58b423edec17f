import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError } from "../../src/config/error.ts";
import { loadConfig } from "../../src/config/load.ts";

const dir = mkdtempSync(join(tmpdir(), "kedge-config-problems-"));
let n = 0;

/** The problems kedge's config loader reports for `config` written as a JSON file; [] when it loads. */
export function configProblems(config: unknown): string[] {
  const path = join(dir, `config-${n++}.json`);
  writeFileSync(path, JSON.stringify(config));
  try {
    loadConfig({ configFile: path });
  } catch (e) {
    if (e instanceof ConfigError) return [...e.problems];
    throw e;
  }
  return [];
}
