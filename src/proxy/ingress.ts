import type { IncomingHttpHeaders, OutgoingHttpHeaders } from "node:http";
import type { Duplex } from "node:stream";
import type { ForwardLines, HeadLines } from "../net/hop-headers.js";

/** Told of a request body's bytes as they come, then of its end, each synchronously. */
export interface BodyReader {
  bodyData(chunk: Buffer): void;
  bodyEnd(): void;
}

/** A request body as the proxy reads it: HTTP/1.1's body stream, or an HTTP/2 stream of kedge's own server. */
export interface RequestBody {
  /** Starts the flow to its one reader. */
  read(reader: BodyReader): void;
  pause(): unknown;
  /** Flowing with no reader (never read, or the answer was given): the bytes are dropped. */
  resume(): unknown;
}

/** One client request as the proxy sees it, whatever protocol carried it. */
export interface IngressRequest {
  readonly protocol: "http/1.1" | "h2";
  readonly method: string;
  /** The request-target: origin-form ("/p?q") or absolute-form ("http://h/p") for forward proxying. */
  readonly target: string;
  /** Host header or :authority. */
  readonly authority: string;
  readonly scheme: "http" | "https";
  /** The port the client connected to (the listener's port). */
  readonly localPort: number;
  readonly headers: IncomingHttpHeaders;
  readonly remoteAddress: string;
  /** The client connection (a TLSSocket on TLS listeners): where its certificate is read. */
  readonly socket: object | undefined;
  /** The request carries a body (Content-Length > 0, chunked, or an HTTP/2 stream not ended with its headers). */
  readonly hasBody: boolean;
  /** Content-Length, or -1 when the length is unknown. */
  readonly contentLength: number;
  readonly body: RequestBody;
  /** HTTP/1.1: the client's field lines as received, copied upstream without rebuilding them. */
  readonly forwardLines?: ForwardLines;
  /** HTTP/1.1 on kedge's own listener: the protocol the client asks to switch to (WebSocket, SPDY) as it spelled it. */
  readonly upgrade?: string;
}

/** A connection handed over after a 101: the client's side as a stream, and what it sent past the request head. */
export interface SwitchedConnection {
  readonly socket: Duplex;
  readonly rest: Buffer | undefined;
}

/** Told once when the client goes before its response is complete. */
export interface GoneListener {
  clientGone(): void;
}

/** The response side; its methods never throw when the client has gone away. */
export interface IngressResponse {
  readonly headersSent: boolean;
  /** The client went away (reset, closed, timed out). */
  readonly gone: boolean;
  writeHead(status: number, headers: OutgoingHttpHeaders): void;
  /** A head from ready-made field lines (the backend's, passed through), saving the headers object; HTTP/2 lower-cases the names. */
  writeHeadLines?(status: number, head: HeadLines): void;
  write(chunk: Uint8Array): boolean;
  onceDrain(cb: () => void): void;
  /** Ends the response, writing `last` first when given. */
  end(last?: Uint8Array): void;
  /** Ends the exchange abnormally so the client sees a truncated response, not a complete one. */
  abort(): void;
  /** Who hears that the client went before the response was complete: one listener, no closure per request. */
  onGone(listener: GoneListener): void;
  /** No further requests on this connection after this response (HTTP/1.1; HTTP/2 streams are independent). */
  lastOnConnection(): void;
  /**
   * The request passed routing and the access check: a client that sent `Expect: 100-continue` may
   * send its body now (HTTP/1.1 on kedge's own listener). A refused one gets its answer and no 100.
   */
  sendContinue?(): void;
  /**
   * Answers 101 with these fields and hands the connection over; undefined when the client has
   * gone. Offered where requests can carry `upgrade`.
   */
  switchProtocols?(fields: HeadLines): SwitchedConnection | undefined;
}
