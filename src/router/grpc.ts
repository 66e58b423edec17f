import type { GrpcRoute } from "../gen/kedge/config/v1/routes_pb.js";
import { compileRoutePolicy, type RoutePolicy } from "../auth/policy.js";
import { compileHeaderMatcher, type RequestFacts } from "./match.js";
import { compileRetryPolicy, type RetryPolicy } from "../backend/retry-policy.js";

/** What a gRPC call is routed on: its method path, :authority and metadata. */
export interface GrpcCallFacts {
  /** "pkg.Service" */
  service: string;
  /** "Method" */
  method: string;
  /** :authority host (lower case, no port, no IPv6 brackets) and port (0 when absent). */
  host: string;
  port: number;
  metadata: RequestFacts["headers"];
}

export interface CompiledGrpcRoute {
  readonly index: number;
  readonly backendName: string;
  /** The route's own access rules; undefined: the global policy. */
  readonly policy: RoutePolicy | undefined;
  /** When a failed call is sent again; undefined: only what the backend never processed. */
  readonly retry: RetryPolicy | undefined;
  matches(call: GrpcCallFacts): boolean;
}

export interface GrpcRouteTable {
  match(call: GrpcCallFacts): CompiledGrpcRoute | undefined;
}

/**
 * "*" any call; "pkg.*" services under a prefix; "pkg.Service/*" or a bare "pkg.Service" the whole
 * service (kedge Go silently never matched the bare form); "pkg.Service/Method" one method. As in
 * kedge Go, a trailing "*" is a prefix of the full method name, so "pkg.Service/Get*" works too.
 */
function compileServiceMatcher(pattern: string): ((call: GrpcCallFacts) => boolean) | undefined {
  if (pattern === "" || pattern === "*") return undefined;
  if (pattern.endsWith("/*")) {
    const service = pattern.slice(0, -2);
    return (c) => c.service === service;
  }
  if (pattern.endsWith("*")) {
    const prefix = pattern.slice(0, -1);
    const slash = prefix.indexOf("/");
    if (slash < 0) return (c) => c.service.startsWith(prefix);
    const service = prefix.slice(0, slash);
    const methodPrefix = prefix.slice(slash + 1);
    return (c) => c.service === service && c.method.startsWith(methodPrefix);
  }
  const slash = pattern.indexOf("/");
  if (slash >= 0) {
    const service = pattern.slice(0, slash);
    const method = pattern.slice(slash + 1);
    return (c) => c.service === service && c.method === method;
  }
  return (c) => c.service === pattern;
}

export function compileGrpcRoutes(routes: readonly GrpcRoute[]): GrpcRouteTable {
  const compiled: CompiledGrpcRoute[] = routes.map((route, index) => {
    const serviceMatches = compileServiceMatcher(route.serviceNameMatcher);
    const host = route.authorityHostMatcher.toLowerCase();
    const port = route.authorityPortMatcher;
    const metadataMatches = compileHeaderMatcher(route.metadataMatcher);
    return {
      index,
      backendName: route.backendName,
      policy: compileRoutePolicy(route.auth),
      retry: compileRetryPolicy(route.retry),
      matches(call) {
        if (serviceMatches && !serviceMatches(call)) return false;
        if (host !== "" && call.host !== host) return false;
        if (port !== 0 && call.port !== port) return false;
        if (metadataMatches && !metadataMatches(call.metadata)) return false;
        return true;
      },
    };
  });
  return {
    match(call) {
      for (const route of compiled) if (route.matches(call)) return route;
      return undefined;
    },
  };
}
