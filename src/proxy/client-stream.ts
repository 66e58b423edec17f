import type { OutgoingHttpHeaders } from "node:http2";

/**
 * A client's HTTP/2 stream as the proxy uses it: what kedge's own server (src/server/h2) offers,
 * the subset of node:http2's ServerHttp2Stream API the proxy uses (a
 * ServerHttp2Stream fits too). Listeners are called with the stream as `this`, so one shared
 * function can serve every stream.
 */
export interface ClientStream {
  /** The connection; its socket is where a client certificate and address are read. */
  readonly session: { readonly socket?: object | null } | undefined;
  readonly headersSent: boolean;
  readonly destroyed: boolean;
  readonly closed: boolean;
  /** The request's end has been delivered ("end" emitted). */
  readonly readableEnded: boolean;
  readonly writableEnded: boolean;
  /** The response's end (END_STREAM) has gone out. */
  readonly writableFinished: boolean;
  /** The request's HEADERS frame ended the stream: no body. */
  readonly endAfterHeaders: boolean;
  respond(headers: OutgoingHttpHeaders, options?: { endStream?: boolean; waitForTrailers?: boolean }): void;
  sendTrailers(headers: OutgoingHttpHeaders): void;
  /** False when the bytes wait: "drain" follows. */
  write(chunk: Uint8Array): boolean;
  end(chunk?: Uint8Array): void;
  /** Resets the stream with this HTTP/2 error code. */
  close(code?: number): void;
  pause(): unknown;
  resume(): unknown;
  on(event: "data", listener: (chunk: Buffer) => void): unknown;
  on(event: "end" | "close" | "drain" | "wantTrailers", listener: () => void): unknown;
  on(event: "error", listener: (err: Error) => void): unknown;
  once(event: "end" | "close" | "drain", listener: () => void): unknown;
}
