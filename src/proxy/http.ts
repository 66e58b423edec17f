import { checkHops, hopsHeader } from "../backend/kedge-tier.js";
import { KedgeError, noRoute } from "../errors.js";
import { routeLabel, type Metrics } from "../observe/metrics.js";
import type { DecisionSubject } from "../observe/audit-log.js";
import type { Runtime } from "../runtime.js";
import { admit } from "./admission.js";
import type { HttpProxy, Routing } from "./http-proxy.js";
import { pathSpellingProblem } from "./path.js";
import { screenUnderscoreNames } from "./underscore-names.js";
import { nextRequestId, type ParsedRequest } from "./request.js";
import type { Tunnels } from "./tunnel.js";

export interface ProxyContext {
  /** The live runtime; a request keeps the one it started with. */
  runtime(): Runtime;
  readonly metrics: Metrics;
}

/**
 * Whether a request needs more than the access check: rate limits or the audit log are on. The
 * one test the request path pays when neither is configured (two property reads: no code of
 * ratelimit/ or the audit log runs).
 */
export function screened(runtime: Runtime, metrics: Metrics): boolean {
  return runtime.rateLimits.active || metrics.audit.enabled;
}

/** Who asks, for the rate limits and the audit line; only made when either is on (`screened`). */
export interface Asker {
  readonly metrics: Metrics;
  readonly requestId: string;
  readonly protocol: string;
  readonly method: string;
  readonly remoteAddress: string;
}

/**
 * kedge's routing: the first route that matches (or an adhoc rule) names the backend, then the
 * route's access policy decides, then the rate limits (`asker` set: they or the audit log are on).
 * A request without a route is answered only after authentication.
 */
export function kedgeRouting(runtime: Runtime, facts: ParsedRequest, proxyAuthorization: string | undefined, socket: object | undefined, asker?: Asker): Routing {
  const routing: Routing = { backend: undefined, label: "none", ready: undefined, unrouted: undefined, setHeaders: undefined, maxBodyBytes: runtime.limits.maxBodyBytes, route: "none", retry: undefined };
  if (runtime.limits.maxHops > 0) checkHops(facts.headers[hopsHeader], runtime.limits.maxHops);
  const pathProblem = pathSpellingProblem(facts.path, runtime.limits.allowEncodedSlashes);
  if (pathProblem) throw new KedgeError("bad-request", 400, pathProblem);
  const kept = screenUnderscoreNames(runtime.limits.headersWithUnderscores, facts.headers);
  if (kept !== undefined) {
    facts.headers = kept; // the request is passed on with these (Exchange.buildHead)
    routing.dropUnderscoreNames = true;
  }
  const route = runtime.httpRoutes.match(facts);
  if (route) {
    routing.backend = runtime.httpBackends.get(route.backendName);
    if (!routing.backend) throw new KedgeError("no-backend", 502, `unknown backend ${route.backendName}`);
    routing.label = route.backendName;
    routing.route = routeLabel(route.index);
    if (route.maxBodyBytes > 0) routing.maxBodyBytes = route.maxBodyBytes;
    routing.retry = route.retry;
  } else {
    const target = runtime.httpAdhoc.match(facts.host, facts.explicitPort ? facts.port : undefined);
    if (target) {
      routing.backend = runtime.adhoc.http.get(target.host, target.port);
      routing.label = "adhoc";
      routing.route = "adhoc";
    } else routing.unrouted = noRoute(`${facts.host}:${facts.port}${facts.path}`);
  }
  if (!asker) {
    routing.ready = runtime.access.check(route?.policy, proxyAuthorization, socket);
    return routing;
  }
  const subject: DecisionSubject = {
    requestId: asker.requestId,
    address: asker.remoteAddress,
    protocol: asker.protocol,
    method: asker.method,
    authority: facts.authority,
    path: facts.path,
    route: routing.route!,
    backend: routing.label,
  };
  const limit = runtime.rateLimits.httpRoute(route?.index, routing.route === "adhoc");
  routing.ready = admit(asker.metrics, runtime, route?.policy, proxyAuthorization, socket, limit, subject);
  return routing;
}

/** The asker of a request (or a CONNECT), when rate limits or the audit log need one. */
export function askerOf(ctx: ProxyContext, runtime: Runtime, req: { readonly protocol: string; readonly method: string; readonly remoteAddress: string }, requestId: string): Asker | undefined {
  if (!screened(runtime, ctx.metrics)) return undefined;
  return { metrics: ctx.metrics, requestId, protocol: req.protocol, method: req.method, remoteAddress: req.remoteAddress };
}

/** kedge's reverse proxy over the live runtime; upgraded connections (WebSocket, SPDY) are spliced in `tunnels`. */
export function kedgeHttpProxy(ctx: ProxyContext, tunnels?: Tunnels): HttpProxy {
  return {
    tunnels,
    metrics: ctx.metrics,
    dispatch: (req, facts, _obs, requestId) => {
      const runtime = ctx.runtime();
      return kedgeRouting(runtime, facts, req.headers["proxy-authorization"], req.socket, askerOf(ctx, runtime, req, requestId));
    },
    errorHeader: "x-kedge",
    tagsResponses: true,
    newRequestId: nextRequestId,
  };
}
