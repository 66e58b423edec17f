import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { AdminService } from "../src/gen/kedge/admin/v1/admin_pb.ts";
import { runAdmin } from "../src/cli/admin.ts";
import { curl } from "./helpers/curl.ts";
import { plainServer, startTestKedge, type TestKedge } from "./helpers/kedge.ts";
import { startUpstream, type Upstream } from "./helpers/upstream.ts";

// The admin port's debug surface (/debug/*, the AdminService) shows the config and the backends:
// it needs credentials whenever kedge has a token authenticator, and without one it is served only
// on a loopback admin address. Probes and scrapers keep /_healthz, /_version and /metrics.

const token = "admin-t0ken-0123456789";
let upstream: Upstream;

beforeAll(async () => {
  upstream = await startUpstream("app");
});
afterAll(() => upstream.close());

const http = () => ({ backends: [{ name: "app", static: { addresses: [`127.0.0.1:${upstream.port}`] } }], routes: [{ backend_name: "app" }] });
const admin = (kedge: TestKedge, path: string, headers: string[] = []) => curl([...headers, `http://127.0.0.1:${kedge.ports.admin}${path}`]);
const listRoutes = (kedge: TestKedge, headers: string[] = []) =>
  curl(["-X", "POST", "-H", "content-type: application/json", "-d", "{}", ...headers, `http://127.0.0.1:${kedge.ports.admin}/kedge.admin.v1.AdminService/ListRoutes`]);

async function withKedge(config: Record<string, unknown>, body: (kedge: TestKedge, logged: string) => Promise<void>): Promise<void> {
  const lines: string[] = [];
  const realWrite = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
    lines.push(String(chunk));
    return realWrite(chunk as never, ...(rest as []));
  }) as typeof process.stderr.write;
  let kedge: TestKedge;
  try {
    kedge = await startTestKedge(config);
  } finally {
    process.stderr.write = realWrite;
  }
  try {
    await body(kedge, lines.join(""));
  } finally {
    await kedge.shutdown();
  }
}

describe("admin surface", () => {
  it("with a token authenticator, /debug/* and the AdminService need a token even without auth.admin", async () => {
    await withKedge({ server: plainServer, auth: { bearer_token: token }, http: http() }, async (kedge) => {
      const denied = await admin(kedge, "/debug/config");
      expect(denied.status).toBe(401);
      expect(denied.headers["x-kedge-error-type"]).toBe("unauthorized");
      expect((await admin(kedge, "/debug/backends")).status).toBe(401);
      expect((await admin(kedge, "/debug/config", ["-H", `authorization: Bearer ${token}`])).status).toBe(200);
      expect((await admin(kedge, "/debug/backends", ["-H", `proxy-authorization: Bearer ${token}`])).status).toBe(200);
      expect((await admin(kedge, "/debug/config", ["-H", "authorization: Bearer wrong"])).status).toBe(401);

      expect((await listRoutes(kedge)).status).toBe(401);
      expect((await listRoutes(kedge, ["-H", `authorization: Bearer ${token}`])).status).toBe(200);
      const address = `127.0.0.1:${kedge.ports.admin}`;
      expect(await runAdmin("routes", address, token)).toContain("app");
      await expect(runAdmin("routes", address)).rejects.toThrow(/unauthenticated/i);

      for (const probe of ["/_healthz", "/_version", "/metrics"]) expect((await admin(kedge, probe)).status, probe).toBe(200);
    });
  });

  it("without an authenticator, serves /debug/* and the AdminService on a loopback admin address", async () => {
    await withKedge({ server: plainServer, http: http() }, async (kedge) => {
      expect((await admin(kedge, "/debug/config")).status).toBe(200);
      const client = createClient(AdminService, createConnectTransport({ baseUrl: `http://127.0.0.1:${kedge.ports.admin}`, httpVersion: "1.1" }));
      expect((await client.listRoutes({})).routes).toHaveLength(1);
    });
  });

  it("without an authenticator, refuses /debug/* and the AdminService beyond loopback with 403 saying why, and warns at start", async () => {
    const config = { server: { bind_address: "0.0.0.0", admin_port: 0, log_level: "warn" } };
    await withKedge(config, async (kedge, logged) => {
      for (const path of ["/debug/config", "/debug/backends", "/debug/anything"]) {
        const r = await admin(kedge, path);
        expect(r.status, path).toBe(403);
        expect(r.headers["x-kedge-error-type"]).toBe("forbidden");
        expect(r.headers["x-kedge-error"]).toContain("The admin port binds 0.0.0.0 and no token authenticator is configured");
        expect(r.headers["x-kedge-error"]).toContain("auth.allow_unauthenticated");
      }
      const rpc = await listRoutes(kedge);
      expect(rpc.status).toBe(403);
      expect(rpc.headers["x-kedge-error"]).toContain("served only on a loopback address");

      for (const probe of ["/_healthz", "/_version", "/metrics"]) expect((await admin(kedge, probe)).status, probe).toBe(200);

      const warning = logged.split("\n").find((l) => l.includes("admin port is reachable beyond loopback"));
      expect(warning).toBeDefined();
      expect(JSON.parse(warning!)).toMatchObject({ level: "warn", address: `0.0.0.0:${kedge.ports.admin}` });
    });
  });

  it("serves them beyond loopback when auth.allow_unauthenticated says so", async () => {
    const config = { server: { bind_address: "0.0.0.0", admin_port: 0, log_level: "error" }, auth: { allow_unauthenticated: true } };
    await withKedge(config, async (kedge) => {
      expect((await admin(kedge, "/debug/config")).status).toBe(200);
      expect((await listRoutes(kedge)).status).toBe(200);
    });
  });
});
