import type { IncomingHttpHeaders } from "node:http2";
import type { ClientStream } from "./client-stream.js";
import { Attempts } from "../backend/attempts.js";
import type { GrpcBackend } from "../backend/grpc-backend.js";
import { checkHops, hopsHeader } from "../backend/kedge-tier.js";
import type { RetryPolicy, RetryReason } from "../backend/retry-policy.js";
import type { RoutePolicy } from "../auth/policy.js";
import type { CompiledGrpcRoute, GrpcCallFacts } from "../router/grpc.js";
import { KedgeError } from "../errors.js";
import { parseHostPort, type HostPort } from "../net/host-port.js";
import type { Runtime } from "../runtime.js";
import { answerStatus, CallRecord, GrpcStatus, refuseCall, upstreamBlock } from "./grpc-call.js";
import { GrpcRelay, type RelayOwner } from "./grpc-relay.js";
import { RequestReplay } from "./request-replay.js";
import type { StreamError } from "../h2/frames.js";
import { screened, type ProxyContext } from "./http.js";
import { routeLabel } from "../observe/metrics.js";
import type { DecisionSubject } from "../observe/audit-log.js";
import { admit } from "./admission.js";
import { screenUnderscoreNames } from "./underscore-names.js";

function statusFor(err: KedgeError): number {
  if (err.type === "no-route" || err.type === "no-backend") return GrpcStatus.UNIMPLEMENTED;
  if (err.type === "adhoc-port-not-allowed" || err.type === "forbidden") return GrpcStatus.PERMISSION_DENIED;
  if (err.type === "unauthorized") return GrpcStatus.UNAUTHENTICATED;
  // gRPC's mapping of HTTP 400 (doc/http-grpc-status-mapping.md).
  if (err.type === "bad-request") return GrpcStatus.INTERNAL;
  if (err.type === "rate-limited") return GrpcStatus.RESOURCE_EXHAUSTED;
  return GrpcStatus.UNAVAILABLE;
}

/** Where a call goes; read-only: a route's is made once and shared by its calls (routedBy). */
interface Routed {
  readonly backend: GrpcBackend | undefined;
  readonly backendName: string;
  readonly policy: RoutePolicy | undefined;
  /** The route label for metrics and access logs. */
  readonly route: string;
  /** The route's index in its table; undefined for an adhoc target or no route. */
  readonly index?: number;
  /** No route matched: answered once authentication has passed. */
  readonly unrouted?: KedgeError;
  readonly retry?: RetryPolicy;
}

/** Each route's Routed, made on its first call and kept while the route's backend is the same object (a reload makes new routes). */
const routedBy = new WeakMap<CompiledGrpcRoute, Routed>();
const noMetadata: GrpcCallFacts["metadata"] = Object.freeze(Object.create(null));
/** The facts a call is matched on, filled in place: the match is synchronous and keeps none of them. */
const callFacts: GrpcCallFacts = { service: "", method: "", host: "", port: 0, metadata: noMetadata };

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

let lastPath = "";
let lastService = "";
let lastMethod = "";

/** Where a call goes: its backend from the first route that matches service, authority and metadata. */
function routeCall(runtime: Runtime, headers: IncomingHttpHeaders): Routed {
  const path = (headers[":path"] as string | undefined) ?? "";
  // The last path's service and method are kept, as its authority is: a client repeats its calls.
  if (path !== lastPath) {
    const slash = path.indexOf("/", 1);
    lastService = slash > 0 ? path.slice(1, slash) : path.slice(1);
    lastMethod = slash > 0 ? path.slice(slash + 1) : "";
    lastPath = path;
  }
  const service = lastService;
  const method = lastMethod;
  const authority = ((headers[":authority"] ?? headers.host) as string | undefined) ?? "";
  const hostPort = hostPortOf(authority);
  callFacts.service = service;
  callFacts.method = method;
  callFacts.host = hostPort.host;
  callFacts.port = hostPort.port;
  callFacts.metadata = headers;
  const route = runtime.grpcRoutes.match(callFacts);
  callFacts.metadata = noMetadata; // the call's headers are not kept alive here
  if (!route) {
    const target = runtime.grpcAdhoc.match(hostPort.host, hostPort.port || undefined);
    if (!target) return { backend: undefined, backendName: "none", policy: undefined, route: "none", unrouted: new KedgeError("no-route", 502, "unknown route to service") };
    return { backend: runtime.adhoc.grpc.get(target.host, target.port), backendName: "adhoc", policy: undefined, route: "adhoc" };
  }
  const backend = runtime.grpcBackends.get(route.backendName);
  if (!backend) throw new KedgeError("no-backend", 502, "unknown backend");
  let routed = routedBy.get(route);
  if (routed === undefined || routed.backend !== backend) {
    routed = { backend, backendName: route.backendName, policy: route.policy, route: routeLabel(route.index), index: route.index, retry: route.retry };
    routedBy.set(route, routed);
  }
  return routed;
}

/** A call as its audit line names it. */
function callSubject(headers: IncomingHttpHeaders, socket: { remoteAddress?: string } | null | undefined, routed: Routed): DecisionSubject {
  const requestId = headers["x-kedge-request-id"];
  return {
    requestId: typeof requestId === "string" ? requestId.slice(0, 128) : undefined,
    address: socket?.remoteAddress ?? "",
    protocol: "grpc",
    method: undefined,
    authority: (headers[":authority"] ?? headers.host) as string | undefined,
    path: (headers[":path"] as string | undefined) ?? "",
    route: routed.route,
    backend: routed.backendName,
  };
}

