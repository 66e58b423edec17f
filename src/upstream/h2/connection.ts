import type { Socket, SocketHandler, TLSOptions } from "bun";
import { ClosedHow } from "../../h2/closed-streams.js";
import { H2Endpoint } from "../../h2/endpoint.js";
import { ConnectionError, defaultWindow, ErrorCode, errorName, Flag, FrameType, preface, Setting, StreamError } from "../../h2/frames.js";
import type { H2Headers } from "../../h2/hpack.js";
import { SocketWriter } from "../../net/socket-writer.js";
import { atTurnEnd } from "../../net/turn-end.js";
import type { H2Stream } from "./stream.js";

export interface H2ConnectionOptions {
  host: string;
  port: number;
  /** Bun TLS options; absent: h2c with prior knowledge. */
  tls?: TLSOptions;
  connectTimeoutMs: number;
  /** Receive window per stream: how much one slow client can make kedge hold. */
  streamWindow?: number;
  connectionWindow?: number;
  maxHeaderListSize?: number;
  /** Silence with calls in flight after which the backend is sent a PING (default 300 s). */
  keepaliveMs?: number;
  /** How long that PING may go unanswered before the connection is given up (default 20 s). */
  keepaliveTimeoutMs?: number;
}

const highWaterBytes = 1024 * 1024;
/** ALPN protocol list in its wire form: length-prefixed names. */
const alpnH2 = Buffer.from([2, 0x68, 0x32]);
const lastStreamId = 2 ** 31 - 1;
const keepalivePing = Buffer.from("kedge-ka");

const handlers: SocketHandler<H2Connection> = {
  data: (socket, data) => socket.data.onData(data),
  drain: (socket) => socket.data.onDrain(),
  close: (socket, err) => socket.data.onSocketClose(err),
  end: (socket) => socket.data.onSocketClose(),
  error: (socket, err) => socket.data.onSocketClose(err),
  connectError: (socket, err) => socket.data?.onSocketClose(err),
  handshake: (socket, success, authorizationError) => socket.data.onHandshake(success, authorizationError),
};

/**
 * kedge's HTTP/2 client connection to one backend endpoint, on Bun.connect: the client role on
 * the shared engine (h2/endpoint.ts), so a backend that breaks a rule gets the same error a client
 * of kedge's server would. The upstream half of a gRPC call costs a fraction of node:http2's
 * ClientHttp2Session. It opens streams (waiting for a slot under the backend's
 * MAX_CONCURRENT_STREAMS), reads responses, keeps the connection alive with PINGs, honours
 * GOAWAY, and treats a connection error as fatal to every stream. Frames written in one
 * event-loop turn leave in one socket write.
 */
export class H2Connection extends H2Endpoint<H2Stream> {
  private socket: Socket<H2Connection> | undefined;
  /** Writes to the socket in order, queueing what it does not take; set with the socket. */
  private writer: SocketWriter | undefined;
  private flushQueued = false;
  /** Streams over the backend's MAX_CONCURRENT_STREAMS, or written before the connection was up. */
  private readonly waiting: H2Stream[] = [];
  private nextId = 1;
  /** Socket reads when the keepalive last looked. */
  private readsAtCheck = 0;
  private keepalive: ReturnType<typeof setInterval> | undefined;
  private pingTimer: ReturnType<typeof setTimeout> | undefined;
  private resolveReady!: () => void;
  private rejectReady!: (err: Error) => void;
  readonly ready: Promise<void>;
  /** No new streams: GOAWAY received, stream ids used up, or closed. */
  goingAway = false;
  /** close() was called: the calls it holds finish, then it closes. */
  private draining = false;
  /** The backend sent GOAWAY or the ids ran out: open a new connection for new calls. */
  onGoaway: (() => void) | undefined;
  whenClosed: ((err: Error | undefined) => void) | undefined;

