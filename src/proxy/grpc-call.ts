import type { IncomingHttpHeaders, OutgoingHttpHeaders, ServerHttp2Stream } from "node:http2";
import type { ProxyContext } from "./http.js";

/** gRPC status codes kedge itself answers with. */
export const GrpcStatus = { UNIMPLEMENTED: 12, UNAVAILABLE: 14, INTERNAL: 13, DEADLINE_EXCEEDED: 4, PERMISSION_DENIED: 7, UNAUTHENTICATED: 16 } as const;

// Connection-specific fields never cross an HTTP/2 hop (RFC 9113 §8.2.2); Proxy-Authorization is kedge's own.
const notForwarded = new Set(["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "host", "proxy-authorization", "http2-settings"]);

export function forwardable(headers: IncomingHttpHeaders, into: OutgoingHttpHeaders): OutgoingHttpHeaders {
  for (const name in headers) {
    if (name.charCodeAt(0) === 58 /* ":" */ || notForwarded.has(name)) continue;
    const v = headers[name];
    if (v !== undefined) into[name] = v;
  }
  return into;
}

/** Counts each call once, by backend, method and the grpc-status its client got. */
export class CallRecord {
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
export function answerStatus(stream: ServerHttp2Stream, code: number, message: string, call: CallRecord): void {
  call.record(code);
  if (stream.destroyed || stream.closed || stream.headersSent) return;
  stream.respond(
    { ":status": 200, "content-type": "application/grpc", "grpc-status": String(code), "grpc-message": encodeURIComponent(message) },
    { endStream: true },
  );
}

export function statusTrailers(code: number, message: string): OutgoingHttpHeaders {
  return { "grpc-status": String(code), "grpc-message": encodeURIComponent(message) };
}

