import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { createClient } from "@connectrpc/connect";
import { connectNodeAdapter, createGrpcTransport } from "@connectrpc/connect-node";
import { AdminService } from "../src/gen/kedge/admin/v1/admin_pb.ts";
import { makeTestPki, type TestPki } from "./helpers/certs.ts";
import { plainServer, startTestKedge, type TestKedge } from "./helpers/kedge.ts";

// A connect-node gRPC server as kedge's backend, called through kedge by a connect-node client.
// Any service proves pass-through; AdminService is one the repo already generates.
let pki: TestPki, kedge: TestKedge, backend: http2.Http2Server;

beforeAll(async () => {
  pki = makeTestPki();
  backend = http2.createServer(
    connectNodeAdapter({
      routes: (router) =>
        router.service(AdminService, {
          listRoutes: (_req, ctx) => ({ routes: [{ kind: "upstream", backendName: ctx.requestHeader.get("x-who") ?? "?", matcher: "connect-node" }] }),
          listBackends: () => ({ backends: [] }),
          getConfig: () => ({ version: 7n }),
        }),
    }),
  );
  await new Promise<void>((r) => backend.listen(0, "127.0.0.1", r));
  kedge = await startTestKedge({
    server: { ...plainServer, http_tls_port: 0, h2c_port: 0, tls_cert_file: pki.serverCertFile, tls_key_file: pki.serverKeyFile },
    grpc: {
      backends: [{ name: "connect_node", static: { addresses: [`127.0.0.1:${(backend.address() as AddressInfo).port}`] } }],
      routes: [{ backend_name: "connect_node", service_name_matcher: "kedge.admin.v1.AdminService" }],
    },
  });
});

afterAll(async () => {
  await kedge.shutdown();
  backend.close();
});

describe("gRPC through kedge between connect-node peers", () => {
  it("carries a call from a connect-node client over TLS and over h2c to a connect-node server", async () => {
    const viaTls = createClient(AdminService, createGrpcTransport({ baseUrl: `https://localhost:${kedge.ports.tls}`, nodeOptions: { ca: pki.ca } }));
    const viaH2c = createClient(AdminService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${kedge.ports.h2c}` }));
    const a = await viaTls.listRoutes({}, { headers: { "x-who": "tls-client" } });
    const b = await viaH2c.getConfig({});
    expect(a.routes[0]).toMatchObject({ kind: "upstream", backendName: "tls-client", matcher: "connect-node" });
    expect(b.version).toBe(7n);
  });
});
