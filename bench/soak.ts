/**
 * Soak test (not part of CI): mixed HTTP and gRPC load through the compiled kedge while backend
 * endpoints churn and the config is rewritten (and reloaded) every RELOAD_EVERY seconds.
 * Pass criteria: zero failed requests, and kedge's RSS flat (last-minute average within 15% of
 * the first minute's after warm-up).
 *
 * Usage: bun bench/soak.ts            SOAK_SECONDS=600 (default) CONCURRENCY=16 RELOAD_EVERY=5
 * Writes bench/results/soak.md. Loopback only.
 */
import * as grpc from "@grpc/grpc-js";
import http from "node:http";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const seconds = Number(process.env.SOAK_SECONDS ?? 600);
const concurrency = Number(process.env.CONCURRENCY ?? 16);
const reloadEvery = Number(process.env.RELOAD_EVERY ?? 5);
const root = join(import.meta.dir, "..");
const dir = mkdtempSync(join(tmpdir(), "kedge-soak-"));

// Six HTTP/1.1 upstreams and six gRPC upstreams; each config version names a rotating half of them.
async function httpUpstream(): Promise<{ port: number; close: () => void }> {
  const server = http.createServer((req, res) => {
    let n = 0;
    req.on("data", (c: Buffer) => (n += c.length));
    req.on("end", () => res.end(JSON.stringify({ got: n })));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return { port: (server.address() as { port: number }).port, close: () => server.close() };
}

const json = { serialize: (v: unknown) => Buffer.from(JSON.stringify(v)), deserialize: (b: Buffer) => JSON.parse(b.toString()) };
const echo = { path: "/soak.Echo/Say", requestStream: false, responseStream: false, requestSerialize: json.serialize, requestDeserialize: json.deserialize, responseSerialize: json.serialize, responseDeserialize: json.deserialize };

async function grpcUpstream(): Promise<{ port: number; close: () => void }> {
  const server = new grpc.Server();
  server.addService({ say: echo }, { say: (call: grpc.ServerUnaryCall<{ n: number }, unknown>, cb: grpc.sendUnaryData<unknown>) => cb(null, { n: call.request.n }) });
  const port = await new Promise<number>((resolve, reject) => server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
  return { port, close: () => server.forceShutdown() };
}

const httpUps = await Promise.all(Array.from({ length: 6 }, httpUpstream));
const grpcUps = await Promise.all(Array.from({ length: 6 }, grpcUpstream));
const configFile = join(dir, "config.json");
let version = 0;
function writeConfig(): void {
  const pick = <T,>(list: T[]) => list.filter((_, i) => (i + version) % 2 === 0 || i === version % list.length);
  writeFileSync(configFile, JSON.stringify({
    server: { bind_address: "127.0.0.1", http_port: 0, h2c_port: 0, admin_port: 0, log_level: "warn" },
    http: { backends: [{ name: "web", static: { addresses: pick(httpUps).map((u) => `127.0.0.1:${u.port}`) } }], routes: [{ backend_name: "web" }] },
    grpc: { backends: [{ name: "echo", static: { addresses: pick(grpcUps).map((u) => `127.0.0.1:${u.port}`) } }], routes: [{ backend_name: "echo" }] },
  }));
  version++;
}
writeConfig();

const kedge = Bun.spawn([join(root, "dist/kedge"), "--config", configFile], { stdout: "pipe", stderr: "inherit" });
let banner = "";
for await (const chunk of kedge.stdout as ReadableStream<Uint8Array>) {
  banner += new TextDecoder().decode(chunk);
  if (banner.includes("\n")) break;
}
const port = (name: string) => Number(new RegExp(`${name}=(\\d+)`).exec(banner)![1]);
const httpPort = port("http");
const h2cPort = port("h2c");
const adminPort = port("admin");

const rss = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${kedge.pid}/status`, "utf8"))![1]) / 1024;
const samples: Array<{ t: number; rssMb: number }> = [];
const counts = { http: 0, grpc: 0, post: 0, failed: 0, reloads: 0 };
const failures: string[] = [];
const started = performance.now();
const deadline = started + seconds * 1000;
const body = Buffer.alloc(64 * 1024, 120);

const client = new grpc.Client(`127.0.0.1:${h2cPort}`, grpc.credentials.createInsecure());
function grpcCall(n: number): Promise<void> {
  return new Promise((resolve, reject) =>
    client.makeUnaryRequest(echo.path, json.serialize, json.deserialize, { n }, (err: grpc.ServiceError | null, res?: { n: number }) =>
      err ? reject(err) : res?.n === n ? resolve() : reject(new Error("wrong answer")),
    ),
  );
}

async function worker(id: number): Promise<void> {
  for (let i = 0; performance.now() < deadline; i++) {
    const kind = (i + id) % 4;
    try {
      if (kind === 3) {
        await grpcCall(i);
        counts.grpc++;
      } else if (kind === 2) {
        const res = await fetch(`http://127.0.0.1:${httpPort}/upload`, { method: "POST", body });
        if (((await res.json()) as { got: number }).got !== body.length) throw new Error(`POST answered ${res.status}`);
        counts.post++;
      } else {
        const res = await fetch(`http://127.0.0.1:${httpPort}/get?i=${i}`);
        if (res.status !== 200) throw new Error(`GET answered ${res.status}`);
        await res.arrayBuffer();
        counts.http++;
      }
    } catch (e) {
      counts.failed++;
      if (failures.length < 20) failures.push(`${((performance.now() - started) / 1000).toFixed(1)}s: ${(e as Error).message}`);
    }
  }
}

