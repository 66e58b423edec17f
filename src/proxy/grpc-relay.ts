import type { ClientStream } from "./client-stream.js";
import type { H2Headers } from "../h2/hpack.js";
import type { StreamError } from "../h2/frames.js";
import type { H2Stream, StreamHandler } from "../upstream/h2/stream.js";
import { answerStatus, GrpcStatus, statusTrailers, type CallRecord } from "./grpc-call.js";
import type { RetryPolicy, RetryReason } from "../backend/retry-policy.js";
import { HeldRanges } from "./held-ranges.js";
import { Batch } from "../net/batch.js";
import type { AttemptRelay, RequestReplay } from "./request-replay.js";
import { grpcAnswerReason } from "./retry-reasons.js";

/** grpc-status UNAVAILABLE as it arrives: the status outlier detection counts. */
const unavailable = String(GrpcStatus.UNAVAILABLE);

/** The call a relay carries one attempt of: it holds the attempt's endpoint and decides on retries. */
export interface RelayOwner {
  readonly backendName: string;
  /** Absolute deadline (performance.now() ms) from grpc-timeout. */
  readonly deadlineAt: number | undefined;
  readonly replay: RequestReplay;
  /** The route's retry policy, if it has one. */
  readonly retryPolicy: RetryPolicy | undefined;
  /**
   * The stream never reached the backend's application (refused, or the endpoint unreachable);
   * returns true when the call was started again elsewhere.
   */
  retryUnprocessed(err: StreamError): boolean;
  /** The backend saw the call and the attempt failed before any answer reached the client: true when the policy retries it (the attempt is released; call resend()). */
  retryAnswered(reason: RetryReason, resendable: boolean): boolean;
  /** Starts the next attempt. */
  resend(): void;
  /** The backend answered the attempt. */
  succeeded(): void;
  /** How the answer went, for outlier detection (Attempts.answered): `failed` for UNAVAILABLE or a reset. */
  answered(failed: boolean): void;
  /** The attempt is over. */
  release(): void;
}

function deadlinePassed(relay: GrpcRelay): void {
  relay.expire();
}

function perTryPassed(relay: GrpcRelay): void {
  relay.perTryExpired();
}

// respond()'s options, made once rather than per call.
const endStreamOption = { endStream: true } as const;
const waitForTrailersOption = { waitForTrailers: true } as const;

/** Relays with bytes held, flushed together once the current socket read has been handled. */
const toFlush = new Batch<GrpcRelay>();

function flushOne(relay: GrpcRelay): void {
  relay.flush();
}

function flushHeld(): void {
  toFlush.drain(flushOne);
}

/**
 * Proxies one gRPC call over an upstream stream without decoding messages: headers, DATA
 * frames both ways with backpressure, trailers through waitForTrailers. The backend's frames are
 * held and written to the client together once per socket read (a microtask runs once the
 * connection has handled the read): a unary answer's HEADERS, DATA and trailers leave in one
 * write, a stream's messages that arrived together in one write. Bun cannot
 * send RST_STREAM from a server stream, so every failure is answered with a grpc-status instead.
 */
export class GrpcRelay implements StreamHandler, AttemptRelay {
  upstream: H2Stream | undefined;
  /** The backend's response headers, not yet passed on: as decoded, read-only (see respondForwarded). */
  private headers: H2Headers | undefined;
  /** The backend's body bytes held for the next flush: ranges [start, end) of socket reads. */
  private readonly held = new HeldRanges();
  private flushQueued = false;
  /** The trailers the client gets: the backend's, as decoded, or kedge's own status. */
  private trailersOut: H2Headers | undefined;
  private ended = false;
  private responded = false;
  private replayed = false;
  private finished = false;
  private deadline: Timer | undefined;
  /** Fires when the backend has sent no response headers within the retry policy's per_try_timeout. */
  private perTry: Timer | undefined;

  constructor(
    private readonly client: ClientStream,
    private readonly call: CallRecord,
    private readonly owner: RelayOwner,
  ) {}

