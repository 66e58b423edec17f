import { afterEach, beforeAll, describe, expect, it } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureBinary, healthy, runBinary, waitFor, type Running } from "./helpers/binary.ts";
import { rawHttp } from "./helpers/raw-http.ts";

// Log rotation of the audit file with the compiled binary: rename it, send SIGUSR1, and the next
// lines go to a new file at the path, from a single kedge and from every worker of a supervisor.

const dir = mkdtempSync(join(tmpdir(), "kedge-audit-rotate-"));
let running: Running | undefined;
let backend: ReturnType<typeof Bun.serve> | undefined;

beforeAll(() => {
  ensureBinary();
  backend = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("ok\n") });
});

afterEach(async () => {
  running?.proc.kill("SIGTERM");
  await running?.proc.exited;
  running = undefined;
});

const lines = (path: string): Array<Record<string, any>> =>
  existsSync(path) ? readFileSync(path, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l)) : [];

async function start(workers: number, auditFile: string): Promise<{ http: number; proc: Running }> {
  const configFile = join(dir, `config-${workers}.json`);
  writeFileSync(
    configFile,
    JSON.stringify({
      server: { bind_address: "127.0.0.1", http_port: 0, admin_port: 0, workers, log_level: "info" },
      auth: { bearer_token: "rotate-secret" },
      observability: { audit_log: { enabled: true, path: auditFile } },
      http: { backends: [{ name: "app", static: { addresses: [`127.0.0.1:${backend!.port}`] } }], routes: [{ backend_name: "app" }] },
    }),
  );
  const proc = runBinary(["--config", configFile], dir);
  running = proc;
  await waitFor(() => /listening: .*admin=\d+/.test(proc.stdout()), "kedge to listen", proc);
  const port = (n: string) => Number(new RegExp(`${n}=(\\d+)`).exec(proc.stdout())![1]);
  await waitFor(healthy(port("admin")), "kedge to become healthy", proc);
  return { http: port("http"), proc };
}

/** A denied request (no token) on a connection of its own, so the kernel picks its worker. */
const denied = (port: number, id: string) => rawHttp(port, `GET / HTTP/1.1\r\nHost: x\r\nx-kedge-request-id: ${id}\r\nConnection: close\r\n\r\n`);

for (const workers of [1, 2]) {
  describe(`audit log rotation (workers: ${workers})`, () => {
    it("writes to a fresh file after a rename and SIGUSR1", async () => {
      const auditFile = join(dir, `audit-${workers}.jsonl`);
      const rotated = `${auditFile}.1`;
      const { http, proc } = await start(workers, auditFile);
      expect((await denied(http, "before")).status).toBe(401);
      await waitFor(() => lines(auditFile).some((l) => l.request_id === "before"), "the line before rotation", proc);
      renameSync(auditFile, rotated);
      proc.proc.kill("SIGUSR1");
      // Said once every process has the new file open (a supervisor: once every worker answered).
      await waitFor(() => proc.stderr().includes("audit log file reopened"), "the audit log to be reopened", proc);
      await waitFor(() => existsSync(auditFile), "a new audit file", proc);
      expect(statSync(auditFile).mode & 0o777).toBe(0o600);
      // Until every worker has written to the new file (each connection goes to the worker the kernel picks).
      const writers = new Set<unknown>();
      for (let i = 0; writers.size < workers && i < 200; i++) {
        expect((await denied(http, `after-${i}`)).status).toBe(401);
        await waitFor(() => lines(auditFile).some((l) => l.request_id === `after-${i}`), `the line of after-${i}`, proc);
        writers.add(lines(auditFile).find((l) => l.request_id === `after-${i}`)!.worker);
      }
      expect(writers.size).toBe(workers);
      expect(lines(rotated).map((l) => l.request_id)).toEqual(["before"]);
      expect(lines(auditFile).every((l) => l.audit === true && l.decision === "deny" && l.reason === "unauthorized")).toBe(true);
      expect(readFileSync(auditFile, "utf8")).not.toContain("rotate-secret");
      expect(proc.proc.exitCode).toBeNull();
    });
  });
}
