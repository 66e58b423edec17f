import { constants, type ClientHttp2Stream, type IncomingHttpHeaders, type OutgoingHttpHeaders, type ServerHttp2Stream } from "node:http2";
import type { GrpcBackend } from "../backend/grpc-backend.js";
import { defaults } from "../backend/http-backend.js";
import type { H2Session } from "../upstream/h2-session.js";
import type { Endpoint } from "../backend/endpoint.js";
import { KedgeError } from "../errors.js";
import { parseHostPort } from "../router/host.js";
import type { Runtime } from "../runtime.js";
import type { ProxyContext } from "./http.js";

const maxEndpointAttempts = 3;

/** gRPC status codes kedge itself answers with. */
export const GrpcStatus = { UNIMPLEMENTED: 12, UNAVAILABLE: 14, INTERNAL: 13, DEADLINE_EXCEEDED: 4, PERMISSION_DENIED: 7 } as const;

// Connection-specific fields never cross an HTTP/2 hop (RFC 9113 §8.2.2); Proxy-Authorization is kedge's own.
const notForwarded = new Set(["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "host", "proxy-authorization", "http2-settings"]);

function forwardable(headers: IncomingHttpHeaders, into: OutgoingHttpHeaders): OutgoingHttpHeaders {
  for (const name in headers) {
    if (name.charCodeAt(0) === 58 /* ":" */ || notForwarded.has(name)) continue;
    const v = headers[name];
    if (v !== undefined) into[name] = v;
  }
  return into;
}

/** Counts each call once, by backend, method and the grpc-status its client got. */
class CallRecord {
  private readonly started = performance.now();
  private recorded = false;
  backendName = "none";

  constructor(
    private readonly ctx: ProxyContext,
    private readonly method: string,
  ) {}

  record(code: string | number | string[] | undefined): void {
    if (this.recorded) return;
    this.recorded = true;
    const grpcCode = String(code ?? "unknown");
    // Unrouted calls name any path a client makes up: one label keeps the series bounded.
    const method = this.backendName === "none" ? "unrouted" : this.method;
    this.ctx.metrics.grpcRequests.inc([this.backendName, method, grpcCode]);
    this.ctx.metrics.grpcLatency.observe([this.backendName, grpcCode], (performance.now() - this.started) / 1000);
  }
}

/** A trailers-only response: the whole answer in one HEADERS frame with END_STREAM (gRPC over HTTP/2 spec). */
function answerStatus(stream: ServerHttp2Stream, code: number, message: string, call: CallRecord): void {
  call.record(code);
  if (stream.destroyed || stream.closed || stream.headersSent) return;
  stream.respond(
    { ":status": 200, "content-type": "application/grpc", "grpc-status": String(code), "grpc-message": encodeURIComponent(message) },
    { endStream: true },
  );
}

function statusFor(err: KedgeError): number {
  if (err.type === "no-route" || err.type === "no-backend") return GrpcStatus.UNIMPLEMENTED;
  if (err.type === "adhoc-port-not-allowed") return GrpcStatus.PERMISSION_DENIED;
  return GrpcStatus.UNAVAILABLE;
}

/** Where a call goes: its backend from the first route that matches service, authority and metadata. */
function routeCall(runtime: Runtime, headers: IncomingHttpHeaders): { backend: GrpcBackend; backendName: string } {
  const path = (headers[":path"] as string | undefined) ?? "";
  const slash = path.indexOf("/", 1);
  const service = slash > 0 ? path.slice(1, slash) : path.slice(1);
  const method = slash > 0 ? path.slice(slash + 1) : "";
  const authority = ((headers[":authority"] ?? headers.host) as string | undefined) ?? "";
  const hostPort = parseHostPort(authority, 0) ?? { host: "", port: 0 };
  const route = runtime.grpcRoutes.match({ service, method, host: hostPort.host, port: hostPort.port, metadata: headers });
  if (!route) {
    const target = runtime.grpcAdhoc.match(hostPort.host, hostPort.port || undefined);
    if (!target) throw new KedgeError("no-route", 502, "unknown route to service");
    return { backend: runtime.adhoc.grpc.get(target.host, target.port), backendName: "adhoc" };
  }
  const backend = runtime.grpcBackends.get(route.backendName);
  if (!backend) throw new KedgeError("no-backend", 502, "unknown backend");
  return { backend, backendName: route.backendName };
}

/**
 * Proxies one gRPC call without decoding messages: headers, DATA frames both ways with
 * backpressure (pipe), and trailers forwarded through waitForTrailers. Bun cannot send
 * RST_STREAM from a server stream, so every failure is answered with a grpc-status instead.
 */
export function proxyGrpc(ctx: ProxyContext, stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
  stream.on("error", () => {});
  const call = new CallRecord(ctx, (headers[":path"] as string | undefined) ?? "");
  let routed;
  try {
    routed = routeCall(ctx.runtime(), headers);
  } catch (e) {
    const err = e instanceof KedgeError ? e : new KedgeError("internal", 500, "internal error");
    ctx.metrics.proxyErrors.inc(["none", err.type]);
    return answerStatus(stream, statusFor(err), err.message, call);
  }
  const { backend, backendName } = routed;
  call.backendName = backendName;
  const failedOn = new Set<Endpoint>();
  // A call whose session could not be opened has sent nothing: it is safe to try another endpoint.
  const attempt = () => {
    let picked: { endpoint: Endpoint; pool: H2Session };
    try {
      picked = backend.pick(failedOn);
    } catch (e) {
      ctx.metrics.proxyErrors.inc([backendName, (e as KedgeError).type]);
      return answerStatus(stream, GrpcStatus.UNAVAILABLE, (e as Error).message, call);
    }
    const { endpoint, pool } = picked;
    const upstreamHeaders = forwardable(headers, {
      ":method": "POST",
      ":path": headers[":path"],
      ":authority": headers[":authority"] ?? headers.host,
      ":scheme": pool.options.tls ? "https" : "http",
    });
    endpoint.outstanding++;
    pool.request(upstreamHeaders).then(
      (upstream) => {
        endpoint.markHealthy();
        relay(stream, upstream, call, grpcTimeoutMs(headers["grpc-timeout"]), () => endpoint.outstanding--);
      },
      (err: Error) => {
        endpoint.outstanding--;
        endpoint.markFailed(backend.failureBackoffMs, defaults.maxFailureBackoffMs);
        failedOn.add(endpoint);
        if (failedOn.size < Math.min(maxEndpointAttempts, backend.endpointCount) && !stream.closed) return attempt();
        ctx.metrics.proxyErrors.inc([backendName, "no-connection-to-all-resolved-addresses"]);
        answerStatus(stream, GrpcStatus.UNAVAILABLE, `backend ${backendName}: ${err.message}`, call);
      },
    );
  };
  const pending = backend.pendingResolution;
  if (pending) void pending.then(attempt);
  else attempt();
}

const timeoutUnitMs: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1_000, m: 1, u: 0.001, n: 0.000001 };

/** grpc-timeout ("100m", "5S", …: at most 8 digits and a unit, per the gRPC over HTTP/2 spec) in ms. */
export function grpcTimeoutMs(value: string | string[] | undefined): number | undefined {
  if (typeof value !== "string") return undefined;
  const m = /^(\d{1,8})([HMSmun])$/.exec(value);
  return m ? Number(m[1]) * timeoutUnitMs[m[2]] : undefined;
}

function statusTrailers(code: number, message: string): OutgoingHttpHeaders {
  return { "grpc-status": String(code), "grpc-message": encodeURIComponent(message) };
}

function relay(stream: ServerHttp2Stream, upstream: ClientHttp2Stream, call: CallRecord, timeoutMs: number | undefined, done: () => void): void {
  const backendName = call.backendName;
  let trailers: OutgoingHttpHeaders | undefined;
  let finished = false;
  let deadline: Timer | undefined;
  const finish = () => {
    if (!finished) {
      finished = true;
      clearTimeout(deadline);
      done();
    }
  };
  // kedge enforces the deadline itself too: a client that does not (or a backend that ignores
  // grpc-timeout) must not hold a call open forever.
  if (timeoutMs !== undefined) {
    deadline = setTimeout(() => {
      if (finished) return;
      upstream.close(constants.NGHTTP2_CANCEL);
      if (!stream.headersSent) return answerStatus(stream, GrpcStatus.DEADLINE_EXCEEDED, "deadline exceeded", call);
      trailers = statusTrailers(GrpcStatus.DEADLINE_EXCEEDED, "deadline exceeded");
      if (!stream.writableEnded) stream.end();
    }, timeoutMs);
  }
  upstream.on("response", (responseHeaders, flags) => {
    if (stream.destroyed || stream.closed) return;
    const out = forwardable(responseHeaders, { ":status": responseHeaders[":status"] ?? 200, "x-kedge-backend-name": backendName });
    if (flags & constants.NGHTTP2_FLAG_END_STREAM) {
      call.record(responseHeaders["grpc-status"]);
      stream.respond(out, { endStream: true }); // trailers-only: status in the headers
      return;
    }
    stream.respond(out, { waitForTrailers: true });
    upstream.pipe(stream);
  });
  upstream.on("trailers", (t) => {
    trailers = forwardable(t, {});
  });
  stream.on("wantTrailers", () => {
    const final = trailers ?? statusTrailers(GrpcStatus.INTERNAL, "backend sent no trailers");
    call.record(final["grpc-status"] as string);
    stream.sendTrailers(final);
  });
  upstream.on("error", (err) => {
    finish();
    if (!stream.headersSent) return answerStatus(stream, GrpcStatus.UNAVAILABLE, `backend ${backendName}: ${err.message}`, call);
    trailers ??= statusTrailers(GrpcStatus.UNAVAILABLE, `backend ${backendName}: ${err.message}`);
    if (!stream.writableEnded) stream.end();
  });
  upstream.on("close", () => {
    finish();
    if (stream.headersSent || stream.destroyed || stream.closed) {
      // The backend reset the stream mid-call: end the client's call with a status, never a hang.
      if (!trailers && stream.headersSent && !stream.writableEnded) {
        trailers = statusTrailers(GrpcStatus.UNAVAILABLE, `backend ${backendName} closed the stream`);
        stream.end();
      }
      return;
    }
    answerStatus(stream, GrpcStatus.UNAVAILABLE, `backend ${backendName} closed the stream`, call);
  });
  // Client → backend, with backpressure; a client cancel cancels the backend call.
  stream.pipe(upstream);
  stream.on("close", () => {
    if (!upstream.closed) upstream.close(constants.NGHTTP2_CANCEL);
    call.record("cancelled"); // no-op when a status was already recorded
  });
}
