import type { IncomingHttpHeaders } from "node:http2";
import type { ClientStream } from "./client-stream.js";
import type { Endpoint } from "../backend/endpoint.js";
import type { GrpcBackend } from "../backend/grpc-backend.js";
import { defaults } from "../config/backend-defaults.js";
import type { RoutePolicy } from "../auth/policy.js";
import { KedgeError } from "../errors.js";
import { parseHostPort, type HostPort } from "../net/host-port.js";
import type { Runtime } from "../runtime.js";
import type { H2Session } from "../upstream/h2-session.js";
import { answerStatus, type CallRecord, GrpcStatus, openCall, upstreamBlock } from "./grpc-call.js";
import { GrpcRelay, RequestReplay, type RelayOwner } from "./grpc-relay.js";
import type { StreamError } from "../upstream/h2/frames.js";
import type { ProxyContext } from "./http.js";
import { routeLabel, type ProxyMetrics } from "../observe/metrics.js";
import { screenUnderscoreNames } from "./underscore-names.js";

const maxEndpointAttempts = 3;
/** Refused-unprocessed streams replayed per call (a GOAWAY race needs one). */
const maxReplays = 2;

function statusFor(err: KedgeError): number {
  if (err.type === "no-route" || err.type === "no-backend") return GrpcStatus.UNIMPLEMENTED;
  if (err.type === "adhoc-port-not-allowed" || err.type === "forbidden") return GrpcStatus.PERMISSION_DENIED;
  if (err.type === "unauthorized") return GrpcStatus.UNAUTHENTICATED;
  // gRPC's mapping of HTTP 400 (doc/http-grpc-status-mapping.md).
  if (err.type === "bad-request") return GrpcStatus.INTERNAL;
  return GrpcStatus.UNAVAILABLE;
}

interface Routed {
  backend: GrpcBackend | undefined;
  backendName: string;
  policy: RoutePolicy | undefined;
  /** The route label for metrics and access logs. */
  route: string;
  /** No route matched: answered once authentication has passed. */
  unrouted?: KedgeError;
}

const noHost: HostPort = { host: "", port: 0 };
let lastAuthority = "";
let lastHostPort = noHost;

/** The call's :authority split; the last one is kept, as a client's calls share one authority. */
function hostPortOf(authority: string): HostPort {
  if (authority !== lastAuthority) {
    lastHostPort = parseHostPort(authority, 0) ?? noHost;
    lastAuthority = authority;
  }
  return lastHostPort;
}

/** Where a call goes: its backend from the first route that matches service, authority and metadata. */
function routeCall(runtime: Runtime, headers: IncomingHttpHeaders): Routed {
  const path = (headers[":path"] as string | undefined) ?? "";
  const slash = path.indexOf("/", 1);
  const service = slash > 0 ? path.slice(1, slash) : path.slice(1);
  const method = slash > 0 ? path.slice(slash + 1) : "";
  const authority = ((headers[":authority"] ?? headers.host) as string | undefined) ?? "";
  const hostPort = hostPortOf(authority);
  const route = runtime.grpcRoutes.match({ service, method, host: hostPort.host, port: hostPort.port, metadata: headers });
  if (!route) {
    const target = runtime.grpcAdhoc.match(hostPort.host, hostPort.port || undefined);
    if (!target) return { backend: undefined, backendName: "none", policy: undefined, route: "none", unrouted: new KedgeError("no-route", 502, "unknown route to service") };
    return { backend: runtime.adhoc.grpc.get(target.host, target.port), backendName: "adhoc", policy: undefined, route: "adhoc" };
  }
  const backend = runtime.grpcBackends.get(route.backendName);
  if (!backend) throw new KedgeError("no-backend", 502, "unknown backend");
  return { backend, backendName: route.backendName, policy: route.policy, route: routeLabel(route.index) };
}

/** Proxies one gRPC call: authentication, then the backend its route names. */
export function proxyGrpc(ctx: ProxyContext, stream: ClientStream, headers: IncomingHttpHeaders): void {
  const { call, refuse } = openCall(ctx.metrics, stream, headers, statusFor);
  let routed: Routed;
  let decision: Promise<unknown> | undefined;
  try {
    const runtime = ctx.runtime();
    screenUnderscoreNames(runtime.limits.headersWithUnderscores, headers);
    routed = routeCall(runtime, headers);
    call.route = routed.route;
    const proxyAuthorization = headers["proxy-authorization"];
    decision = runtime.access.check(routed.policy, typeof proxyAuthorization === "string" ? proxyAuthorization : undefined, stream.session?.socket);
  } catch (e) {
    return refuse(e);
  }
  const go = (identity?: unknown) => {
    if (call.obs) call.obs.identity = identity;
    if (routed.unrouted) return refuse(routed.unrouted);
    call.backendName = routed.backendName;
    forwardCall(ctx.metrics, stream, headers, call, routed.backend!, undefined, ctx.runtime);
  };
  if (decision) decision.then(go, refuse);
  else go();
}

