import { afterAll, afterEach, beforeAll, describe, expect, it } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureBinary, healthy, runBinary, waitFor, type Running } from "./helpers/binary.ts";
import { rawHttp } from "./helpers/raw-http.ts";

// kedge with `workers: 2` (this machine has two cores): one supervisor owning the admin port and
// the config, two worker processes serving the data port with SO_REUSEPORT. Every request here
// opens its own connection (rawHttp), so the kernel's spread across the workers' sockets decides
// which worker answers.

const dir = mkdtempSync(join(tmpdir(), "kedge-workers-"));
let backends: Array<ReturnType<typeof Bun.serve>> = [];
let running: Running | undefined;

/** A backend answering its name; /slow?ms=N answers after N ms. */
function startBackend(name: string): ReturnType<typeof Bun.serve> {
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      const url = new URL(req.url);
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
