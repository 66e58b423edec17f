import type { OutgoingHttpHeaders } from "node:http2";
import type { ClientStream } from "../../proxy/client-stream.js";
import { ErrorCode } from "../../h2/frames.js";

// node:http2-style listeners take their event's own argument type.
type Listener = (this: H2ServerStream, arg?: any) => void;

/** What a stream asks of the connection that carries it. */
export interface StreamCarrier {
  readonly socket: object;
  readonly streamWindow: number;
  readonly peerInitialWindow: number;
  sendHeaders(stream: H2ServerStream, headers: OutgoingHttpHeaders, endStream: boolean): void;
  sendData(stream: H2ServerStream, chunk: Uint8Array): boolean;
  endData(stream: H2ServerStream, chunk: Uint8Array | undefined): void;
  localEnd(stream: H2ServerStream): void;
  grant(stream: H2ServerStream): void;
  reset(stream: H2ServerStream, code: number): void;
}

/**
 * One client request on kedge's HTTP/2 server: the ClientStream the proxy drives. Events are kept
 * as a flat list (a stream has a handful of listeners) and called with the stream as `this`.
 * Request body bytes are views of the socket reads they arrived in (Bun never reuses a read's
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
  readonly pendingOut: Uint8Array[] = [];
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
  private listeners: (string | Listener)[] = [];
  /** null until a reader attaches ("data" listener or resume()), false while paused. */
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

  // --- events ---

  on(event: string, listener: Listener): this {
    this.listeners.push(event, listener);
    if (event === "data" && this.flowing === null) this.resume();
    return this;
  }

  once(event: string, listener: Listener): this {
    const stream = this;
    const wrapped: Listener = function (arg) {
      stream.off(event, wrapped);
      listener.call(stream, arg);
    };
    return this.on(event, wrapped);
  }

  off(event: string, listener: Listener): this {
    const ls = this.listeners;
    for (let i = 0; i < ls.length; i += 2) {
      if (ls[i] === event && ls[i + 1] === listener) {
        ls.splice(i, 2);
        break;
      }
    }
    return this;
  }

  /** Calls this event's listeners; those a listener adds or removes meanwhile do not change this call's set. */
  emit(event: string, arg?: unknown): boolean {
    const ls = this.listeners;
    let first: Listener | undefined;
    let more: Listener[] | undefined;
    for (let i = 0; i < ls.length; i += 2) {
      if (ls[i] !== event) continue;
      if (first === undefined) first = ls[i + 1] as Listener;
      else (more ??= []).push(ls[i + 1] as Listener);
    }
    if (first === undefined) return false;
    first.call(this, arg);
    if (more) for (const l of more) l.call(this, arg);
    return true;
  }

  /** Listeners of this event, for wantTrailers (no listener: the stream ends without trailers). */
  has(event: string): boolean {
    const ls = this.listeners;
    for (let i = 0; i < ls.length; i += 2) if (ls[i] === event) return true;
    return false;
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
    this.emit("data", bytes);
    this.conn.grant(this);
  }

  private finishReading(): void {
    if (this.readableEnded) return;
    this.readableEnded = true;
    this.emit("end");
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

  respond(headers: OutgoingHttpHeaders, options?: { endStream?: boolean; waitForTrailers?: boolean }): void {
    if (this.closed) throw new Error("the stream is closed");
    if (this.headersSent) throw new Error("response already sent");
    const endStream = options?.endStream === true;
    this.conn.sendHeaders(this, headers, endStream); // throws on fields HTTP/2 forbids: nothing was sent then
    this.headersSent = true;
    this.waitForTrailers = options?.waitForTrailers === true;
    if (endStream) {
      this.ending = true;
      this.conn.localEnd(this);
    }
  }

  write(chunk: Uint8Array): boolean {
    if (this.closed || this.ending) return true;
    if (!this.headersSent) this.respond({ ":status": 200 });
    return this.conn.sendData(this, chunk);
  }

  end(chunk?: Uint8Array): void {
    if (this.closed || this.ending) return;
    if (!this.headersSent) this.respond({ ":status": 200 });
    this.ending = true;
    this.conn.endData(this, chunk);
  }

  sendTrailers(headers: OutgoingHttpHeaders): void {
    if (this.closed || this.localEnded) return;
    this.conn.sendHeaders(this, headers, true);
    this.conn.localEnd(this);
  }

  close(code: number = ErrorCode.NO_ERROR): void {
    this.conn.reset(this, code);
  }

  /** The connection ended the stream (cleanly or not): nothing more is read or written. Its "close" follows later, from emitClosed. */
  markClosed(): void {
    this.closed = true;
    this.inbox = undefined;
    this.endQueued = false;
    this.pendingOut.length = 0;
    this.pendingOutBytes = 0;
  }

  /** "close", once the turn that closed the stream is over, as node:http2 emits it. */
  emitClosed(): void {
    this.emit("close");
  }
}
