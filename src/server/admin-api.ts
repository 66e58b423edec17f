import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { create, type JsonObject } from "@bufbuild/protobuf";
import type { ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { AdminService, BackendSchema, RouteSchema, type Backend as BackendMessage, type Route } from "../gen/kedge/admin/v1/admin_pb.js";
import type { GrpcRoute, HttpRoute } from "../gen/kedge/config/v1/routes_pb.js";
import { HttpRoute_ProxyMode } from "../gen/kedge/config/v1/routes_pb.js";
import { configToJson } from "../config/secrets.js";
import type { AdminState } from "./admin.js";
import type { BackendState, EndpointState } from "./backends-view.js";

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

/** Connections open to an endpoint: an HTTP/1.1 pool's open ones, or a connected HTTP/2 session. */
function openOf(pool: EndpointState["pool"]): number {
  return typeof pool.open === "number" ? pool.open : pool.connected ? 1 : 0;
}

function backendMessage(kind: string, b: BackendState): BackendMessage {
  return create(BackendSchema, {
    kind,
    name: b.name,
    resolver: b.resolver,
    endpoints: b.endpoints.map((e) => ({
      address: e.address,
      healthy: e.healthy,
      outstanding: e.outstanding,
      // Merged across workers: each worker's connections count.
      open: e.workers ? e.workers.reduce((sum, w) => sum + openOf(w.pool), 0) : openOf(e.pool),
      ejected: e.ejected,
      ejections: e.ejections,
      ejectionMs: e.ejectionMs,
      healthCheck: e.healthCheck ?? "",
      tier: e.tier ?? 0,
    })),
    failover: b.failover ? [...b.failover] : [],
    activeTier: b.activeTier ?? 0,
  });
}

/** kedge.admin.v1.AdminService: read-only views of the live runtime. */
export function adminRoutes(state: Pick<AdminState, "runtime" | "backends">): (router: ConnectRouter) => void {
  const runtime = () => state.runtime();
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
      async listBackends() {
        const view = await state.backends();
        return { backends: [...view.http.map((b) => backendMessage("http", b)), ...view.grpc.map((b) => backendMessage("grpc", b))] };
      },
      getConfig() {
        const rt = runtime();
        return { version: BigInt(rt.version), config: configToJson(rt.config) as JsonObject };
      },
    });
}

type Handler = (req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse) => void;

/** AdminService over Connect, gRPC and gRPC-web; what it does not route goes to `fallback`. */
export function adminServiceHandler(state: Pick<AdminState, "runtime" | "backends">, fallback: Handler): Handler {
  return connectNodeAdapter({ routes: adminRoutes(state), fallback: fallback as never }) as Handler;
}
