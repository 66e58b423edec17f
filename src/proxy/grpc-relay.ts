import { constants, type ClientHttp2Stream, type OutgoingHttpHeaders, type ServerHttp2Stream } from "node:http2";
import { answerStatus, forwardable, GrpcStatus, statusTrailers, type CallRecord } from "./grpc-call.js";

/** A call whose body outgrows this is never replayed; it fails as UNAVAILABLE if refused. */
const replayLimitBytes = 64 * 1024;

/**
 * The client's request bytes sent upstream before the backend answered. A backend that refuses
 * a stream it never processed (REFUSED_STREAM, or streams above a GOAWAY's last-stream-id:
 * RFC 9113 §8.7) leaves the call safe to retry; with these bytes kedge replays it on a fresh
 * session instead of failing it, as gRPC clients do with transparent retry.
 *
 * It also gathers what the client sends in the same event-loop turn as its headers before the
 * upstream stream opens: Bun's node:http2 sends one packet per frame unless a session's frames are
 * written together, so a unary call's HEADERS, DATA and END_STREAM go out in one write this way.
 */
export class RequestReplay {
  private chunks: Buffer[] | undefined = [];
  private size = 0;
  private attached = false;
  /** Over the replay limit before the first upstream took the bytes: they are sent once, never replayed. */
  private oversize = false;

  constructor(private readonly client: ServerHttp2Stream) {
    client.on("data", this.record);
  }

  private readonly record = (chunk: Buffer) => {
    if (!this.chunks) return;
    this.size += chunk.length;
    if (this.size <= replayLimitBytes) this.chunks.push(chunk);
    else if (this.attached) this.stop();
    else {
      this.chunks.push(chunk);
      this.oversize = true;
    }
  };

  get replayable(): boolean {
    return this.chunks !== undefined && !this.oversize;
  }

  /**
   * Calls `ready` once the client's body has ended or this event-loop turn is over, whichever is
   * first; the client is then paused until an upstream takes its bytes (flow control holds the rest).
   */
  gather(ready: () => void): void {
    if (this.client.readableEnded) return ready();
    let called = false;
    const go = () => {
      if (called) return;
      called = true;
      clearImmediate(turn);
      this.client.off("end", go);
      if (!this.attached && !this.client.readableEnded) this.client.pause();
      ready();
    };
    const turn = setImmediate(go);
    this.client.once("end", go);
  }

  /** The backend answered, or the body outgrew the limit: nothing is kept any more. */
  stop(): void {
    this.chunks = undefined;
    this.client.off("data", this.record);
  }

  /** Sends the client's body to this upstream: what arrived so far, then the rest as it arrives. */
  attach(upstream: ClientHttp2Stream): void {
    this.attached = true;
    const chunks = this.chunks ?? [];
    const ended = this.client.readableEnded;
    const n = ended ? chunks.length - 1 : chunks.length;
    for (let i = 0; i < n; i++) upstream.write(chunks[i]);
    if (this.oversize) this.stop();
    if (ended) upstream.end(chunks.length > 0 ? chunks[chunks.length - 1] : undefined);
    else this.client.pipe(upstream);
  }

  /** Stops the flow into a refused upstream; the client's further bytes wait in its stream. */
  detach(upstream: ClientHttp2Stream): void {
    this.client.unpipe(upstream);
    this.client.pause();
  }
}

export interface RelayOptions {
  /** Absolute deadline (performance.now() ms) from grpc-timeout. */
  deadlineAt: number | undefined;
  replay: RequestReplay;
  /** Called once when the upstream stream ends for good. */
  done: () => void;
  /** The backend refused the stream unprocessed; returns true when the call was started again elsewhere. */
  retry: () => boolean;
}

/** Errors that mean the stream never reached the backend's application (RFC 9113 §8.7). */
const unprocessedErrors = new Set(["ERR_HTTP2_GOAWAY_SESSION", "ERR_HTTP2_INVALID_SESSION"]);

function refusedUnprocessed(upstream: ClientHttp2Stream, err?: Error): boolean {
  return upstream.rstCode === constants.NGHTTP2_REFUSED_STREAM || unprocessedErrors.has((err as { code?: string } | undefined)?.code ?? "");
}

/**
 * The backend's response frames for the client, written together once per event-loop turn (see
 * RequestReplay on why): a unary answer's HEADERS, DATA and trailers leave in one write, a stream's
 * messages in one write per turn instead of one per message. Backpressure as with pipe(): a full
 * client stream pauses the upstream until it drains.
 */
class ResponseBatch {
  private headers: OutgoingHttpHeaders | undefined;
  private readonly chunks: Buffer[] = [];
  private turn: ReturnType<typeof setImmediate> | undefined;
  private ended = false;
  /** The backend answered with headers and a body to come (not trailers-only). */
  private started = false;

  constructor(
    private readonly stream: ServerHttp2Stream,
    private readonly upstream: ClientHttp2Stream,
  ) {}

  head(headers: OutgoingHttpHeaders): void {
    this.started = true;
    this.headers = headers;
    this.turn ??= setImmediate(this.flush);
  }

  data(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.turn ??= setImmediate(this.flush);
  }

  /** The upstream's body ended: everything held goes now, then the trailers (wantTrailers). */
  end(): void {
    if (!this.started) return;
    this.ended = true;
    this.flush();
  }

