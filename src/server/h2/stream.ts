import type { OutgoingHttpHeaders } from "node:http2";
import type { ClientStream, ClientStreamHandler } from "../../proxy/client-stream.js";
import { ErrorCode } from "../../h2/frames.js";
import { noPendingOut } from "../../h2/data-writer.js";
import type { HeadLines } from "../../net/hop-headers.js";
import type { H2Headers } from "../../h2/hpack.js";

type ResponseOptions = { endStream?: boolean; waitForTrailers?: boolean };

/** What a stream asks of the connection that carries it. */
export interface StreamCarrier {
  readonly socket: object;
  readonly streamWindow: number;
  readonly peerInitialWindow: number;
  sendHeaders(stream: H2ServerStream, headers: OutgoingHttpHeaders, endStream: boolean): void;
  sendHeadLines(stream: H2ServerStream, status: number, head: HeadLines): void;
  sendForwarded(stream: H2ServerStream, headers: H2Headers, keepStatus: boolean, backendName: string | undefined, endStream: boolean): void;
  sendData(stream: H2ServerStream, chunk: Uint8Array, from: number, to: number): boolean;
  endData(stream: H2ServerStream, chunk: Uint8Array | undefined, from: number, to: number): void;
  localEnd(stream: H2ServerStream): void;
  grant(stream: H2ServerStream): void;
  reset(stream: H2ServerStream, code: number): void;
}

/**
 * One client request on kedge's HTTP/2 server: the ClientStream the proxy drives. What happens to
 * the stream goes to the one handler the proxy gives it, called synchronously, as the upstream
 * side's H2Stream tells its StreamHandler. Request body bytes are views of the socket reads they arrived in (Bun never reuses a read's
 * buffer), or copies of short ones (net/bytes bytesIn).
 */
export class H2ServerStream implements ClientStream {
  /** Send window the client granted for this stream. */
  sendWindow: number;
  /** Receive window kedge granted and the client has not used. */
  recvWindow: number;
  /** Body bytes handed to the reader and not yet granted back to the client. */
  unacked = 0;
  /** Request body bytes received, for a declared content-length. */
  received = 0;
  /** Response DATA waiting for flow-control window. */
  pendingOut: Uint8Array[] = noPendingOut;
  pendingOutBytes = 0;
  /** END_STREAM goes with the last of pendingOut. */
  pendingEnd = false;
  /** performance.now() since which pendingOut has waited for window without any of it going out. */
  blockedSince = 0;
  /** end() was called; END_STREAM (or the trailers) goes once pendingOut is out. */
  ending = false;
  waitForTrailers = false;
  /** write() returned false: "drain" is owed. */
  wantsDrain = false;
  localEnded = false;
  remoteEnded: boolean;
  headersSent = false;
  /** A gRPC call (by content-type): cut short, it ends with a grpc-status. */
  grpc = false;
  closed = false;
  readableEnded = false;
  private handler: ClientStreamHandler | undefined;
  /** null until a reader attaches (handle() or resume()), false while paused. */
  private flowing: boolean | null = null;
  private inbox: Uint8Array[] | undefined;
  private endQueued = false;
  private deliverQueued = false;

  constructor(
    readonly conn: StreamCarrier,
    readonly id: number,
    readonly endAfterHeaders: boolean,
    /** content-length, or -1. */
    readonly declaredLength: number,
  ) {
    this.sendWindow = conn.peerInitialWindow;
    this.recvWindow = conn.streamWindow;
    this.remoteEnded = endAfterHeaders;
  }

  get session(): StreamCarrier {
    return this.conn;
  }

  get destroyed(): boolean {
    return this.closed;
  }

  get writableEnded(): boolean {
    return this.ending || this.localEnded;
  }

  get writableFinished(): boolean {
    return this.localEnded;
  }

  // --- the handler ---

  /**
   * Gives the stream its handler, once: what arrived meanwhile follows in order (in a microtask),
   * unless the stream was paused first, then from resume().
   */
  handle(handler: ClientStreamHandler): void {
    if (this.handler !== undefined) throw new Error("the stream already has a handler");
    this.handler = handler;
    if (this.flowing === null) this.resume();
  }

  /** The stream can take more response bytes (write() returned false). */
  drained(): void {
    this.handler?.drain();
  }

  /** The response waits for trailers: asks the handler for them; false when it has none to send. */
  askTrailers(): boolean {
    const handler = this.handler;
    if (handler?.wantTrailers === undefined) return false;
    handler.wantTrailers();
    return true;
  }

  // --- the request body ---

