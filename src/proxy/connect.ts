import type { IncomingHttpHeaders } from "node:http";
import type { Duplex } from "node:stream";
import { Attempts } from "../backend/attempts.js";
import type { HttpBackend } from "../backend/http-backend.js";
import { asKedgeError, KedgeError } from "../errors.js";
import { parseHostPort } from "../net/host-port.js";
import { askerOf, kedgeRouting, type ProxyContext } from "./http.js";
import { newRequestId, requestIdFrom, type ParsedRequest } from "./request.js";
import type { Observation, ObservedRequest } from "../observe/observer.js";
import { recordError, recordFinished, recordRetry, recordStarted, recordTunnelClosed, type RecordedHttp } from "./record.js";
import type { RetryReason } from "../backend/retry-policy.js";
import { dialTcp, writeRawError, tunnelEstablished, type TunnelEnd, type Tunnels } from "./tunnel.js";

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
  return { host: hostPort.host, port: hostPort.port, explicitPort: true, path: "", forwardProxy: true, headers: req.headers, origin: "", authority: target, uriScheme: "" };
}

/**
 * CONNECT through kedge (winch sends it for HTTPS_PROXY clients such as kubectl): the tunnel goes
 * to an endpoint of the backend the host:port's route names, after that route's access check.
 * The client's TLS passes through untouched, end to end with the backend.
 */
export function proxyConnect(ctx: ProxyContext, tunnels: Tunnels, req: ConnectRequest, client: Duplex, head: Buffer): void {
  client.on("error", () => {});
  const tunnel = new ConnectTunnel(ctx, tunnels, req, client, head);
  tunnel.open().catch((e) => tunnel.refuse(e));
}

/**
 * One CONNECT: its attempts at the backend (dials), then the splice. Counted when it opens or is
 * refused, as a 101 is; its access line (and span) is written when it closes, with its bytes and lifetime.
 */
class ConnectTunnel extends Attempts<HttpBackend> implements RecordedHttp {
  readonly protocol = "http";
  recorded = false;
  readonly startedAt = performance.now();
  readonly requestId: string;
  readonly request: ObservedRequest;
  readonly path = "";
  readonly obs: Observation | undefined;
  backendName = "none";
  route = "none";

  constructor(
    private readonly ctx: ProxyContext,
    private readonly tunnels: Tunnels,
    private readonly req: ConnectRequest,
    private readonly client: Duplex,
    private readonly head: Buffer,
  ) {
    super();
    this.requestId = requestIdFrom(req.headers, newRequestId);
    this.request = { protocol: "http/1.1", method: "CONNECT", authority: req.target, remoteAddress: req.remoteAddress, socket: req.socket };
    recordStarted(ctx.metrics, this);
    this.obs = ctx.metrics.observer.start(req.headers);
  }

  get attempts(): this {
    return this;
  }

  async open(): Promise<void> {
    const { ctx, req, client, obs } = this;
    const facts = connectFacts(req);
    const runtime = ctx.runtime();
    const routing = kedgeRouting(runtime, facts, req.headers["proxy-authorization"], req.socket, askerOf(ctx, runtime, this.request, this.requestId));
    this.backendName = routing.label;
    this.route = routing.route ?? "none";
    const identity = await routing.ready;
    if (obs) obs.identity = identity;
    if (routing.unrouted) throw routing.unrouted;
    this.backend = routing.backend!;
    await this.pendingResolution;
    for (;;) {
      const { endpoint } = this.next();
      // A tunnel's bytes are the client's own TLS: another kedge would need a CONNECT of its own, which tiers do not send.
      if (endpoint.hop) throw new KedgeError("no-connection-to-all-resolved-addresses", 502, `backend ${this.backendName}: no endpoint reachable, and CONNECT does not fail over to another kedge`);
      let upstream;
      try {
        upstream = await dialTcp(endpoint.host, endpoint.port, this.backend.poolOptions.connectTimeoutMs);
      } catch (e) {
        if (this.retry("dial", !client.destroyed)) continue;
        throw new KedgeError("no-connection-to-all-resolved-addresses", 502, `backend ${this.backendName}: ${(e as Error).message}`);
      }
      if (client.destroyed) {
        upstream.destroy();
        return recordFinished(ctx.metrics, this, 499);
      }
      this.succeeded();
      this.answered(false);
      if (obs) {
        obs.sentUpstream(endpoint.address, endpoint.tier);
        obs.firstByteAt = performance.now();
      }
      client.write(tunnelEstablished({ "x-kedge-backend-name": this.backendName, "x-kedge-request-id": this.requestId }));
      // Open: counted now, and its endpoint no longer counts it outstanding, as for a 101.
      recordFinished(ctx.metrics, this, 200, true);
      const closed = (end: TunnelEnd) => recordTunnelClosed(ctx.metrics, this, obs, 200, end);
      this.tunnels.splice(client, upstream, { head: this.head, counts: obs, closed, idleMs: this.backend.tunnelIdleMs });
      return;
    }
  }

  protected override retryCounted(reason: RetryReason, made: boolean): void {
    recordRetry(this.ctx.metrics, this, reason, made);
  }

  refuse(e: unknown): void {
    const err = asKedgeError(e);
    recordError(this.ctx.metrics, this, err.type);
    writeRawError(this.client, err, this.requestId, "x-kedge");
    recordFinished(this.ctx.metrics, this, err.status);
  }
}