/**
 * Proxies one gRPC call: authentication and rate limits, then the backend its route names. A call
 * decided synchronously (no auth to wait for) makes no closure: those are made only for a
 * decision that is a promise.
 */
export function proxyGrpc(ctx: ProxyContext, stream: ClientStream, headers: IncomingHttpHeaders): void {
  const call = new CallRecord(ctx.metrics, (headers[":path"] as string | undefined) ?? "", headers, stream);
  let routed: Routed;
  let decision: Promise<unknown> | undefined;
  try {
    const runtime = ctx.runtime();
    if (runtime.limits.maxHops > 0) checkHops(headers[hopsHeader], runtime.limits.maxHops);
    headers = screenUnderscoreNames(runtime.limits.headersWithUnderscores, headers) ?? headers;
    routed = routeCall(runtime, headers);
    call.route = routed.route;
    // A call refused from here on (401, 403, 429) is recorded against its backend, as HTTP's are.
    call.backendName = routed.backendName;
    const header = headers["proxy-authorization"];
    const proxyAuthorization = typeof header === "string" ? header : undefined;
    const socket = stream.session?.socket;
    decision = screened(runtime, ctx.metrics)
      ? admit(ctx.metrics, runtime, routed.policy, proxyAuthorization, socket, runtime.rateLimits.grpcRoute(routed.index, routed.route === "adhoc"), callSubject(headers, socket, routed))
      : runtime.access.check(routed.policy, proxyAuthorization, socket);
  } catch (e) {
    return refuseCall(call, stream, e, statusFor);
  }
  if (decision === undefined) return admitted(stream, headers, call, routed, undefined);
  decision.then(
    (identity) => admitted(stream, headers, call, routed, identity),
    (e) => refuseCall(call, stream, e, statusFor),
  );
}

/** The call passed authentication and its limits: to its backend, or refused when it has no route. */
function admitted(stream: ClientStream, headers: IncomingHttpHeaders, call: CallRecord, routed: Routed, identity: unknown): void {
  if (call.obs) call.obs.identity = identity;
  if (routed.unrouted) return refuseCall(call, stream, routed.unrouted, statusFor);
  forwardCall(stream, headers, call, routed.backend!, undefined, routed.retry);
}

/**
 * Sends the call to one of the backend's endpoints, failing over when an endpoint cannot be
 * reached and retrying as the route's `retry` policy says; `set` replaces the client's metadata
 * of the same names (winch's injected credentials).
 */
export function forwardCall(
  stream: ClientStream,
  headers: IncomingHttpHeaders,
  call: CallRecord,
  routedTo: GrpcBackend,
  set: Record<string, string> | undefined,
  retry?: RetryPolicy,
): void {
  const forward = new GrpcForward(stream, headers, call, routedTo, set);
  forward.retryPolicy = retry;
  forward.replay.gather(forward);
}

/** One call's attempts at its backend (the policy it extends): each attempt (an endpoint, a stream) is relayed by a GrpcRelay. */
class GrpcForward extends Attempts<GrpcBackend> implements RelayOwner {
  readonly backendName: string;
  readonly replay: RequestReplay;

  constructor(
    private readonly stream: ClientStream,
    private readonly headers: IncomingHttpHeaders,
    private readonly call: CallRecord,
    backend: GrpcBackend,
    private readonly set: Record<string, string> | undefined,
  ) {
    super();
    this.backend = backend;
    this.backendName = call.backendName;
    const timeoutMs = grpcTimeoutMs(headers["grpc-timeout"]);
    if (timeoutMs !== undefined) this.deadlineAt = performance.now() + timeoutMs;
    this.replay = new RequestReplay(stream, call.obs?.logged ? call.obs : undefined);
    call.attempts = this;
  }

  /** The body so far is in hand: waits for the backend's first resolution (a retired backend settles it), then sends. */
  gathered(): void {
    const pending = this.pendingResolution;
    if (pending) void pending.then(() => this.gathered());
    else this.attempt();
  }

  private attempt(): void {
    const { call, stream } = this;
    let picked;
    try {
      picked = this.next();
    } catch (e) {
      call.error((e as KedgeError).type);
      return answerStatus(stream, GrpcStatus.UNAVAILABLE, (e as Error).message, call);
    }
    const { endpoint, pool } = picked;
    const obs = call.obs;
    if (obs) obs.sentUpstream(endpoint.address, endpoint.tier);
    // Another cluster's kedge gets the hop count and kedge's credential there; an attempt elsewhere does not.
    const set = endpoint.hop === undefined ? this.set : endpoint.hop.fields(this.headers[hopsHeader], this.set);
    const relay = new GrpcRelay(stream, call, this);
    upstreamBlock(this.headers, pool.options.tls ? "https" : "http", set, obs?.traceparent);
    relay.start(pool.request(undefined, relay));
  }

  resend(): void {
    this.attempt();
  }

  protected override retryCounted(reason: RetryReason, made: boolean): void {
    this.call.retried(reason, made);
  }

  /** A stream that never reached the backend's application: sent again while the attempt policy allows. */
  retryUnprocessed(err: StreamError): boolean {
    const resendable = this.replay.replayable && !this.stream.closed && !this.stream.destroyed;
    if (!this.retry(err.dialFailed ? "dial" : "unprocessed", resendable)) {
      if (err.dialFailed && resendable && !this.pastDeadline()) this.call.error("no-connection-to-all-resolved-addresses");
      return false;
    }
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
