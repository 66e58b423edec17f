import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureBinary, healthy, runBinary, waitFor, type Running } from "./helpers/binary.ts";
import { makeTestPki } from "./helpers/certs.ts";

// kedge's TLS listeners, and every listener of a worker, bind with SO_REUSEPORT; a second kedge
// started on the same ports would then be handed half the connections without any error. It
// must refuse to start instead, whether it runs as one process or as a supervisor of workers.

const dir = mkdtempSync(join(tmpdir(), "kedge-port-claim-"));
const pki = makeTestPki();
let first: Running | undefined;
let tlsPort = 0;

function config(name: string, workers: number, port: number): string {
  const file = join(dir, `${name}.json`);
  writeFileSync(
    file,
    JSON.stringify({
      server: { bind_address: "127.0.0.1", http_tls_port: port, admin_port: 0, workers, log_level: "info", tls_cert_file: pki.serverCertFile, tls_key_file: pki.serverKeyFile },
      http: { backends: [{ name: "app", static: { addresses: ["127.0.0.1:1"] } }], routes: [{ backend_name: "app" }] },
    }),
  );
  return file;
}

beforeAll(async () => {
  ensureBinary();
  first = runBinary(["--config", config("first", 1, 0)], dir);
  await waitFor(() => /listening: .*admin=\d+/.test(first!.stdout()), "the first kedge to listen", first);
  tlsPort = Number(/\btls=(\d+)/.exec(first.stdout())![1]);
  await waitFor(healthy(Number(/admin=(\d+)/.exec(first.stdout())![1])), "the first kedge to be healthy", first);
});

afterAll(async () => {
  first?.proc.kill("SIGTERM");
  await first?.proc.exited;
});

describe("a second kedge on a TLS port another kedge holds", () => {
  for (const workers of [1, 2]) {
    it(`refuses to start, naming the port (workers: ${workers})`, async () => {
      const second = runBinary(["--config", config(`second-${workers}`, workers, tlsPort)], dir);
      const exited = await Promise.race([second.proc.exited, Bun.sleep(20_000).then(() => "running")]);
      if (exited === "running") second.proc.kill("SIGKILL");
      expect(exited).not.toBe("running");
      expect(exited).not.toBe(0);
      expect(second.stderr()).toBe(`kedge: server.http_tls_port 127.0.0.1:${tlsPort} is in use by another process (another kedge still running?)\n`);
      expect(second.stdout()).not.toContain("listening:");
      expect(first!.proc.exitCode).toBeNull();
    });
  }
});
