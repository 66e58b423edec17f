import type { OutgoingHttpHeaders } from "node:http2";
import type { HeadLines } from "../net/hop-headers.js";
import type { H2Headers } from "../h2/hpack.js";

/**
 * What a client's HTTP/2 stream tells the proxy, each synchronously: the mirror of the upstream
 * side's StreamHandler. One object per stream, so the proxy's per-call state is the handler and
 * no closure is made per call.
 */
export interface ClientStreamHandler {
  /** Request body bytes, in order; delivered while the stream flows (not paused). */
  data(chunk: Buffer): void;
  /** The client ended its side (END_STREAM), after all of its data. */
  end(): void;
  /** The stream is over (ended both ways, or reset): once, after the turn that closed it. */
  close(): void;
  /** write() returned false and the stream may take more now. */
  drain(): void;
  /** The response was sent with waitForTrailers and its body is out: send the trailers now. Without it the stream ends with no trailers. */
  wantTrailers?(): void;
}

/** A client's HTTP/2 stream as the proxy uses it: what kedge's own server (src/server/h2) offers. */
export interface ClientStream {
  /** The connection; its socket is where a client certificate and address are read. */
  readonly session: { readonly socket?: object | null } | undefined;
  readonly headersSent: boolean;
  readonly destroyed: boolean;
  readonly closed: boolean;
  /** The request's end has been delivered (the handler's end()). */
  readonly readableEnded: boolean;
  readonly writableEnded: boolean;
  /** The response's end (END_STREAM) has gone out. */
  readonly writableFinished: boolean;
  /** The request's HEADERS frame ended the stream: no body. */
  readonly endAfterHeaders: boolean;
  respond(headers: OutgoingHttpHeaders, options?: { endStream?: boolean; waitForTrailers?: boolean }): void;
  /**
   * respond() with a backend's gRPC answer as kedge's HPACK decoder gave it (read-only, maybe shared
   * with other calls): less what may not cross the hop, tagged with x-kedge-backend-name.
   */
  respondForwarded(headers: H2Headers, backendName: string, options?: { endStream?: boolean; waitForTrailers?: boolean }): void;
  /** respond() with a head made of field lines (an HTTP/1.1 backend's, passed on); the body follows. */
  respondHead(status: number, head: HeadLines): void;
  sendTrailers(headers: OutgoingHttpHeaders): void;
  /** sendTrailers() with a backend's trailers as decoded (see respondForwarded), less what may not cross the hop. */
  sendTrailersForwarded(headers: H2Headers): void;
  /** chunk[from, to) (default: all of it); false when the bytes wait: the handler's drain() follows. */
  write(chunk: Uint8Array, from?: number, to?: number): boolean;
  /** Ends the response, after chunk[from, to) when given. */
  end(chunk?: Uint8Array, from?: number, to?: number): void;
  /** Resets the stream with this HTTP/2 error code. */
  close(code?: number): void;
  /** Gives the stream its one handler; body bytes flow to it from then on unless paused first. */
  handle(handler: ClientStreamHandler): void;
  pause(): unknown;
  resume(): unknown;
}