const reloader = setInterval(() => {
  writeConfig(); // kedge watches the file; SIGHUP too, in case the watch coalesces writes
  kedge.kill("SIGHUP");
  counts.reloads++;
}, reloadEvery * 1000);
const sampler = setInterval(() => samples.push({ t: (performance.now() - started) / 1000, rssMb: rss() }), 5000);
await Promise.all(Array.from({ length: concurrency }, (_, i) => worker(i)));
clearInterval(reloader);
clearInterval(sampler);
const metrics = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
const reloadOk = Number(/kedge_config_reloads_total\{result="success"\} (\d+)/.exec(metrics)?.[1] ?? 0);
kedge.kill("SIGTERM");
await kedge.exited;
client.close();
for (const u of [...httpUps, ...grpcUps]) u.close();

const avg = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
const warm = samples.filter((s) => s.t > 30);
const firstMinute = avg(warm.filter((s) => s.t <= 90).map((s) => s.rssMb));
const lastMinute = avg(warm.filter((s) => s.t > seconds - 60).map((s) => s.rssMb));
const flat = Math.abs(lastMinute - firstMinute) <= firstMinute * 0.15;
const total = counts.http + counts.grpc + counts.post;
const report = `# Soak: ${seconds} s, ${concurrency} concurrent clients, config rewritten every ${reloadEvery} s

| | |
|---|--:|
| requests ok (HTTP GET / POST 64 KB / gRPC unary) | ${total} (${counts.http} / ${counts.post} / ${counts.grpc}) |
| failed requests | ${counts.failed} |
| config rewrites / successful reloads | ${counts.reloads} / ${reloadOk} |
| RSS after warm-up, first minute avg | ${firstMinute.toFixed(1)} MB |
| RSS last minute avg | ${lastMinute.toFixed(1)} MB |
| RSS max | ${Math.max(...samples.map((s) => s.rssMb)).toFixed(1)} MB |
| verdict | ${counts.failed === 0 && flat ? "PASS" : "FAIL"} (zero failures: ${counts.failed === 0}, flat memory: ${flat}) |

${failures.length ? `First failures:\n${failures.map((f) => `- ${f}`).join("\n")}\n` : ""}`;
writeFileSync(join(root, "bench/results/soak.md"), report);
console.log(report);
process.exit(counts.failed === 0 && flat ? 0 : 1);
