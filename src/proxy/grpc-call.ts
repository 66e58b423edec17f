import type { IncomingHttpHeaders, OutgoingHttpHeaders } from "node:http2";
import type { ClientStream } from "./client-stream.js";
import type { ProxyMetrics } from "../observe/metrics.js";
import type { Observation } from "../observe/observer.js";
import { asKedgeError, type KedgeError } from "../errors.js";
import { recordError, recordFinished, recordRetry, recordStarted, type Outcome, type RecordedGrpc } from "./record.js";
import type { RetryReason } from "../backend/retry-policy.js";
import { addField, addFieldValues, startBlock } from "../h2/hpack.js";
import { notForwardedH2 } from "../net/hop-headers.js";

/** gRPC status codes kedge itself answers with. */
export const GrpcStatus = { UNIMPLEMENTED: 12, UNAVAILABLE: 14, INTERNAL: 13, DEADLINE_EXCEEDED: 4, PERMISSION_DENIED: 7, UNAUTHENTICATED: 16, RESOURCE_EXHAUSTED: 8 } as const;

/**
 * A call's header block for the backend, encoded straight from the client's headers: the
 * pseudo-headers, the client's metadata that may cross the hop, then `set` (in place of the
 * client's fields of those names: winch's injected credentials) and kedge's traceparent. Left as
 * the encoder's current block: start its stream (H2Session.request) before building another.
 */
export function upstreamBlock(headers: IncomingHttpHeaders, scheme: string, set: Record<string, string> | undefined, traceparent: string | undefined): void {
  startBlock();
  addField(":method", "POST");
  addField(":scheme", scheme);
  const path = headers[":path"];
  if (path !== undefined) addFieldValues(":path", path);
  const authority = headers[":authority"] ?? headers.host;
  if (authority !== undefined) addFieldValues(":authority", authority);
  for (const name in headers) {
    if (name.charCodeAt(0) === 58 /* ":" */ || notForwardedH2.has(name) || (set !== undefined && name in set)) continue;
    if (traceparent !== undefined && name === "traceparent") continue;
    const v = headers[name];
    if (v !== undefined) addFieldValues(name, v);
  }
  if (set) for (const name in set) addField(name, set[name]);
  if (traceparent !== undefined) addField("traceparent", traceparent);
}

/** A call's facts for the accounting (record.ts), which counts it once, by backend, method, route and the grpc-status its client got. */
export class CallRecord implements RecordedGrpc {
  readonly protocol = "grpc";
  recorded = false;
  readonly startedAt = performance.now();
  backendName = "none";
  route = "none";
  readonly obs: Observation | undefined;
  /** Set once the call goes to a backend. */
  attempts: { release(): void } | undefined = undefined;

  constructor(
    private readonly metrics: ProxyMetrics,
    readonly method: string,
    readonly headers: IncomingHttpHeaders,
    private readonly stream: ClientStream,
  ) {
    recordStarted(metrics, this);
    this.obs = metrics.observer.start(headers);
  }

  get socket(): { remoteAddress?: string } | null | undefined {
    return this.stream.session?.socket;
  }

  /** kedge, not the backend, refused or failed the call with an error of `type`. */
  error(type: string): void {
    recordError(this.metrics, this, type);
  }

  /** An attempt of it was sent again (or, `made` false, the backend's retry budget refused one). */
  retried(reason: RetryReason, made: boolean): void {
    recordRetry(this.metrics, this, reason, made);
  }

  record(code: Outcome): void {
    recordFinished(this.metrics, this, code);
  }
}

/**
 * A trailers-only response: the whole answer in one HEADERS frame with END_STREAM (gRPC over HTTP/2
 * spec). `retryAfter` (seconds) becomes grpc-retry-pushback-ms, the delay a client's retry policy
 * waits before trying again (gRPC A6).
 */
export function answerStatus(stream: ClientStream, code: number, message: string, call: CallRecord, retryAfter?: number): void {
  call.record(code);
  if (stream.destroyed || stream.closed || stream.headersSent) return;
  const headers: OutgoingHttpHeaders = { ":status": 200, "content-type": "application/grpc", "grpc-status": String(code), "grpc-message": grpcMessage(message) };
  if (retryAfter !== undefined) headers["grpc-retry-pushback-ms"] = String(retryAfter * 1000);
  stream.respond(headers, { endStream: true });
}

export function statusTrailers(code: number, message: string): Record<string, string> {
  return { "grpc-status": String(code), "grpc-message": grpcMessage(message) };
}

const plainMessage = /^[\x20-\x24\x26-\x7e]*$/;
const hexByte = Array.from({ length: 256 }, (_, b) => `%${b.toString(16).toUpperCase().padStart(2, "0")}`);

/**
 * grpc-message as PROTOCOL-HTTP2.md asks: the UTF-8 bytes, with only those outside 0x20–0x7E and
 * "%" itself percent-encoded. encodeURIComponent escapes ":", "/" and spaces too, which a client
 * following the spec does not decode, so the caller would read `proxy%3Ause`.
 */
export function grpcMessage(message: string): string {
  if (plainMessage.test(message)) return message;
  let out = "";
  for (const b of Buffer.from(message, "utf8")) out += b >= 0x20 && b <= 0x7e && b !== 0x25 ? String.fromCharCode(b) : hexByte[b];
  return out;
}

/**
 * Accounting for one call from its first byte, and how to refuse it: the error is counted and
 * answered with the status `statusFor` gives it.
 */
export function openCall(metrics: ProxyMetrics, stream: ClientStream, headers: IncomingHttpHeaders, statusFor: (err: KedgeError) => number): { call: CallRecord; refuse: (e: unknown) => void } {
  const call = new CallRecord(metrics, (headers[":path"] as string | undefined) ?? "", headers, stream);
  return { call, refuse: (e: unknown) => refuseCall(call, stream, e, statusFor) };
}

/** Refuses a call kedge will not forward: the error is counted and answered with the status `statusFor` gives it. */
export function refuseCall(call: CallRecord, stream: ClientStream, e: unknown, statusFor: (err: KedgeError) => number): void {
  const err = asKedgeError(e);
  call.error(err.type);
  answerStatus(stream, statusFor(err), err.message, call, err.retryAfter);
}
