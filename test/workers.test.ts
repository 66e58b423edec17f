import { afterAll, afterEach, beforeAll, describe, expect, it } from "bun:test";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureBinary, healthy, runBinary, waitFor, type Running } from "./helpers/binary.ts";
import { makeTestPki } from "./helpers/certs.ts";
import { seriesTotal } from "./helpers/prometheus.ts";
import { rawHttp } from "./helpers/raw-http.ts";

// kedge with `workers: 2` (this machine has two cores): one supervisor owning the admin port and
// the config, two worker processes serving the data port with SO_REUSEPORT. Every request here
// opens its own connection (rawHttp), so the kernel's spread across the workers' sockets decides
// which worker answers.

const dir = mkdtempSync(join(tmpdir(), "kedge-workers-"));
let backends: Array<ReturnType<typeof Bun.serve>> = [];
let running: Running | undefined;

/** Requests that reached a backend's /slow. */
let slowArrivals = 0;

/** A backend answering its name; /slow?ms=N answers after N ms. */
function startBackend(name: string): ReturnType<typeof Bun.serve> {
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      const url = new URL(req.url);
      if (url.pathname === "/slow") slowArrivals++;
      if (url.pathname === "/slow") await Bun.sleep(Number(url.searchParams.get("ms") ?? 1000));
      return new Response(`${name}\n`);
    },
  });
  backends.push(server);
  return server;
}

function config(backend: string, port: number, extra: Record<string, unknown> = {}) {
  return {
    server: { bind_address: "127.0.0.1", http_port: 0, admin_port: 0, workers: 2, log_level: "info", ...extra },
    http: {
      backends: [{ name: backend, static: { addresses: [`127.0.0.1:${port}`] } }],
      routes: [{ backend_name: backend, path_rules: ["/*"] }],
    },
  };
}

interface Kedge {
  proc: Running;
  http: number;
  admin: number;
  configFile: string;
}

async function startKedge(cfg: unknown, name = "config.json"): Promise<Kedge> {
  const configFile = join(dir, name);
  writeFileSync(configFile, JSON.stringify(cfg));
  const proc = runBinary(["--config", configFile], dir);
  running = proc;
  await waitFor(() => /listening: .*admin=\d+/.test(proc.stdout()), "kedge to listen", proc);
  const port = (n: string) => Number(new RegExp(`${n}=(\\d+)`).exec(proc.stdout())![1]);
  const k = { proc, http: port("http"), admin: port("admin"), configFile };
  await waitFor(healthy(k.admin), "kedge to become healthy", proc);
  return k;
}

interface WorkerView {
  id: number;
  pid: number;
  restarts: number;
  acceptedConnections: number;
  configVersion: number;
}

async function workers(k: Kedge): Promise<{ supervisor: { pid: number }; workers: WorkerView[] }> {
  return (await fetch(`http://127.0.0.1:${k.admin}/debug/workers`)).json() as never;
}