  /** A DATA frame's body from the connection; `end` with END_STREAM. */
  receive(bytes: Uint8Array, end: boolean): void {
    if (end) this.remoteEnded = true;
    if (this.flowing === true && this.inbox === undefined) {
      if (bytes.length > 0) this.deliver(bytes);
      if (end) this.finishReading();
      return;
    }
    if (bytes.length > 0) (this.inbox ??= []).push(bytes);
    if (end) this.endQueued = true;
  }

  private deliver(bytes: Uint8Array): void {
    this.unacked += bytes.length;
    this.handler?.data(bytes as Buffer);
    this.conn.grant(this);
  }

  private finishReading(): void {
    if (this.readableEnded) return;
    this.readableEnded = true;
    this.handler?.end();
  }

  /** A stream whose HEADERS ended it: its reader still hears "end" once it attaches. */
  noBody(): void {
    this.endQueued = true;
  }

  pause(): this {
    this.flowing = false;
    return this;
  }

  resume(): this {
    if (this.flowing === true) return this;
    this.flowing = true;
    if ((this.inbox !== undefined || this.endQueued) && !this.deliverQueued) {
      this.deliverQueued = true;
      queueMicrotask(() => this.drainInbox());
    }
    return this;
  }

  /** What arrived while nobody read, in order, as long as the reader keeps flowing. */
  private drainInbox(): void {
    this.deliverQueued = false;
    const inbox = this.inbox;
    while (inbox !== undefined && inbox.length > 0 && this.flowing === true && !this.closed) this.deliver(inbox.shift()!);
    if (inbox !== undefined && inbox.length === 0) this.inbox = undefined;
    if (this.inbox === undefined && this.endQueued && this.flowing === true) {
      this.endQueued = false;
      this.finishReading();
    }
  }

  // --- the response ---

  respond(headers: OutgoingHttpHeaders, options?: ResponseOptions): void {
    this.mayRespond();
    this.conn.sendHeaders(this, headers, options?.endStream === true); // throws on fields HTTP/2 forbids: nothing was sent then
    this.responded(options);
  }

  respondForwarded(headers: H2Headers, backendName: string, options?: ResponseOptions): void {
    this.mayRespond();
    this.conn.sendForwarded(this, headers, true, backendName, options?.endStream === true); // throws as respond does
    this.responded(options);
  }

  private mayRespond(): void {
    if (this.closed) throw new Error("the stream is closed");
    if (this.headersSent) throw new Error("response already sent");
  }

  /** The response's HEADERS went out: the stream ends with them, or waits for its trailers when asked. */
  private responded(options: ResponseOptions | undefined): void {
    this.headersSent = true;
    this.waitForTrailers = options?.waitForTrailers === true;
    if (options?.endStream === true) {
      this.ending = true;
      this.conn.localEnd(this);
    }
  }

  respondHead(status: number, head: HeadLines): void {
    this.mayRespond();
    this.conn.sendHeadLines(this, status, head); // throws on a single-value field given twice: nothing was sent then
    this.headersSent = true;
  }

  write(chunk: Uint8Array, from = 0, to = chunk.length): boolean {
    if (this.closed || this.ending) return true;
    if (!this.headersSent) this.respond({ ":status": 200 });
    return this.conn.sendData(this, chunk, from, to);
  }

  end(chunk?: Uint8Array, from = 0, to = chunk?.length ?? 0): void {
    if (this.closed || this.ending) return;
    if (!this.headersSent) this.respond({ ":status": 200 });
    this.ending = true;
    this.conn.endData(this, chunk, from, to);
  }

  sendTrailers(headers: OutgoingHttpHeaders): void {
    if (this.closed || this.localEnded) return;
    this.conn.sendHeaders(this, headers, true);
    this.conn.localEnd(this);
  }

  sendTrailersForwarded(headers: H2Headers): void {
    if (this.closed || this.localEnded) return;
    this.conn.sendForwarded(this, headers, false, undefined, true);
    this.conn.localEnd(this);
  }

  close(code: number = ErrorCode.NO_ERROR): void {
    this.conn.reset(this, code);
  }

  /** The connection ended the stream (cleanly or not): nothing more is read or written. Its handler hears of it later, from tellClosed(). */
  markClosed(): void {
    this.closed = true;
    this.inbox = undefined;
    this.endQueued = false;
    this.pendingOut = noPendingOut;
    this.pendingOutBytes = 0;
  }

  /** The handler hears of the close once the turn that closed the stream is over, as node:http2 emits "close". */
  tellClosed(): void {
    this.handler?.close();
  }
}
