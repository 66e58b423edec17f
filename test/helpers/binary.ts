import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";

export const root = join(import.meta.dir, "../..");
export const binary = join(root, "dist/kedge");
export { referenceConfigs } from "./reference.ts";

/** The newest modification time of the files under `dir`. */
function newestUnder(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) newest = Math.max(newest, statSync(join(entry.parentPath, entry.name)).mtimeMs);
  }
  return newest;
}

/**
 * Builds dist/kedge when it is missing or older than src/ (npm test builds it first). A test file
 * run alone after a change to src/ must not exercise the binary built before the change.
 */
export function ensureBinary(): void {
  if (existsSync(binary) && statSync(binary).mtimeMs >= newestUnder(join(root, "src"))) return;
  const build = Bun.spawnSync(["npm", "run", "build"], { cwd: root, stdout: "inherit", stderr: "inherit" });
  if (build.exitCode !== 0) throw new Error("npm run build failed");
}

export interface Running {
  proc: ReturnType<typeof Bun.spawn>;
  stdout: () => string;
  stderr: () => string;
}

/** Runs dist/kedge with a minimal environment (no bun or node on PATH) and collects its output. */
export function runBinary(args: string[], home: string, env: Record<string, string> = {}): Running {
  const proc = Bun.spawn([binary, ...args], { stdout: "pipe", stderr: "pipe", env: { PATH: "/usr/bin:/bin", HOME: home, ...env } });
  let out = "";
  let err = "";
  const dec = new TextDecoder();
  void (async () => {
    for await (const c of proc.stdout as ReadableStream<Uint8Array>) out += dec.decode(c);
  })();
  void (async () => {
    for await (const c of proc.stderr as ReadableStream<Uint8Array>) err += dec.decode(c);
  })();
  return { proc, stdout: () => out, stderr: () => err };
}

/** Polls until `cond` holds; the error carries the process's output. */
export async function waitFor(cond: () => boolean | Promise<boolean>, what: string, proc?: Running): Promise<void> {
  for (let i = 0; i < 300; i++) {
    if (await cond()) return;
    await Bun.sleep(20);
  }
  throw new Error(`timed out waiting for ${what}${proc ? `\nstdout: ${proc.stdout()}\nstderr: ${proc.stderr()}` : ""}`);
}

/** The ports a kedge binary reports on its "listening: http=… tls=… admin=…" line; undefined until it has. */
export function listeningPorts(stdout: string): Record<string, number> | undefined {
  const line = /listening: (.*)/.exec(stdout)?.[1];
  if (!line) return undefined;
  return Object.fromEntries(line.trim().split(" ").map((kv) => kv.split("=")).map(([k, v]) => [k, Number(v)]));
}

export const healthy = (port: number) => async () => (await fetch(`http://127.0.0.1:${port}/_healthz`).catch(() => undefined))?.status === 200;