  constructor(readonly options: H2ConnectionOptions) {
    const maxHeaderListSize = options.maxHeaderListSize ?? 64 * 1024;
    // A header block may not outgrow twice what kedge agreed to decode (CVE-2024-27316: CONTINUATION floods).
    super({ streamWindow: options.streamWindow ?? 1024 * 1024, connectionWindow: options.connectionWindow ?? 16 * 1024 * 1024, maxHeaderListSize, maxBlockBytes: 2 * maxHeaderListSize });
    this.ready = new Promise((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    this.ready.catch(() => {}); // callers that never await it must not see an unhandled rejection
    const timer = setTimeout(() => this.fail(new Error(`dial ${options.host}:${options.port} timed out`)), options.connectTimeoutMs);
    void this.ready.then(() => clearTimeout(timer), () => clearTimeout(timer));
    const tls = options.tls ? { ...options.tls, ALPNProtocols: alpnH2 } : undefined;
    Bun.connect<H2Connection>({ hostname: options.host, port: options.port, tls, data: this, socket: handlers }).then(
      (socket) => {
        if (this.closed) return void socket.end();
        this.socket = socket;
        this.writer = new SocketWriter(socket);
        socket.setNoDelay(true);
        if (!tls) this.start();
      },
      (err: Error) => this.fail(err),
    );
  }

  /** The backend's SETTINGS arrived and the connection is still open. */
  get connected(): boolean {
    return this.settled && !this.closed;
  }

  /** A new stream would start now (or, while dialling, once the backend's SETTINGS arrive) rather than wait for a slot. */
  get hasRoom(): boolean {
    return !this.goingAway && !this.draining && !this.closed && this.streams.size + this.waiting.length < this.peerMaxStreams;
  }

  get activeStreams(): number {
    return this.streams.size + this.waiting.length;
  }

  onHandshake(success: boolean, authorizationError: Error | null): void {
    if (!success || (authorizationError && this.options.tls?.rejectUnauthorized !== false)) {
      return this.fail(new Error(`TLS handshake with ${this.options.host}:${this.options.port} failed: ${authorizationError?.message ?? "rejected"}`));
    }
    if (this.socket && this.socket.alpnProtocol !== "h2") return this.fail(new Error(`${this.options.host}:${this.options.port} did not negotiate h2 (ALPN)`));
    this.start();
  }

  private start(): void {
    this.out.raw(preface);
    this.out.settings(0, [
      [Setting.ENABLE_PUSH, 0],
      [Setting.INITIAL_WINDOW_SIZE, this.streamWindow],
      [Setting.MAX_HEADER_LIST_SIZE, this.options.maxHeaderListSize ?? 64 * 1024],
    ]);
    const connectionWindow = this.options.connectionWindow ?? 16 * 1024 * 1024;
    if (connectionWindow > defaultWindow) this.out.words(FrameType.WINDOW_UPDATE, 0, 0, connectionWindow - defaultWindow);
    this.flush();
  }

  /** Starts a stream: now when a slot is free, else once one is. */
  open(stream: H2Stream): void {
    if (this.goingAway || this.draining || this.closed) return this.finish(stream, new StreamError("connection is closing", ErrorCode.REFUSED_STREAM, true), ClosedHow.RESET_LOCALLY);
    stream.conn = this;
    if (!this.settled || this.streams.size >= this.peerMaxStreams) {
      stream.keepBlock();
      this.waiting.push(stream);
    } else this.startStream(stream);
  }

  /** HEADERS for a stream that has its slot. */
  private startStream(stream: H2Stream): void {
    const id = this.nextId;
    this.nextId += 2;
    this.lastStreamId = id;
    stream.id = id;
    stream.sendWindow = this.peerInitialWindow;
    stream.recvWindow = this.streamWindow;
    this.streams.set(id, stream);
    const endStream = stream.pendingEnd && stream.pendingOutBytes === 0;
    this.out.headerBlock(id, endStream ? Flag.END_STREAM : 0, stream.blockBytes, this.peerMaxFrame, stream.blockLength);
    this.schedule();
    if (endStream) {
      stream.pendingEnd = false;
      stream.localEnded = true;
    }
    // A writer told to wait while the stream had no connection or slot is owed drain() once the
    // bytes are out, else it never writes its next message (a client stream's second one).
    else this.sendPending(stream);
    if (this.nextId > lastStreamId) this.retire();
  }

  /** Request bytes: sent as far as the windows allow, or held until the stream has its id. */
  write(stream: H2Stream, chunk: Uint8Array, end: boolean): boolean {
    if (stream.id !== 0) return this.writeData(stream, chunk, end);
    this.queueData(stream, chunk, 0, chunk.length, end);
    if (!end) stream.wantsDrain = true;
    return false;
  }

  protected get congested(): boolean {
    return (this.writer?.queuedBytes ?? 0) >= highWaterBytes;
  }

  protected dataEnded(stream: H2Stream): void {
    stream.localEnded = true;
    if (stream.remoteEnded) this.finish(stream, undefined, ClosedHow.ENDED);
  }

  protected notifyDrain(stream: H2Stream): void {
    stream.handler.drain();
  }

  /** Grants the backend the window this stream used, unless its reader is paused. */
  grant(stream: H2Stream): void {
    if (!stream.paused) this.grantStream(stream);
  }

  reset(stream: H2Stream, code: number): void {
    if (stream.closed) return;
    if (stream.id !== 0) this.resetFrame(stream.id, code);
    this.forget(stream, ClosedHow.RESET_LOCALLY);
  }

  /**
   * Graceful close (the endpoint left its backend, or the backend was reloaded away): no new
   * streams, but every call already given to this connection, sent or still waiting for the
   * connection or a stream slot, is carried through; then GOAWAY(NO_ERROR) and the socket closes.
   * Refusing the waiting ones would fail them: their backend may have no endpoints left to retry on.
   */
  close(): void {
    if (this.closed || this.draining) return;
    this.draining = true;
    this.drained();
  }

  private drained(): void {
    if (!this.draining || this.streams.size > 0 || this.waiting.length > 0) return;
    if (this.socket && this.settled && !this.goingAway) this.goawayFrame(0, ErrorCode.NO_ERROR, "");
    this.shutdown(undefined);
  }

  /** Stream ids ran out: calls still waiting go to the connection that replaces this one. */
  private retire(): void {
    if (this.goingAway) return;
    this.goingAway = true;
    for (const s of this.waiting.splice(0)) this.finish(s, new StreamError("connection ran out of stream ids", ErrorCode.REFUSED_STREAM, true), ClosedHow.RESET_LOCALLY);
    this.onGoaway?.();
  }

  protected schedule(): void {
    if (this.flushQueued) return;
    this.flushQueued = true;
    atTurnEnd(this.flush);
  }

  private readonly flush = (): void => {
    this.flushQueued = false;
    const { writer, out } = this;
    if (!writer || out.length === 0) return;
    writer.writeTransient(out.bytes, out.length); // what the socket does not take is copied: the frame buffer is reused
    out.clear();
  };

  onDrain(): void {
    if (this.writer?.flush()) this.transportDrained(this.streams.values());
  }

  // --- reading: the engine's rules, then the client role's ---

  protected connectionError(code: number, reason: string): void {
    this.fail(new ConnectionError(code, reason));
  }

  protected streamError(stream: H2Stream, code: number, reason: string): void {
    this.resetFrame(stream.id, code);
    this.finish(stream, new StreamError(`backend broke HTTP/2: ${reason}`, code, false), ClosedHow.RESET_LOCALLY);
  }

  /** A backend opens no streams: server push is refused, and a response names a stream kedge opened. */
  protected openStream(id: number): void {
    throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `HEADERS on idle stream ${id}`);
  }

  protected streamData(stream: H2Stream, flags: number, buf: Uint8Array, start: number, end: number, size: number): void {
    if (!stream.responded) return this.streamError(stream, ErrorCode.PROTOCOL_ERROR, "DATA before response headers");
    stream.unacked += size;
    if (end > start) stream.handler.data(buf, start, end);
    if (flags & Flag.END_STREAM) this.remoteEnd(stream);
    else if (!stream.closed) this.grant(stream);
  }

  protected streamHeaders(stream: H2Stream, headers: H2Headers, endStream: boolean): void {
    if (!stream.responded) {
      const status = headers[":status"];
      if (typeof status !== "string" || !/^[1-5]\d\d$/.test(status)) return this.streamError(stream, ErrorCode.PROTOCOL_ERROR, "response without a valid :status");
      if (status[0] === "1") {
        // Informational (100 Continue, 103 Early Hints): the final response is still to come.
        if (endStream) this.streamError(stream, ErrorCode.PROTOCOL_ERROR, "1xx response ended the stream");
        return;
      }
      stream.responded = true;
      stream.handler.response(headers, endStream);
    } else {
      if (!endStream) return this.streamError(stream, ErrorCode.PROTOCOL_ERROR, "trailers without END_STREAM");
      stream.handler.trailers(headers);
    }
    if (endStream && !stream.closed) this.remoteEnd(stream);
  }

  protected peerReset(stream: H2Stream, code: number): void {
    stream.rstCode = code;
    // NO_ERROR after a complete response only asks kedge to stop sending (RFC 9113 §8.1).
    if (code === ErrorCode.NO_ERROR && stream.remoteEnded) return this.finish(stream, undefined, ClosedHow.RESET_BY_PEER);
    this.finish(stream, new StreamError(`backend reset the stream: ${errorName(code)}`, code, code === ErrorCode.REFUSED_STREAM), ClosedHow.RESET_BY_PEER);
  }

  protected peerSettings(first: boolean): void {
    if (first) {
      this.resolveReady();
      this.keepalive = setInterval(this.checkAlive, this.options.keepaliveMs ?? 300_000);
      this.keepalive.unref?.();
    }
    this.startWaiting();
  }

  protected peerGoaway(last: number, code: number): void {
    const wasGoing = this.goingAway;
    this.goingAway = true;
    const refused = `backend sent GOAWAY (${errorName(code)})`;
    for (const s of [...this.streams.values()]) {
      if (s.id > last) this.finish(s, new StreamError(refused, ErrorCode.REFUSED_STREAM, true), ClosedHow.RESET_LOCALLY);
    }
    for (const s of this.waiting.splice(0)) this.finish(s, new StreamError(refused, ErrorCode.REFUSED_STREAM, true), ClosedHow.RESET_LOCALLY);
    if (!wasGoing) this.onGoaway?.();
    if (this.streams.size === 0) this.shutdown(undefined);
  }

  /**
   * A backend that vanished without a FIN or RST (a node lost, a partition) would hold its calls
   * until their deadlines and take new ones for ever: a connection silent for a keepalive interval
   * with calls in flight gets a PING, and one that answers nothing is given up. The interval
   * defaults to 300 s, the least gap grpc-go and grpc-java servers accept between PINGs
   * (more often earns GOAWAY "too_many_pings"), and PINGs are never sent without calls in flight.
   */
  private readonly checkAlive = (): void => {
    const reads = this.reads;
    if (reads !== this.readsAtCheck) {
      this.readsAtCheck = reads;
      return;
    }
    if (this.streams.size === 0 || this.pingTimer) return;
    this.out.frame(FrameType.PING, 0, 0, keepalivePing);
    this.schedule();
    this.pingTimer = setTimeout(() => {
      this.pingTimer = undefined;
      if (this.reads === reads) this.fail(new Error(`backend answered no PING for ${(this.options.keepaliveTimeoutMs ?? 20_000) / 1000}s`));
    }, this.options.keepaliveTimeoutMs ?? 20_000);
    this.pingTimer.unref?.();
  };

  private startWaiting(): void {
    while (this.waiting.length > 0 && this.streams.size < this.peerMaxStreams && !this.goingAway) {
      const s = this.waiting.shift()!;
      if (!s.closed) this.startStream(s);
    }
  }

  private remoteEnd(stream: H2Stream): void {
    stream.remoteEnded = true;
    stream.handler.end();
    if (stream.closed) return;
    if (stream.localEnded) return this.finish(stream, undefined, ClosedHow.ENDED);
    // The backend answered in full before the request ended: the rest of the request is moot.
    this.resetFrame(stream.id, ErrorCode.CANCEL);
    this.finish(stream, undefined, ClosedHow.RESET_LOCALLY);
  }

  /** Drops a stream without telling its handler (kedge cancelled it). */
  private forget(stream: H2Stream, how: ClosedHow): void {
    stream.closed = true;
    if (stream.id !== 0) {
      this.streams.delete(stream.id);
      this.closedStreams.add(stream.id, how, stream.sendWindow);
    } else {
      const i = this.waiting.indexOf(stream);
      if (i >= 0) this.waiting.splice(i, 1);
    }
    this.blocked.delete(stream);
    this.startWaiting();
    if (this.draining) this.drained();
    else if (this.goingAway && this.streams.size === 0) this.shutdown(undefined);
  }

  private finish(stream: H2Stream, err: StreamError | undefined, how: ClosedHow): void {
    if (stream.closed) return;
    this.forget(stream, how);
    stream.handler.close(err);
  }

  /** The connection is unusable: tell the backend why (GOAWAY), fail every stream, close. */
  fail(err: Error): void {
    if (this.closed) return;
    if (err instanceof ConnectionError && this.socket) {
      this.goawayFrame(0, err.code, err.message); // 0: kedge accepts no streams from the backend
      this.flush();
    }
    this.shutdown(err);
  }

  private shutdown(err: Error | undefined): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.keepalive);
    clearTimeout(this.pingTimer);
    this.goingAway = true;
    if (!this.settled) this.rejectReady(err ?? new Error("connection closed"));
    else this.flush();
    const unsent = this.waiting.splice(0);
    const sent = [...this.streams.values()];
    const message = err ? `connection to backend lost: ${err.message}` : "connection to backend closed";
    const dialFailed = !this.settled;
    for (const s of unsent) this.finish(s, new StreamError(message, ErrorCode.REFUSED_STREAM, true, dialFailed), ClosedHow.RESET_LOCALLY);
    for (const s of sent) this.finish(s, new StreamError(message, ErrorCode.INTERNAL_ERROR, false), ClosedHow.RESET_LOCALLY);
    this.socket?.end();
    this.whenClosed?.(err);
  }

  onSocketClose(err?: Error): void {
    this.shutdown(err ?? (this.closed ? undefined : new Error("backend closed the connection")));
  }
}
