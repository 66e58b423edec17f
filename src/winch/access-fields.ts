import { loggedHost } from "../observe/access-log.js";
import type { Observation } from "../observe/observer.js";
import type { Destination } from "./context.js";

/**
 * What winch's access line adds to kedge's: the host[:port] the client asked for (a request's
 * Host header may differ from its absolute URI's), the route's direct.key or regexp.exp (the
 * line's `route` is its index), the kedge it went to or "direct", and the auth sources used, by
 * name. `to` is undefined while the host is not mapped yet, and stays so when winch refuses it.
 * `withBackendAuth` is false for a CONNECT tunnel, which backend_auth cannot enter.
 */
export function noteDestination(obs: Observation | undefined, target: string, to: Destination | undefined, withBackendAuth: boolean, requestId?: string): void {
  if (!obs) return;
  // A field set to undefined would blank kedge's own: only a request id winch made is added.
  const fields: Record<string, string | undefined> = requestId === undefined ? { host: loggedHost(target) } : { host: loggedHost(target), request_id: requestId };
  if (to?.kind === "direct") fields.kedge = "direct";
  else if (to?.kind === "kedge") {
    const { match, kedge, backendAuth, proxyAuth } = to.mapping;
    if ("key" in match) fields.route_key = match.key;
    else fields.route_exp = match.exp;
    fields.kedge = kedge.origin;
    if (withBackendAuth && backendAuth) fields.backend_auth = backendAuth;
    if (proxyAuth) fields.proxy_auth = proxyAuth;
  }
  obs.fields = fields;
}
