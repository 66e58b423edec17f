import { beforeAll, describe, expect, it } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startDemoBackend } from "../src/demo/backend.ts";
import { makeTestPki, type TestPki } from "./helpers/certs.ts";
import { curl } from "./helpers/curl.ts";
import { binary, ensureBinary, healthy, referenceConfigs, runBinary, waitFor } from "./helpers/binary.ts";

let pki: TestPki;
const dir = mkdtempSync(join(tmpdir(), "kedge-bin-"));
const reference = referenceConfigs;
const run = (args: string[]) => runBinary(args, dir);

beforeAll(() => {
  ensureBinary();
  pki = makeTestPki();
});

describe("the compiled binary", () => {
  it("prints its version", () => {
    const r = Bun.spawnSync([binary, "version"], { env: { PATH: "/usr/bin:/bin" } });
    expect(r.exitCode).toBe(0);
    expect(r.stdout.toString()).toMatch(/^kedge \d+\.\d+\.\d+/);
  });

  it("validates configs: exit 0 when valid, 1 with the field path when not", () => {
    const good = Bun.spawnSync([binary, "validate", "--director-config", join(reference, "director.json"), "--backendpool-config", join(reference, "backendpool.json")]);
    expect(good.exitCode).toBe(0);
    const bad = join(dir, "bad.json");
    writeFileSync(bad, JSON.stringify({ http: { routes: [{ backend_name: "missing" }] } }));
    const r = Bun.spawnSync([binary, "validate", "--config", bad]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr.toString()).toContain('http.routes[0].backend_name: unknown backend "missing"');
  });

  it("validate refuses kedge Go's flags opening the proxy beyond loopback without an authenticator, unless --allow_unauthenticated", () => {
    const goFlags = [
      "validate", "--kedge_config_director_config_path", join(reference, "director.json"),
      "--kedge_config_backendpool_config_path", join(reference, "backendpool.json"),
      "--server_http_tls_port=8443", "--server_tls_cert_file", pki.serverCertFile, "--server_tls_key_file", pki.serverKeyFile,
    ];
    const open = Bun.spawnSync([binary, ...goFlags]);
    expect(open.exitCode).toBe(1);
    expect(open.stderr.toString()).toContain("server.http_tls_port: 0.0.0.0:8443 is reachable beyond loopback with no authenticator");
    expect(open.stderr.toString()).toContain("set auth.allow_unauthenticated: true (flag --allow_unauthenticated)");
    expect(Bun.spawnSync([binary, ...goFlags, "--allow_unauthenticated"]).exitCode).toBe(0);
    expect(Bun.spawnSync([binary, ...goFlags, "--server_tls_client_ca_files", pki.caFile, "--server_tls_client_cert_required"]).exitCode).toBe(0);
    expect(Bun.spawnSync([binary, ...goFlags, "--unsafe_bearer_token_proxy_auth", "secret-bearer-token"]).exitCode).toBe(0);
  });

  it("refuses a bad winch config with its field path", () => {
    const bad = join(dir, "bad-winch.json");
    writeFileSync(bad, JSON.stringify({ routes: [{ regexp: { exp: "^(?P<c>x", url: "https://${c}" } }] }));
    const r = Bun.spawnSync([binary, "winch", "--config", bad]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr.toString()).toContain("routes[0].regexp.exp:");
  });

  it("serves kedge Go's reference configs with kedge Go's flag names", async () => {
    const backend = startDemoBackend(18270);
    const k = run([
      "--kedge_config_director_config_path", join(reference, "director.json"),
      "--kedge_config_backendpool_config_path", join(reference, "backendpool.json"),
      "--server_http_tls_port=0", "--server_http_port", "18170", "--server_bind_address", "127.0.0.1",
      "--server_tls_cert_file", pki.serverCertFile, "--server_tls_key_file", pki.serverKeyFile, "--log_level", "warn",
    ]);
    try {
      await waitFor(healthy(18170), "kedge to become healthy", k);
      const port = Number(/tls=(\d+)/.exec(k.stdout())![1]);
      // The cert names localhost; the route matches the Host header, as behind winch.
      const r = await curl([
        "--cacert", pki.caFile, "-H", "Host: test_endpoint.localhost.internal.example.com:18270",
        `https://localhost:${port}/?name=kedge`,
      ]);
      expect(r.body).toBe("Hello kedge!\n");
      expect(r.headers["x-kedge-backend-name"]).toBe("test_endpoint");
    } finally {
      k.proc.kill("SIGKILL");
      backend.stop();
    }
  });

  it("runs the embedded demo config and the curl command it prints works", async () => {
    const k = run([]);
    try {
      await waitFor(() => k.stdout().includes("curl"), "the printed curl command", k);
      const command = /curl .*$/m.exec(k.stdout())![0];
      const r = Bun.spawnSync(["sh", "-c", command]);
      expect(r.stdout.toString()).toBe("Hello kedge!\n");
    } finally {
      k.proc.kill("SIGKILL");
    }
  });

  it("reloads on SIGHUP and drains in-flight requests on SIGTERM", async () => {
    const backend = startDemoBackend(0);
    const slow = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch: async () => {
        await Bun.sleep(400);
        return new Response("slow done");
      },
    });
    const config = join(dir, "sighup.json");
    const write = (port: number) =>
      writeFileSync(config, JSON.stringify({
        server: { bind_address: "127.0.0.1", http_port: 0, admin_port: 0, log_level: "info" },
        http: { backends: [{ name: "web", static: { addresses: [`127.0.0.1:${port}`] } }], routes: [{ backend_name: "web" }] },
      }));
    write(backend.port);
    const k = run(["--config", config]);
    try {
      await waitFor(() => /http=\d+/.test(k.stdout()), "kedge to listen", k);
      const port = Number(/http=(\d+)/.exec(k.stdout())![1]);
      expect(await (await fetch(`http://127.0.0.1:${port}/?name=a`)).text()).toBe("Hello a!\n");
      write(slow.port!);
      k.proc.kill("SIGHUP");
      await waitFor(() => k.stderr().includes("config reloaded"), "the SIGHUP reload", k);
      const inflight = fetch(`http://127.0.0.1:${port}/`);
      await Bun.sleep(100);
      k.proc.kill("SIGTERM");
      const res = await inflight;
      expect(await res.text()).toBe("slow done");
      expect(await k.proc.exited).toBe(0);
    } finally {
      k.proc.kill("SIGKILL");
      backend.stop();
      slow.stop(true);
    }
  });
});

