import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { create, type JsonObject } from "@bufbuild/protobuf";
import type { ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { AdminService, BackendSchema, RouteSchema, type Backend as BackendMessage, type Route } from "../gen/kedge/admin/v1/admin_pb.js";
import type { GrpcRoute, HttpRoute } from "../gen/kedge/config/v1/routes_pb.js";
import { HttpRoute_ProxyMode } from "../gen/kedge/config/v1/routes_pb.js";
import type { Backend } from "../backend/backend.js";
import { configToJson, type Runtime } from "../runtime.js";

function httpMatcher(r: HttpRoute): string {
  const parts: string[] = [];
  if (r.hostMatcher) parts.push(`host=${r.hostMatcher}`);
  if (r.portMatcher) parts.push(`port=${r.portMatcher}`);
  if (r.pathRules.length) parts.push(`path=${r.pathRules.join(",")}`);
  for (const [k, v] of Object.entries(r.headerMatcher)) parts.push(`header ${k}=${v}`);
  if (r.proxyMode !== HttpRoute_ProxyMode.ANY) parts.push(`mode=${HttpRoute_ProxyMode[r.proxyMode]}`);
  return parts.join(" ") || "*";
}

function grpcMatcher(r: GrpcRoute): string {
  const parts = [`service=${r.serviceNameMatcher || "*"}`];
  if (r.authorityHostMatcher) parts.push(`authority=${r.authorityHostMatcher}`);
  if (r.authorityPortMatcher) parts.push(`port=${r.authorityPortMatcher}`);
  for (const [k, v] of Object.entries(r.metadataMatcher)) parts.push(`metadata ${k}=${v}`);
  return parts.join(" ");
}

function backendMessage(kind: string, b: Backend<unknown, { readonly stats: unknown; close(): void }>): BackendMessage {
  return create(BackendSchema, {
    kind,
    name: b.name,
    resolver: b.resolverDescription,
    endpoints: b.view().map((e) => {
      const stats = e.pool as { open?: number; connected?: boolean };
      return { address: e.address, healthy: e.healthy, outstanding: e.outstanding, open: stats.open ?? (stats.connected ? 1 : 0) };
    }),
  });
}

/** kedge.admin.v1.AdminService: read-only views of the live runtime. */
export function adminRoutes(runtime: () => Runtime): (router: ConnectRouter) => void {
  return (router) =>
    router.service(AdminService, {
      listRoutes() {
        const { config } = runtime();
        const routes: Route[] = [
          ...(config.http?.routes ?? []).map((r, index) => create(RouteSchema, { kind: "http", index, backendName: r.backendName, matcher: httpMatcher(r) })),
          ...(config.grpc?.routes ?? []).map((r, index) => create(RouteSchema, { kind: "grpc", index, backendName: r.backendName, matcher: grpcMatcher(r) })),
        ];
        return { routes };
      },
      listBackends() {
        const rt = runtime();
        return {
          backends: [
            ...[...rt.httpBackends.values()].map((b) => backendMessage("http", b)),
            ...[...rt.grpcBackends.values()].map((b) => backendMessage("grpc", b)),
          ],
        };
      },
      getConfig() {
        const rt = runtime();
        return { version: BigInt(rt.version), config: configToJson(rt.config) as JsonObject };
      },
    });
}

type Handler = (req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse) => void;

/** AdminService over Connect, gRPC and gRPC-web; what it does not route goes to `fallback`. */
export function adminServiceHandler(runtime: () => Runtime, fallback: Handler): Handler {
  return connectNodeAdapter({ routes: adminRoutes(runtime), fallback: fallback as never }) as Handler;
}
