import type { Routing, HttpProxy } from "../proxy/http-proxy.js";
import type { Tunnels } from "../proxy/tunnel.js";
import { KedgeError } from "../errors.js";
import { hasToken } from "../net/fields.js";
import { routeLabel } from "../observe/metrics.js";
import { noteDestination } from "./access-fields.js";
import { destination, winchRequestId, type WinchContext } from "./context.js";
import type { Injection } from "./credentials.js";

/**
 * winch's HTTP_PROXY side: an absolute-URI request for a mapped host goes to its cluster's kedge
 * with the Host it named and the route's credentials; an unknown host goes direct (or is refused).
 * WebSocket and SPDY upgrades (kubectl exec, port-forward) go the same way, and after kedge's 101
 * the connections are spliced in `tunnels`. Each request is routed by the config live when it came.
 */
export function winchHttpProxy(live: () => WinchContext, tunnels: Tunnels): HttpProxy {
  return {
    // One registry for winch's life: a reload keeps the counts.
    metrics: live().metrics,
    errorHeader: "x-winch",
    tagsResponses: false,
    newRequestId: (into) => {
      into.idHead = winchRequestId();
      into.idTail = "";
    },
    tunnels,
    dispatch: (req, facts, obs): Routing => {
      const ctx = live();
      noteDestination(obs, facts.authority, undefined, true);
      if (!facts.forwardProxy) throw new KedgeError("bad-request", 400, "winch is a forward proxy: send absolute-URI requests (set HTTP_PROXY) or CONNECT");
      // The server lets through only the upgrades it can splice; another would reach kedge as a plain request.
      const { upgrade, connection } = req.headers;
      if (req.upgrade === undefined && upgrade !== undefined && connection !== undefined && hasToken(connection, "upgrade")) {
        throw new KedgeError("bad-request", 400, `winch passes on WebSocket and SPDY upgrades without a body, not ${JSON.stringify(upgrade.slice(0, 50))}`);
      }
      const port = facts.explicitPort ? facts.port : undefined;
      const to = destination(ctx, facts.host, port, "http");
      noteDestination(obs, facts.authority, to, true);
      if (to.kind === "direct") {
        return { backend: ctx.upstreams.directTo(facts.host, facts.port), label: "direct", ready: undefined, unrouted: undefined, setHeaders: undefined, maxBodyBytes: 0 };
      }
      const { kedge } = to.mapping;
      // kedge gets the request as it would from a client using it as its own proxy: absolute-form, the port and scheme intact.
      const routing: Routing = { backend: undefined, label: kedge.host, ready: undefined, unrouted: undefined, setHeaders: undefined, maxBodyBytes: 0, route: routeLabel(to.mapping.routeIndex), absoluteForm: true };
      const use = (injection: Injection) => {
        routing.backend = ctx.upstreams.httpTo(kedge, injection.clientCert);
        routing.setHeaders = injection.headers;
      };
      const injection = ctx.injector.inject(to.mapping);
      if (injection instanceof Promise) routing.ready = injection.then(use);
      else use(injection);
      return routing;
    },
  };
}
