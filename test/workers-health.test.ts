import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureBinary, healthy, runBinary, waitFor, type Running } from "./helpers/binary.ts";
import { debugEndpoints } from "./helpers/debug-backends.ts";
import { startFlakyUpstream, type FlakyUpstream } from "./helpers/flaky-upstream.ts";
import { promtool, seriesTotal } from "./helpers/prometheus.ts";
import { until } from "./helpers/wait.ts";

// Endpoint health under `workers: 2` (dist/kedge): each worker checks the endpoints itself, the
// supervisor checks none, and the admin port shows the workers' verdicts merged.

const dir = mkdtempSync(join(tmpdir(), "kedge-workers-health-"));
let up: FlakyUpstream;
let kedge: Running;
let admin = 0;

beforeAll(async () => {
  ensureBinary();
  up = await startFlakyUpstream("checked");
  const configFile = join(dir, "kedge.json");
  writeFileSync(
    configFile,
    JSON.stringify({
      server: { bind_address: "127.0.0.1", http_port: 0, admin_port: 0, workers: 2, log_level: "error" },
      http: {
        backends: [{ name: "checked", static: { addresses: [`127.0.0.1:${up.port}`] }, health_check: { http: { path: "/healthz" }, interval: "0.05s", healthy_threshold: 1, unhealthy_threshold: 1 } }],
        routes: [{ backend_name: "checked" }],
      },
    }),
  );
  kedge = runBinary(["--config", configFile], dir);
  await waitFor(() => /listening: .*admin=\d+/.test(kedge.stdout()), "kedge to listen", kedge);
  admin = Number(/admin=(\d+)/.exec(kedge.stdout())![1]);
  await waitFor(healthy(admin), "kedge to become healthy", kedge);
});

afterAll(async () => {
  kedge?.proc.kill("SIGTERM");
  await kedge?.proc.exited;
  await up?.close();
});

describe("health checks with workers", () => {
  it("are run by each worker on a keep-alive connection of its own, and by no supervisor", async () => {
    await until("a few dozen checks", () => up.healthChecks >= 30);
    // One connection per process that checks: both workers, and not a third.
    expect(up.connections).toBe(2);
    expect(up.served).toBe(0);
  });

  it("show each worker's verdict, merged: failing where any worker finds it failing", async () => {
    up.healthStatus = 503;
    await until("both workers to mark the endpoint down", async () => {
      const [endpoint] = await debugEndpoints(admin, "http", "checked");
      return endpoint.healthCheck === "failing" && endpoint.workers!.every((w) => w.healthCheck === "failing");
    });
    const text = await (await fetch(`http://127.0.0.1:${admin}/metrics`)).text();
    expect(seriesTotal(text, "kedge_backend_endpoints", 'backend_name="checked",state="failing_checks"')).toBe(2);
    expect(text).toMatch(/kedge_backend_endpoints\{backend_name="checked",state="failing_checks",worker="1"\} 1/);
    expect((await promtool(text)).code).toBe(0);
    up.healthStatus = 200;
    await until("the endpoint to pass again", async () => (await debugEndpoints(admin, "http", "checked"))[0].healthCheck === "passing");
  });
});
