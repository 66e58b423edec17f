import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startKedge, type KedgeServer } from "../../src/server/kedge.ts";

export interface TestKedge extends KedgeServer {
  configFile: string;
  /** Rewrites the config file (the test then calls reload() or waits for the file watch). */
  writeConfig(config: unknown): void;
  url(path?: string, listener?: "http" | "tls"): string;
}

/** Starts kedge in this process on port 0 listeners from a config object written to a temp file. */
export async function startTestKedge(config: Record<string, unknown>, options: { watchFiles?: boolean } = {}): Promise<TestKedge> {
  const dir = mkdtempSync(join(tmpdir(), "kedge-test-"));
  const configFile = join(dir, "config.json");
  writeFileSync(configFile, JSON.stringify(config, null, 2));
  const server = await startKedge({ configFile }, options);
  return Object.assign(server, {
    configFile,
    writeConfig: (c: unknown) => writeFileSync(configFile, JSON.stringify(c, null, 2)),
    url: (path = "/", listener: "http" | "tls" = "http") =>
      listener === "tls" ? `https://localhost:${server.ports.tls}${path}` : `http://127.0.0.1:${server.ports.http}${path}`,
  });
}

export const plainServer = { bind_address: "127.0.0.1", http_port: 0, admin_port: 0, log_level: "error" };
