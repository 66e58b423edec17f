import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { AdminService } from "../src/gen/kedge/admin/v1/admin_pb.ts";
import { runAdmin } from "../src/cli/admin.ts";
import { plainServer, startTestKedge, type TestKedge } from "./helpers/kedge.ts";
import { startGreeter, type GreeterServer } from "./helpers/grpc.ts";
import { startUpstream, type Upstream } from "./helpers/upstream.ts";

let up: Upstream, greeter: GreeterServer, kedge: TestKedge;

beforeAll(async () => {
  up = await startUpstream("up");
  greeter = await startGreeter("g");
  kedge = await startTestKedge({
    server: plainServer,
    http: {
      backends: [{ name: "web", static: { addresses: [`127.0.0.1:${up.port}`, "127.0.0.1:1"] } }],
      routes: [{ backend_name: "web", host_matcher: "web.example.com", path_rules: ["/api/*"] }],
    },
    grpc: {
      backends: [{ name: "greeter", static: { addresses: [`127.0.0.1:${greeter.port}`] } }],
      routes: [{ backend_name: "greeter", service_name_matcher: "e2e.helloworld.Greeter" }],
    },
  });
  // One request that fails over from the dead endpoint, so health shows in the listing.
  await (await fetch(kedge.url("/api/x"), { headers: { host: "web.example.com" } })).arrayBuffer();
  await (await fetch(kedge.url("/api/x"), { headers: { host: "web.example.com" } })).arrayBuffer();
});

afterAll(async () => {
  await kedge.shutdown();
  await up.close();
  await greeter.close();
});

const baseUrl = () => `http://127.0.0.1:${kedge.ports.admin}`;

describe("admin API (kedge.admin.v1.AdminService)", () => {
  it("answers over Connect, gRPC (h2c) and gRPC-web", async () => {
    const transports = {
      connect: createConnectTransport({ baseUrl: baseUrl(), httpVersion: "1.1" }),
      grpc: createGrpcTransport({ baseUrl: baseUrl() }),
      grpcWeb: createGrpcWebTransport({ baseUrl: baseUrl(), httpVersion: "1.1" }),
    };
    for (const [name, transport] of Object.entries(transports)) {
      const { routes } = await createClient(AdminService, transport).listRoutes({});
      expect(routes.map((r) => `${r.kind} ${r.backendName} ${r.matcher}`), name).toEqual([
        "http web host=web.example.com path=/api/*",
        "grpc greeter service=e2e.helloworld.Greeter",
      ]);
    }
  });

  it("lists backends with their resolved endpoints and health", async () => {
    const client = createClient(AdminService, createConnectTransport({ baseUrl: baseUrl(), httpVersion: "1.1" }));
    const { backends } = await client.listBackends({});
    const web = backends.find((b) => b.name === "web")!;
    expect(web.resolver).toContain("static");
    expect(web.endpoints.map((e) => [e.address, e.healthy])).toEqual([
      [`127.0.0.1:${up.port}`, true],
      ["127.0.0.1:1", false],
    ]);
    const grpcBackend = backends.find((b) => b.name === "greeter")!;
    expect(grpcBackend.kind).toBe("grpc");
    expect(grpcBackend.endpoints[0].address).toBe(`127.0.0.1:${greeter.port}`);
  });

  it("returns the live config and its version", async () => {
    const client = createClient(AdminService, createConnectTransport({ baseUrl: baseUrl(), httpVersion: "1.1" }));
    const { version, config } = await client.getConfig({});
    expect(version).toBe(BigInt(kedge.runtime().version));
    expect((config as any).http.routes[0].host_matcher).toBe("web.example.com");
  });

  it("prints backends as a table for `kedge admin backends`", async () => {
    const out = await runAdmin("backends", `127.0.0.1:${kedge.ports.admin}`);
    const lines = out.trim().split("\n");
    expect(lines[0]).toMatch(/^KIND\s+BACKEND\s+RESOLVER\s+ENDPOINT\s+HEALTHY\s+IN FLIGHT\s+OPEN$/);
    expect(lines.some((l) => /^http\s+web\s+.*127\.0\.0\.1:1\s+no\s/.test(l))).toBe(true);
    expect(lines.some((l) => /^grpc\s+greeter\s/.test(l))).toBe(true);
  });
});