  /** Writes what is held now; called before any error path decides between headers and trailers. */
  readonly flush = (): void => {
    if (this.turn) clearImmediate(this.turn);
    this.turn = undefined;
    const { stream, chunks } = this;
    if (stream.destroyed || stream.closed) return void (chunks.length = 0);
    if (this.headers) {
      stream.respond(this.headers, { waitForTrailers: true });
      this.headers = undefined;
    }
    if (!stream.headersSent) return;
    let ok = true;
    for (const c of chunks) ok = stream.write(c);
    chunks.length = 0;
    if (this.ended) {
      if (!stream.writableEnded) stream.end();
    } else if (!ok && !this.upstream.isPaused()) {
      this.upstream.pause();
      stream.once("drain", () => this.upstream.resume());
    }
  };
}

/**
 * Proxies one gRPC call on an open upstream stream without decoding messages: headers, DATA
 * frames both ways with backpressure, trailers through waitForTrailers. Bun cannot send
 * RST_STREAM from a server stream, so every failure is answered with a grpc-status instead.
 */
export function relay(stream: ServerHttp2Stream, upstream: ClientHttp2Stream, call: CallRecord, options: RelayOptions): void {
  if (stream.destroyed || stream.closed) {
    // The client left while the upstream stream was opening: its close event has passed, so
    // nothing below would ever cancel the backend call or count this one.
    upstream.on("error", () => {});
    upstream.close(constants.NGHTTP2_CANCEL);
    options.done();
    call.record("cancelled");
    return;
  }
  const backendName = call.backendName;
  const batch = new ResponseBatch(stream, upstream);
  let trailers: OutgoingHttpHeaders | undefined;
  let finished = false;
  let responded = false;
  let replayed = false;
  let deadline: Timer | undefined;
  const finish = () => {
    if (!finished) {
      finished = true;
      clearTimeout(deadline);
      options.done();
    }
  };
  const replayedElsewhere = (err?: Error): boolean => {
    if (responded || !options.replay.replayable || !refusedUnprocessed(upstream, err)) return false;
    options.replay.detach(upstream);
    replayed = options.retry();
    return replayed;
  };
  // kedge enforces the deadline itself too: a client that does not (or a backend that ignores
  // grpc-timeout) must not hold a call open forever.
  if (options.deadlineAt !== undefined) {
    deadline = setTimeout(() => {
      if (finished) return;
      upstream.close(constants.NGHTTP2_CANCEL);
      batch.flush();
      if (!stream.headersSent) return answerStatus(stream, GrpcStatus.DEADLINE_EXCEEDED, "deadline exceeded", call);
      trailers = statusTrailers(GrpcStatus.DEADLINE_EXCEEDED, "deadline exceeded");
      if (!stream.writableEnded) stream.end();
    }, Math.max(0, options.deadlineAt - performance.now()));
  }
  upstream.on("response", (responseHeaders, flags) => {
    responded = true;
    options.replay.stop();
    if (call.obs) call.obs.firstByteAt = performance.now();
    if (stream.destroyed || stream.closed) return;
    const out = forwardable(responseHeaders, { ":status": responseHeaders[":status"] ?? 200, "x-kedge-backend-name": backendName });
    if (flags & constants.NGHTTP2_FLAG_END_STREAM) {
      call.record(responseHeaders["grpc-status"]);
      stream.respond(out, { endStream: true }); // trailers-only: status in the headers
      return;
    }
    batch.head(out);
  });
  upstream.on("data", (chunk: Buffer) => batch.data(chunk));
  upstream.on("end", () => batch.end());
  upstream.on("trailers", (t) => {
    trailers = forwardable(t, {});
  });
  stream.on("wantTrailers", () => {
    if (replayed) return;
    const final = trailers ?? statusTrailers(GrpcStatus.INTERNAL, "backend sent no trailers");
    call.record(final["grpc-status"] as string);
    stream.sendTrailers(final);
  });
  upstream.on("error", (err) => {
    if (replayed) return;
    finish();
    if (replayedElsewhere(err)) return;
    batch.flush();
    if (!stream.headersSent) return answerStatus(stream, GrpcStatus.UNAVAILABLE, `backend ${backendName}: ${err.message}`, call);
    trailers ??= statusTrailers(GrpcStatus.UNAVAILABLE, `backend ${backendName}: ${err.message}`);
    if (!stream.writableEnded) stream.end();
  });
  upstream.on("close", () => {
    if (replayed) return;
    finish();
    batch.flush();
    if (stream.headersSent || stream.destroyed || stream.closed) {
      // The backend reset the stream mid-call: end the client's call with a status, never a hang.
      if (!trailers && stream.headersSent && !stream.writableEnded) {
        trailers = statusTrailers(GrpcStatus.UNAVAILABLE, `backend ${backendName} closed the stream`);
        stream.end();
      }
      return;
    }
    if (replayedElsewhere()) return;
    answerStatus(stream, GrpcStatus.UNAVAILABLE, `backend ${backendName} closed the stream`, call);
  });
  // Client → backend, with backpressure; a client cancel cancels the backend call.
  options.replay.attach(upstream);
  if (call.obs?.logged) call.obs.countOut(upstream);
  stream.on("close", () => {
    if (!upstream.closed) upstream.close(constants.NGHTTP2_CANCEL);
    call.record("cancelled"); // no-op when a status was already recorded
  });
}