const get = (k: Kedge, path = "/") => rawHttp(k.http, `GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);

beforeAll(() => ensureBinary());
afterEach(() => {
  running?.proc.kill("SIGKILL");
  running = undefined;
});
afterAll(() => {
  for (const b of backends) b.stop(true);
  backends = [];
});

describe("kedge workers", () => {
  it("runs one supervisor and two workers, each listening on the data port with SO_REUSEPORT", async () => {
    const a = startBackend("alpha");
    const k = await startKedge(config("alpha", a.port!));
    const view = await workers(k);
    expect(view.supervisor.pid).toBe(k.proc.proc.pid);
    expect(view.workers.map((w) => w.id)).toEqual([1, 2]);
    const pids = view.workers.map((w) => w.pid);
    expect(new Set([k.proc.proc.pid, ...pids]).size).toBe(3);
    // Each worker has its own listening socket on the one port.
    const ss = Bun.spawnSync(["ss", "-tlnpH", `sport = :${k.http}`]).stdout.toString();
    for (const pid of pids) expect(ss).toContain(`pid=${pid},`);
    expect(ss).not.toContain(`pid=${k.proc.proc.pid},`);
  });

  it("spreads 200 connections across both workers", async () => {
    const a = startBackend("alpha");
    const k = await startKedge(config("alpha", a.port!));
    const answers = await Promise.all(Array.from({ length: 200 }, () => get(k)));
    expect(answers.every((r) => r.status === 200 && r.body === "alpha\n")).toBe(true);
    const accepted = (await workers(k)).workers.map((w) => w.acceptedConnections);
    expect(accepted.reduce((x, y) => x + y, 0)).toBe(200);
    // Uniform hashing of 200 connections over two sockets: far from a 10/190 split.
    for (const n of accepted) expect(n).toBeGreaterThanOrEqual(20);
  });
});

/** Fresh-connection requests until `count` in a row satisfy `ok`: enough to reach both workers. */
async function allAnswer(k: Kedge, ok: (r: { status: number; body: string }) => boolean, count = 40): Promise<boolean> {
  const answers = await Promise.all(Array.from({ length: count }, () => get(k).catch(() => ({ status: 0, body: "" }))));
  return answers.every(ok);
}

describe("kedge workers: every data port", () => {
  it("listens on every data port in both workers, and spreads TLS connections across them", async () => {
    const pki = makeTestPki();
    const a = startBackend("alpha");
    const k = await startKedge(
      config("alpha", a.port!, { http_tls_port: 0, grpc_tls_port: 0, h2c_port: 0, tls_cert_file: pki.serverCertFile, tls_key_file: pki.serverKeyFile }),
      "tls.json",
    );
    const port = (n: string) => Number(new RegExp(`${n}=(\\d+)`).exec(k.proc.stdout())![1]);
    const ss = Bun.spawnSync(["ss", "-tlnpH"]).stdout.toString();
    const pids = (await workers(k)).workers.map((w) => w.pid);
    for (const listener of ["tls", "grpc_tls", "h2c", "http"]) {
      const lines = ss.split("\n").filter((l) => l.includes(`127.0.0.1:${port(listener)} `));
      expect(lines.length).toBe(2);
      for (const pid of pids) expect(lines.some((l) => l.includes(`pid=${pid},`))).toBe(true);
    }
    const ca = readFileSync(pki.caFile, "utf8");
    const answers = await Promise.all(
      Array.from({ length: 60 }, () => fetch(`https://localhost:${port("tls")}/`, { tls: { ca }, keepalive: false, headers: { connection: "close" } }).then((r) => r.text())),
    );
    expect(answers.every((b) => b === "alpha\n")).toBe(true);
    const accepted = (await workers(k)).workers.map((w) => w.acceptedConnections);
    for (const n of accepted) expect(n).toBeGreaterThan(0);
  });
});