  /** Wires the client to the upstream stream `request` opens with this relay as its handler. */
  start(upstream: H2Stream): void {
    this.upstream = upstream;
    if (this.finished) return; // closed while opening (its close has run)
    const { client, owner } = this;
    if (client.destroyed || client.closed) {
      // The client left while the call was being routed: its close event has passed.
      upstream.cancel();
      this.finish();
      this.call.record("cancelled");
      return;
    }
    // kedge enforces the deadline itself too: a client that does not (or a backend that ignores
    // grpc-timeout) must not hold a call open forever.
    if (owner.deadlineAt !== undefined) this.deadline = setTimeout(deadlinePassed, Math.max(0, owner.deadlineAt - performance.now()), this);
    const perTryMs = owner.retryPolicy?.perTryTimeoutMs;
    if (perTryMs) this.perTry = setTimeout(perTryPassed, perTryMs, this);
    owner.replay.relay = this;
    owner.replay.attach(upstream);
  }

  expire(): void {
    if (this.finished) return;
    this.upstream?.cancel();
    this.finish();
    this.fail(GrpcStatus.DEADLINE_EXCEEDED, "deadline exceeded");
  }

  /** No response headers within per_try_timeout: the attempt is given up, and retried as a 504 where the policy allows. */
  perTryExpired(): void {
    if (this.finished || this.responded) return;
    this.upstream?.cancel();
    if (this.retryAnswer("timeout")) return;
    this.finish();
    this.failAttempt(`backend ${this.owner.backendName} sent no response headers within per_try_timeout`);
  }

  clientClosed(): void {
    // A client cancel cancels the backend call.
    this.upstream?.cancel();
    this.finish();
    this.call.record("cancelled"); // no-op when a status was already recorded
  }

  /** The client can take more: the backend's stream, paused while it could not, goes on. */
  clientDrained(): void {
    if (this.upstream?.paused) this.upstream.resume();
  }

  wantTrailers(): void {
    if (this.replayed) return;
    const final = this.trailersOut ?? statusTrailers(GrpcStatus.INTERNAL, "backend sent no trailers");
    try {
      this.client.sendTrailersForwarded(final);
      this.call.record(final["grpc-status"] as string);
    } catch (e) {
      this.call.record(GrpcStatus.UNAVAILABLE);
      this.client.sendTrailers(statusTrailers(GrpcStatus.UNAVAILABLE, this.unforwardable(e)));
    }
  }

  response(headers: H2Headers, endStream: boolean): void {
    this.responded = true;
    clearTimeout(this.perTry);
    this.owner.succeeded();
    if (endStream) this.owner.answered(headers["grpc-status"] === unavailable); // trailers-only
    if (endStream && this.owner.retryPolicy !== undefined) {
      const reason = grpcAnswerReason(headers[":status"], headers["grpc-status"]);
      if (reason !== undefined && this.retryAnswer(reason)) return;
    }
    const obs = this.call.obs;
    if (obs) obs.firstByteAt = performance.now();
    const client = this.client;
    if (client.destroyed || client.closed) return;
    if (endStream) {
      this.owner.replay.stop();
      this.call.record(headers["grpc-status"]);
      this.respond(headers, endStreamOption); // trailers-only: status in the headers
      return;
    }
    this.headers = headers;
    this.queueFlush();
  }

  data(bytes: Uint8Array, start: number, end: number): void {
    if (this.call.obs) this.call.obs.bytesOut += end - start;
    this.held.add(bytes, start, end);
    this.queueFlush();
  }

  trailers(headers: H2Headers): void {
    this.owner.answered(headers["grpc-status"] === unavailable);
    this.trailersOut = headers;
  }

  /** The backend's side ended: everything held goes now, then the trailers (wantTrailers). */
  end(): void {
    const headers = this.headers;
    if (!headers && !this.client.headersSent) return; // trailers-only, already answered
    // Headers and trailers and no message, none of it passed on yet: as good as trailers-only.
    if (headers !== undefined && this.held.count === 0 && this.owner.retryPolicy !== undefined && !this.client.headersSent) {
      const reason = grpcAnswerReason(headers[":status"], this.trailersOut?.["grpc-status"]);
      if (reason !== undefined && this.retryAnswer(reason)) return;
    }
    this.ended = true;
    this.flush();
  }

