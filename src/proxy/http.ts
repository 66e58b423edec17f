import { checkHops, hopsHeader } from "../backend/kedge-tier.js";
import { KedgeError, noRoute } from "../errors.js";
import { routeLabel, type Metrics } from "../observe/metrics.js";
import type { Runtime } from "../runtime.js";
import type { HttpProxy, Routing } from "./exchange.js";
import { pathSpellingProblem } from "./path.js";
import { screenUnderscoreNames } from "./underscore-names.js";
import { newRequestId, type ParsedRequest } from "./request.js";
import type { Tunnels } from "./tunnel.js";

export interface ProxyContext {
  /** The live runtime; a request keeps the one it started with. */
  runtime(): Runtime;
  readonly metrics: Metrics;
}

/**
 * kedge's routing: the first route that matches (or an adhoc rule) names the backend, then the
 * route's access policy decides. A request without a route is answered only after authentication.
 */
export function kedgeRouting(runtime: Runtime, facts: ParsedRequest, proxyAuthorization: string | undefined, socket: object | undefined): Routing {
  const routing: Routing = { backend: undefined, label: "none", ready: undefined, unrouted: undefined, setHeaders: undefined, maxBodyBytes: runtime.limits.maxBodyBytes, route: "none" };
  if (runtime.limits.maxHops > 0) checkHops(facts.headers[hopsHeader], runtime.limits.maxHops);
  const pathProblem = pathSpellingProblem(facts.path, runtime.limits.allowEncodedSlashes);
  if (pathProblem) throw new KedgeError("bad-request", 400, pathProblem);
  routing.dropUnderscoreNames = screenUnderscoreNames(runtime.limits.headersWithUnderscores, facts.headers);
  const route = runtime.httpRoutes.match(facts);
  if (route) {
    routing.backend = runtime.httpBackends.get(route.backendName);
    if (!routing.backend) throw new KedgeError("no-backend", 502, `unknown backend ${route.backendName}`);
    routing.label = route.backendName;
    routing.route = routeLabel(route.index);
    if (route.maxBodyBytes > 0) routing.maxBodyBytes = route.maxBodyBytes;
  } else {
    const target = runtime.httpAdhoc.match(facts.host, facts.explicitPort ? facts.port : undefined);
    if (target) {
      routing.backend = runtime.adhoc.http.get(target.host, target.port);
      routing.label = "adhoc";
      routing.route = "adhoc";
    } else routing.unrouted = noRoute(`${facts.host}:${facts.port}${facts.path}`);
  }
  routing.ready = runtime.access.check(route?.policy, proxyAuthorization, socket);
  return routing;
}

/** kedge's reverse proxy over the live runtime; upgraded connections (WebSocket, SPDY) are spliced in `tunnels`. */
export function kedgeHttpProxy(ctx: ProxyContext, tunnels?: Tunnels): HttpProxy {
  return {
    tunnels,
    metrics: ctx.metrics,
    dispatch: (req, facts) => kedgeRouting(ctx.runtime(), facts, req.headers["proxy-authorization"], req.socket),
    errorHeader: "x-kedge",
    tagsResponses: true,
    newRequestId,
  };
}