describe("kedge workers: restart, drain and reload", () => {
  it("restarts a killed worker while the other keeps serving, and counts it", async () => {
    const a = startBackend("alpha");
    const k = await startKedge(config("alpha", a.port!));
    const before = (await workers(k)).workers;
    process.kill(before[0].pid, "SIGKILL");
    const gone = () => {
      try {
        process.kill(before[0].pid, 0);
        return false;
      } catch {
        return true;
      }
    };
    await waitFor(gone, "worker 1 to be gone", k.proc);
    // Requests go on succeeding: the survivor's socket takes every new connection. (Connections
    // the kernel had queued on the killed worker's socket are lost with it: SO_REUSEPORT's limit.)
    for (let i = 0; i < 5; i++) expect(await allAnswer(k, (r) => r.status === 200, 20)).toBe(true);
    await waitFor(async () => (await workers(k)).workers.length === 2, "worker 1 to be back", k.proc);
    const after = (await workers(k)).workers;
    expect(after.find((w) => w.id === 1)!.pid).not.toBe(before[0].pid);
    expect(after.find((w) => w.id === 1)!.restarts).toBe(1);
    expect(after.find((w) => w.id === 2)!.pid).toBe(before[1].pid);
    const metrics = await (await fetch(`http://127.0.0.1:${k.admin}/metrics`)).text();
    expect(metrics).toContain("kedge_worker_restarts_total 1\n");
    expect(metrics).toContain("kedge_workers 2\n");
    expect(k.proc.stderr()).toContain('"msg":"worker exited: restarting it","worker":1');
    expect(await allAnswer(k, (r) => r.status === 200)).toBe(true);
  });

  it("is not ready while no worker serves, restarts with growing backoff, and its merged counters never go back", async () => {
    const a = startBackend("alpha");
    const k = await startKedge(config("alpha", a.port!));
    const admin = (path: string) => fetch(`http://127.0.0.1:${k.admin}${path}`);
    const requests = async () => seriesTotal(await (await admin("/metrics")).text(), "kedge_http_requests_total");
    expect(await allAnswer(k, (r) => r.status === 200, 30)).toBe(true);
    // This scrape is each worker's last before it dies: the total may not drop below it.
    expect(await requests()).toBe(30);
    const first = (await workers(k)).workers;
    for (const w of first) process.kill(w.pid, "SIGKILL");
    // Both are gone until their restart (100 ms on, then the start itself): readiness says so.
    let notReady: { status: number; body: string } | undefined;
    await waitFor(async () => {
      const res = await admin("/_healthz");
      notReady = { status: res.status, body: await res.text() };
      return res.status === 503;
    }, "/_healthz to report no worker", k.proc);
    expect(notReady).toEqual({ status: 503, body: "no worker serving\n" });
    expect(await requests()).toBe(30);
    await waitFor(healthy(k.admin), "a worker to serve again", k.proc);
    await waitFor(async () => (await workers(k)).workers.length === 2, "both workers back", k.proc);
    // The restarted processes count from zero; the dead ones' counts stay in the sum.
    expect(await requests()).toBe(30);
    expect(await allAnswer(k, (r) => r.status === 200, 10)).toBe(true);
    expect(await requests()).toBe(40);
    // Worker 1 dies again soon after its restart: it waits twice as long this time.
    process.kill((await workers(k)).workers.find((w) => w.id === 1)!.pid, "SIGKILL");
    await waitFor(() => k.proc.stderr().includes('"worker":1,') && /"worker":1,[^\n]*"restartInMs":200/.test(k.proc.stderr()), "the second restart of worker 1", k.proc);
    expect(k.proc.stderr()).toMatch(/"msg":"worker exited: restarting it","worker":1,[^\n]*"restartInMs":100/);
    await waitFor(async () => (await workers(k)).workers.length === 2, "worker 1 back again", k.proc);
    expect(await requests()).toBe(40);
  });

  it("drains in-flight requests on every worker and every port (HTTP/1.1, h2c, TLS h2) on SIGTERM, then exits 0", async () => {
    const pki = makeTestPki();
    const a = startBackend("alpha");
    const k = await startKedge(
      config("alpha", a.port!, { graceful_shutdown: "10s", h2c_port: 0, http_tls_port: 0, tls_cert_file: pki.serverCertFile, tls_key_file: pki.serverKeyFile }),
      "drain.json",
    );
    const port = (n: string) => Number(new RegExp(`${n}=(\\d+)`).exec(k.proc.stdout())![1]);
    /** curl over HTTP/2, a connection each: its status code. */
    const curl = async (args: string[]) => {
      const p = Bun.spawn(["curl", "-s", "-o", "/dev/null", "-w", "%{http_version} %{http_code}", ...args], { stdout: "pipe", stderr: "pipe" });
      const out = await new Response(p.stdout).text();
      await p.exited;
      return out;
    };
    slowArrivals = 0;
    const h1 = Array.from({ length: 8 }, () => get(k, "/slow?ms=1500"));
    const h2c = Array.from({ length: 8 }, () => curl(["--http2-prior-knowledge", `http://127.0.0.1:${port("h2c")}/slow?ms=1500`]));
    const tls = Array.from({ length: 8 }, () => curl(["--http2", "--cacert", pki.caFile, `https://localhost:${port("tls")}/slow?ms=1500`]));
    // All 24 in flight (a connection still in a worker's accept queue is not in flight yet), on both workers.
    await waitFor(() => slowArrivals === 24, "24 requests at the backend", k.proc);
    expect((await workers(k)).workers.every((w) => w.acceptedConnections > 0)).toBe(true);
    const started = performance.now();
    k.proc.proc.kill("SIGTERM");
    const answers = await Promise.all(h1);
    expect(answers.map((r) => r.status)).toEqual(Array(8).fill(200));
    expect(await Promise.all([...h2c, ...tls])).toEqual(Array(16).fill("2 200"));
    expect(await k.proc.proc.exited).toBe(0);
    expect(performance.now() - started).toBeLessThan(8000);
    // Both workers drained (each logs its own shutdown).
    expect(k.proc.stderr()).toContain('"msg":"shutting down: draining in-flight requests","worker":1,"reason":"SIGTERM"');
    expect(k.proc.stderr()).toContain('"msg":"shutting down: draining in-flight requests","worker":2,"reason":"SIGTERM"');
  });

  it("applies a changed config file on every worker, validated once", async () => {
    const a = startBackend("alpha");
    const b = startBackend("bravo");
    const k = await startKedge(config("alpha", a.port!), "reload.json");
    writeFileSync(k.configFile, JSON.stringify(config("bravo", b.port!)));
    await waitFor(() => allAnswer(k, (r) => r.body === "bravo\n"), "every worker to serve the new route", k.proc);
    expect((await workers(k)).workers.map((w) => w.configVersion)).toEqual([2, 2]);
    // The ports worker 1 bound for port 0 are no listener change.
    expect(k.proc.stderr()).not.toContain("listener changes");
    const version = (await (await fetch(`http://127.0.0.1:${k.admin}/_version`)).json()) as { configVersion: number };
    expect(version.configVersion).toBe(2);
  });

  it("lives through a SIGHUP sent while its workers start, and reloads once they serve", async () => {
    const a = startBackend("alpha");
    const b = startBackend("bravo");
    const configFile = join(dir, "early-hup.json");
    writeFileSync(configFile, JSON.stringify(config("alpha", a.port!)));
    const proc = runBinary(["--config", configFile], dir);
    running = proc;
    // Worker 1 serves before the others start: the supervisor is halfway through starting. The
    // file changes then, and a reloader signals it (the default action of SIGHUP ends a process).
    await waitFor(() => proc.stderr().includes('"msg":"worker serving","worker":1'), "worker 1 to serve", proc);
    writeFileSync(configFile, JSON.stringify(config("bravo", b.port!)));
    proc.proc.kill("SIGHUP");
    await waitFor(() => /listening: .*admin=\d+/.test(proc.stdout()), "kedge to listen", proc);
    const port = (n: string) => Number(new RegExp(`${n}=(\\d+)`).exec(proc.stdout())![1]);
    const k = { proc, http: port("http"), admin: port("admin"), configFile };
    await waitFor(() => allAnswer(k, (r) => r.body === "bravo\n"), "every worker to serve the new route", proc);
    expect(proc.proc.exitCode).toBeNull();
    expect(proc.stderr().split('"msg":"config reloaded"').length - 1).toBe(1);
  });

  it("rotates the certificate on every worker when its files are rewritten in place", async () => {
    const [first, second] = [makeTestPki(), makeTestPki()];
    const a = startBackend("alpha");
    const cert = join(dir, "rotating.pem");
    const key = join(dir, "rotating.key");
    writeFileSync(cert, readFileSync(first.serverCertFile));
    writeFileSync(key, readFileSync(first.serverKeyFile));
    const k = await startKedge(config("alpha", a.port!, { http_tls_port: 0, tls_cert_file: cert, tls_key_file: key }), "rotation.json");
    const tlsPort = Number(/tls=(\d+)/.exec(k.proc.stdout())![1]);
    /** 20 handshakes, a connection each, trusting only `ca`: how many succeeded. */
    const trusted = async (ca: string) => {
      const answers = await Promise.all(
        Array.from({ length: 20 }, () =>
          fetch(`https://localhost:${tlsPort}/`, { tls: { ca }, keepalive: false, headers: { connection: "close" } }).then(
            (r) => r.status,
            () => 0,
          ),
        ),
      );
      return answers.filter((s) => s === 200).length;
    };
    const [firstCa, secondCa] = [readFileSync(first.caFile, "utf8"), readFileSync(second.caFile, "utf8")];
    expect(await trusted(firstCa)).toBe(20);
    const accepted = (await workers(k)).workers.map((w) => w.acceptedConnections);
    // cert-manager's way: the same paths, new contents.
    writeFileSync(key, readFileSync(second.serverKeyFile));
    writeFileSync(cert, readFileSync(second.serverCertFile));
    await waitFor(async () => (await trusted(secondCa)) === 20, "every handshake to show the new certificate", k.proc);
    expect(await trusted(firstCa)).toBe(0);
    // Both workers took part: each accepted some of the handshakes since.
    const after = (await workers(k)).workers.map((w) => w.acceptedConnections);
    for (let i = 0; i < after.length; i++) expect(after[i]).toBeGreaterThan(accepted[i]);
  });

  it("rejects a bad config once, with one log line, and every worker keeps the old one", async () => {
    const a = startBackend("alpha");
    const k = await startKedge(config("alpha", a.port!), "bad-reload.json");
    const bad = config("alpha", a.port!);
    bad.http.routes[0].backend_name = "missing";
    writeFileSync(k.configFile, JSON.stringify(bad));
    await waitFor(() => k.proc.stderr().includes("config rejected"), "the rejection", k.proc);
    k.proc.proc.kill("SIGHUP");
    await waitFor(() => k.proc.stderr().split("config rejected").length === 3, "the second rejection", k.proc);
    await Bun.sleep(300);
    const lines = k.proc.stderr().split("\n").filter((l) => l.includes("config rejected"));
    // One line per reload (the file change, then SIGHUP), from the supervisor, naming the field.
    expect(lines.length).toBe(2);
    for (const line of lines) expect(line).toContain('http.routes[0].backend_name: unknown backend \\"missing\\"');
    expect(await allAnswer(k, (r) => r.body === "alpha\n")).toBe(true);
    expect((await workers(k)).workers.map((w) => w.configVersion)).toEqual([1, 1]);
  });

  it("reloads once and ends no worker when every kedge process gets SIGHUP (pkill -HUP kedge)", async () => {
    const a = startBackend("alpha");
    const k = await startKedge(config("alpha", a.port!), "hup-all.json");
    const before = (await workers(k)).workers.map((w) => w.pid);
    for (const pid of [k.proc.proc.pid, ...before]) process.kill(pid, "SIGHUP");
    // The supervisor's line (a worker's carries "worker" first, and is at debug level).
    const reloads = () => k.proc.stderr().split('"msg":"config reloaded","version"').length - 1;
    await waitFor(() => reloads() === 1, "the supervisor's reload", k.proc);
    await Bun.sleep(300);
    expect(reloads()).toBe(1);
    expect((await workers(k)).workers).toMatchObject([{ pid: before[0], configVersion: 2 }, { pid: before[1], configVersion: 2 }]);
    expect(k.proc.stderr()).not.toContain("worker exited");
    expect(await allAnswer(k, (r) => r.body === "alpha\n")).toBe(true);
  });

  it("drains and ends its workers when the supervisor dies", async () => {
    const a = startBackend("alpha");
    const k = await startKedge(config("alpha", a.port!), "orphans.json");
    const pids = (await workers(k)).workers.map((w) => w.pid);
    k.proc.proc.kill("SIGKILL");
    const alive = (pid: number) => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    };
    await waitFor(() => !pids.some(alive), "the workers to exit");
  });

  it("exits 1 naming the port when another process holds it, before any worker binds it with SO_REUSEPORT", async () => {
    const taken = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    try {
      const a = startBackend("alpha");
      const configFile = join(dir, "taken.json");
      writeFileSync(configFile, JSON.stringify(config("alpha", a.port!, { http_port: taken.port })));
      const proc = runBinary(["--config", configFile], dir);
      expect(await proc.proc.exited).toBe(1);
      expect(proc.stdout()).not.toContain("listening");
      // One line an operator reads, no stack trace.
      expect(proc.stderr()).toBe(`kedge: server.http_port 127.0.0.1:${taken.port} is in use by another process (another kedge still running?)\n`);
    } finally {
      taken.stop(true);
    }
  });

  it("exits 1 naming the worker and the cause when a worker cannot bind", async () => {
    // 192.0.2.1 (TEST-NET-1) is no address of this host: the claim leaves that to the worker's bind.
    const a = startBackend("alpha");
    const configFile = join(dir, "unbindable.json");
    const unbindable = config("alpha", a.port!, { bind_address: "192.0.2.1", http_port: 41_899 });
    writeFileSync(configFile, JSON.stringify({ ...unbindable, auth: { allow_unauthenticated: true } }));
    const proc = runBinary(["--config", configFile], dir);
    expect(await proc.proc.exited).toBe(1);
    expect(proc.stdout()).not.toContain("listening");
    expect(proc.stderr()).toMatch(/worker 1 \(pid \d+\) did not start: Failed to listen at 192\.0\.2\.1/);
    expect(proc.stderr()).not.toContain("    at ");
  });

  it("stays one process with workers: 1", async () => {
    const a = startBackend("alpha");
    const k = await startKedge(config("alpha", a.port!, { workers: 1 }), "one.json");
    expect(await allAnswer(k, (r) => r.body === "alpha\n", 10)).toBe(true);
    expect((await fetch(`http://127.0.0.1:${k.admin}/debug/workers`)).status).toBe(404);
    const children = Bun.spawnSync(["pgrep", "-P", String(k.proc.proc.pid)]).stdout.toString().trim();
    expect(children).toBe("");
  });
});