  close(err: StreamError | undefined): void {
    if (this.finished) return;
    this.finish();
    if (!err) return void this.flush();
    if (!this.responded && err.unprocessed && this.owner.replay.replayable && !this.client.closed) {
      this.owner.replay.detach();
      if (this.owner.retryUnprocessed(err)) {
        this.replayed = true;
        return;
      }
    } else {
      if (!err.unprocessed || err.dialFailed) this.owner.answered(true); // a reset, or an endpoint out of reach (retry() counts those it sees)
      if (!this.responded && this.owner.retryPolicy !== undefined && this.retryAnswer("reset")) return;
    }
    this.failAttempt(`backend ${this.owner.backendName}: ${err.message}`);
  }

  /** The attempt failed and is not retried: DEADLINE_EXCEEDED once the caller's deadline has passed, else UNAVAILABLE. */
  private failAttempt(message: string): void {
    const deadlineAt = this.owner.deadlineAt;
    if (deadlineAt !== undefined && performance.now() >= deadlineAt) return this.fail(GrpcStatus.DEADLINE_EXCEEDED, "deadline exceeded");
    this.fail(GrpcStatus.UNAVAILABLE, message);
  }

  /**
   * The backend saw the call and this attempt failed before anything of it reached the client:
   * true when the route's policy sent the call again (a new relay carries it); false leaves this
   * attempt as it was.
   */
  private retryAnswer(reason: RetryReason): boolean {
    const { client, owner } = this;
    if (!owner.retryAnswered(reason, owner.replay.replayable && !client.closed && !client.destroyed)) return false;
    this.finish(); // its endpoint is released already
    this.headers = undefined;
    this.held.clear();
    this.replayed = true;
    owner.resend();
    return true;
  }

  drain(): void {
    this.owner.replay.drained();
  }

  /** Sends the backend's headers; false when the client's stream refuses them (fields HTTP/2 forbids: the call is answered UNAVAILABLE instead). */
  private respond(headers: H2Headers, options: { endStream?: boolean; waitForTrailers?: boolean }): boolean {
    try {
      this.client.respondForwarded(headers, this.owner.backendName, options);
      return true;
    } catch (e) {
      answerStatus(this.client, GrpcStatus.UNAVAILABLE, this.unforwardable(e), this.call);
      return false;
    }
  }

  /** Why a backend's answer could not be passed on: the backend's fault, answered UNAVAILABLE. */
  private unforwardable(e: unknown): string {
    return `backend ${this.owner.backendName} sent headers kedge cannot forward: ${(e as Error).message}`;
  }

  /** Ends the client's call with this status: a trailers-only answer, or trailers after what was sent. */
  private fail(code: number, message: string): void {
    this.flush();
    const client = this.client;
    if (!client.headersSent) return answerStatus(client, code, message, this.call);
    this.trailersOut = statusTrailers(code, message);
    if (!client.writableEnded) client.end();
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    clearTimeout(this.deadline);
    clearTimeout(this.perTry);
    this.owner.release();
  }

  private queueFlush(): void {
    if (this.flushQueued) return;
    this.flushQueued = true;
    if (toFlush.add(this)) queueMicrotask(flushHeld);
  }

  /** Writes what is held now; called before any error path decides between headers and trailers. */
  flush(): void {
    this.flushQueued = false;
    const { client, held } = this;
    if (!this.headers && held.count === 0 && !this.ended) return;
    if (client.destroyed || client.closed) {
      held.clear();
      return;
    }
    if (this.headers) {
      const headers = this.headers;
      this.headers = undefined;
      this.owner.replay.stop(); // the answer is the client's now: the call is never sent again
      if (!this.respond(headers, waitForTrailersOption)) return;
    }
    if (!client.headersSent) return;
    // An ended answer's last bytes (a unary call's message) go with the end.
    const ending = this.ended && !client.writableEnded;
    const ok = held.writeTo(client, ending);
    if (!ending && !ok && this.upstream && !this.upstream.paused) this.upstream.pause(); // until clientDrained
  }
}