/**
 * Sends the call to one of the backend's endpoints, failing over when an endpoint cannot be
 * reached; `set` replaces the client's metadata of the same names (winch's injected credentials).
 * A reload can retire the backend between routing and sending (the call waits a turn for its
 * body, or for the backend's first resolution): the live `runtime`'s backend of the same name
 * replaced it (adhoc backends have no successor), as for HTTP requests.
 */
export function forwardCall(
  metrics: ProxyMetrics,
  stream: ClientStream,
  headers: IncomingHttpHeaders,
  call: CallRecord,
  routedTo: GrpcBackend,
  set: Record<string, string> | undefined,
  runtime?: () => Runtime,
): void {
  if (call.obs?.logged) call.obs.countIn(stream);
  const forward = new GrpcForward(metrics, stream, headers, call, routedTo, set, runtime);
  forward.replay.gather(forward);
}

/** One call's way to its backend: each attempt (an endpoint, a stream) is relayed by a GrpcRelay this owns. */
class GrpcForward implements RelayOwner {
  readonly backendName: string;
  readonly deadlineAt: number | undefined;
  readonly replay: RequestReplay;
  private failedOn: Set<Endpoint> | undefined;
  private replays = 0;

  constructor(
    private readonly metrics: ProxyMetrics,
    private readonly stream: ClientStream,
    private readonly headers: IncomingHttpHeaders,
    private readonly call: CallRecord,
    private backend: GrpcBackend,
    private readonly set: Record<string, string> | undefined,
    private readonly runtime: (() => Runtime) | undefined,
  ) {
    this.backendName = call.backendName;
    const timeoutMs = grpcTimeoutMs(headers["grpc-timeout"]);
    this.deadlineAt = timeoutMs === undefined ? undefined : performance.now() + timeoutMs;
    this.replay = new RequestReplay(stream);
  }

  /** The body so far is in hand: waits for the backend's first resolution (a retired backend settles it), then sends. */
  gathered(): void {
    this.toSuccessor();
    const pending = this.backend.pendingResolution;
    if (pending) void pending.then(() => this.gathered());
    else this.attempt();
  }

  private toSuccessor(): void {
    const { backend, runtime } = this;
    const next = backend.isClosed && this.call.route !== "adhoc" ? runtime?.().grpcBackends.get(backend.name) : undefined;
    if (next && next !== backend) {
      this.backend = next;
      this.failedOn?.clear();
    }
  }

  private attempt(): void {
    this.toSuccessor();
    const { call, stream } = this;
    let picked: { endpoint: Endpoint; pool: H2Session };
    try {
      picked = this.backend.pick(this.failedOn);
    } catch (e) {
      this.metrics.proxyErrors.inc([this.backendName, (e as KedgeError).type]);
      return answerStatus(stream, GrpcStatus.UNAVAILABLE, (e as Error).message, call);
    }
    const { endpoint, pool } = picked;
    const obs = call.obs;
    if (obs) obs.sentUpstream(endpoint.address);
    const block = upstreamBlock(this.headers, pool.options.tls ? "https" : "http", this.set, obs?.traceparent);
    endpoint.outstanding++;
    const relay = new GrpcRelay(stream, call, this, endpoint);
    relay.start(pool.request(block, relay));
  }

  /**
   * A call that never reached the backend's application is safe to send again: to another
   * endpoint when this one cannot be reached, to a fresh connection when the stream was refused.
   */
  retry(err: StreamError, endpoint: Endpoint): boolean {
    if (this.stream.closed || this.stream.destroyed) return false;
    if (err.dialFailed) {
      endpoint.markFailed(this.backend.failureBackoffMs, defaults.maxFailureBackoffMs);
      const failedOn = (this.failedOn ??= new Set());
      failedOn.add(endpoint);
      if (failedOn.size >= Math.min(maxEndpointAttempts, this.backend.endpointCount)) {
        this.metrics.proxyErrors.inc([this.backendName, "no-connection-to-all-resolved-addresses"]);
        return false;
      }
    } else if (this.replays++ >= maxReplays) return false;
    this.attempt();
    return true;
  }
}

const timeoutUnitMs: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1_000, m: 1, u: 0.001, n: 0.000001 };

/** grpc-timeout ("100m", "5S", …: at most 8 digits and a unit, per the gRPC over HTTP/2 spec) in ms. */
export function grpcTimeoutMs(value: string | string[] | undefined): number | undefined {
  if (typeof value !== "string") return undefined;
  const m = /^(\d{1,8})([HMSmun])$/.exec(value);
  return m ? Number(m[1]) * timeoutUnitMs[m[2]] : undefined;
}
