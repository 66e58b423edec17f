import type { HttpRoute } from "../gen/kedge/config/v1/routes_pb.js";
import { ProxyMode } from "../config/enums.js";
import { compileRoutePolicy, type RoutePolicy } from "../auth/policy.js";
import { compileHeaderMatcher, type RequestFacts } from "./match.js";
import { compileRetryPolicy, type RetryPolicy } from "../backend/retry-policy.js";

export interface CompiledHttpRoute {
  readonly index: number;
  readonly backendName: string;
  /** The route's own access rules; undefined: the global policy. */
  readonly policy: RoutePolicy | undefined;
  /** The route's request body limit; 0: the server's default. */
  readonly maxBodyBytes: number;
  /** When a failed request is sent again; undefined: only what the backend never processed. */
  readonly retry: RetryPolicy | undefined;
  matches(facts: RequestFacts): boolean;
}

export interface HttpRouteTable {
  /** First match wins; O(routes) worst case. */
  match(facts: RequestFacts): CompiledHttpRoute | undefined;
  readonly routes: readonly CompiledHttpRoute[];
}

type PathMatcher = (path: string) => boolean;

function compilePathRules(rules: readonly string[]): PathMatcher | undefined {
  if (rules.length === 0) return undefined;
  const exact = new Set<string>();
  const prefixes: string[] = [];
  for (const rule of rules) {
    if (rule.endsWith("*")) prefixes.push(rule.slice(0, -1));
    else exact.add(rule);
  }
  return (path) => {
    if (exact.has(path)) return true;
    for (const prefix of prefixes) if (path.startsWith(prefix)) return true;
    return false;
  };
}

export function compileHttpRoute(route: HttpRoute, index: number): CompiledHttpRoute {
  const host = route.hostMatcher.toLowerCase();
  const port = route.portMatcher;
  const mode = route.proxyMode;
  const pathMatches = compilePathRules(route.pathRules);
  const headersMatch = compileHeaderMatcher(route.headerMatcher);
  return {
    index,
    backendName: route.backendName,
    policy: compileRoutePolicy(route.auth),
    maxBodyBytes: Number(route.maxRequestBodyBytes),
    retry: compileRetryPolicy(route.retry),
    matches(facts) {
      if (host !== "" && facts.host !== host) return false;
      if (port !== 0 && facts.port !== port) return false;
      if (mode === ProxyMode.REVERSE_PROXY && facts.forwardProxy) return false;
      if (mode === ProxyMode.FORWARD_PROXY && !facts.forwardProxy) return false;
      if (pathMatches && !pathMatches(facts.path)) return false;
      if (headersMatch && !headersMatch(facts.headers)) return false;
      return true;
    },
  };
}

export function compileHttpRoutes(routes: readonly HttpRoute[]): HttpRouteTable {
  const compiled = routes.map(compileHttpRoute);
  return {
    routes: compiled,
    match(facts) {
      for (const route of compiled) if (route.matches(facts)) return route;
      return undefined;
    },
  };
}
