import type { IncomingHttpHeaders } from "node:http";
import type { Duplex } from "node:stream";
import type { Endpoint } from "../backend/endpoint.js";
import { defaults } from "../config/backend-defaults.js";
import { asKedgeError, KedgeError } from "../errors.js";
import { parseHostPort } from "../net/host-port.js";
import { kedgeRouting, type ProxyContext } from "./http.js";
import { newRequestId, requestIdFrom, type ParsedRequest } from "./request.js";
import { dialTcp, writeRawError, tunnelEstablished, countTunnelEnd, type TunnelEnd, type Tunnels } from "./tunnel.js";

const maxEndpointAttempts = 3;

/** A CONNECT request as either HTTP/1.1 listener reads it. */
export interface ConnectRequest {
  /** The request-target: authority-form, host:port (RFC 9112 §3.2.3). */
  readonly target: string;
  readonly headers: IncomingHttpHeaders;
  /** The client connection, where a client certificate is read. */
  readonly socket: object | undefined;
  readonly remoteAddress: string;
}

function connectFacts(req: ConnectRequest): ParsedRequest {
  const target = req.target;
  const hostPort = /:\d+$/.test(target) ? parseHostPort(target, 0) : undefined;
  if (!hostPort) throw new KedgeError("bad-request", 400, `CONNECT needs host:port, got ${JSON.stringify(target.slice(0, 100))}`);
  // No path: a route with path rules never matches a tunnel, since no path could be enforced inside it.
  return { host: hostPort.host, port: hostPort.port, explicitPort: true, path: "", forwardProxy: true, headers: req.headers, origin: "", authority: target };
}

/**
 * CONNECT through kedge (winch sends it for HTTPS_PROXY clients such as kubectl): the tunnel goes
 * to an endpoint of the backend the host:port's route names, after that route's access check.
 * The client's TLS passes through untouched, end to end with the backend.
 */
export function proxyConnect(ctx: ProxyContext, tunnels: Tunnels, req: ConnectRequest, client: Duplex, head: Buffer): void {
  const requestId = requestIdFrom(req.headers, newRequestId);
  client.on("error", () => {});
  let label = "none";
  let route = "none";
  const observer = ctx.metrics.observer;
  const obs = observer.start(req.headers);
  // One access line (and span) per tunnel, written when it closes: its bytes and lifetime are known then.
  const finish = (status: number) => {
    if (obs) observer.finishHttp(obs, requestId, { protocol: "http/1.1", method: "CONNECT", authority: req.target, remoteAddress: req.remoteAddress, socket: req.socket }, "", status, route, label);
  };
  const refuse = (e: unknown) => {
    const err = asKedgeError(e);
    ctx.metrics.proxyErrors.inc([label, err.type]);
    ctx.metrics.httpRequests.inc([label, String(err.status), route]);
    if (obs) obs.errorType = err.type;
    writeRawError(client, err, requestId, "x-kedge");
    finish(err.status);
  };
  const open = async () => {
    const facts = connectFacts(req);
    const proxyAuthorization = req.headers["proxy-authorization"];
    const routing = kedgeRouting(ctx.runtime(), facts, proxyAuthorization, req.socket);
    label = routing.label;
    route = routing.route ?? "none";
    const identity = await routing.ready;
    if (obs) obs.identity = identity;
    if (routing.unrouted) throw routing.unrouted;
    const backend = routing.backend!;
    await backend.pendingResolution;
    const failedOn = new Set<Endpoint>();
    for (;;) {
      const { endpoint } = backend.pick(failedOn);
      try {
        const upstream = await dialTcp(endpoint.host, endpoint.port, backend.poolOptions.connectTimeoutMs);
        if (client.destroyed) {
          upstream.destroy();
          return finish(499);
        }
        endpoint.markHealthy();
        ctx.metrics.httpRequests.inc([label, "200", route]);
        if (obs) {
          obs.sentUpstream(endpoint.address);
          obs.firstByteAt = performance.now();
        }
        client.write(tunnelEstablished({ "x-kedge-backend-name": label, "x-kedge-request-id": requestId }));
        const closed = (end: TunnelEnd) => {
          countTunnelEnd(end, ctx.metrics.proxyErrors, label, obs);
          finish(200);
        };
        tunnels.splice(client, upstream, { head, counts: obs, closed, idleMs: backend.tunnelIdleMs });
        return;
      } catch (e) {
        endpoint.markFailed(backend.failureBackoffMs, defaults.maxFailureBackoffMs);
        failedOn.add(endpoint);
        if (failedOn.size >= Math.min(maxEndpointAttempts, backend.endpointCount)) {
          throw new KedgeError("no-connection-to-all-resolved-addresses", 502, `backend ${label}: ${(e as Error).message}`);
        }
      }
    }
  };
  open().catch(refuse);
}
