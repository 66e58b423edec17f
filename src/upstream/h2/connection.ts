import type { Socket, SocketHandler, TLSOptions } from "bun";
import { HpackDecoder, HpackError } from "../../h2/hpack.js";
import { ConnectionError, joinBytes, defaultMaxFrameSize, defaultWindow, ErrorCode, errorName, Flag, FrameBuffer, frameHeaderSize, FrameType, maxWindow, preface, Setting, StreamError } from "../../h2/frames.js";
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
 * kedge's HTTP/2 client connection to one backend endpoint (RFC 9113), on Bun.connect: the
 * upstream half of a gRPC call costs a fraction of node:http2's ClientHttp2Session. It sends
 * requests, flow-controls both ways, answers SETTINGS and PING, honours GOAWAY, and treats any
 * protocol violation by the backend as fatal to the connection (GOAWAY, every stream fails).
 * Frames written in one event-loop turn leave in one socket write.
 */
export class H2Connection {
  private socket: Socket<H2Connection> | undefined;
  private readonly out = new FrameBuffer();
  private flushQueued = false;
  private backlog: Uint8Array[] = [];
  private backlogBytes = 0;
  private readonly streams = new Map<number, H2Stream>();
  /** Streams over the backend's MAX_CONCURRENT_STREAMS, or written before the connection was up. */
  private readonly waiting: H2Stream[] = [];
  private readonly blocked = new Set<H2Stream>();
  private nextId = 1;
  private peerMaxStreams = 100; // until its SETTINGS say otherwise (RFC 9113 §6.5.2 suggests ≥ 100)
  private peerInitialWindow = defaultWindow;
  private peerMaxFrame = defaultMaxFrameSize;
  private connSend = defaultWindow;
  private connRecv: number;
  private connUnacked = 0;
  private readonly decoder: HpackDecoder;
  private partial: Uint8Array | undefined;
  /** A header block being continued (CONTINUATION frames), its stream and first frame's flags. */
  private block: { id: number; flags: number; parts: Uint8Array[]; size: number } | undefined;
  private readonly streamWindow: number;
  private readonly connectionWindow: number;
  private settled = false;
  /** Socket reads so far: the keepalive checks whether any came since it last looked. */
  private reads = 0;
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
  closed = false;
  /** The backend sent GOAWAY or the ids ran out: open a new connection for new calls. */
  onGoaway: (() => void) | undefined;
  whenClosed: ((err: Error | undefined) => void) | undefined;

  constructor(readonly options: H2ConnectionOptions) {
    this.streamWindow = options.streamWindow ?? 1024 * 1024;
    this.connectionWindow = options.connectionWindow ?? 16 * 1024 * 1024;
    this.connRecv = this.connectionWindow;
    this.decoder = new HpackDecoder(4096, options.maxHeaderListSize ?? 64 * 1024);
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
    if (this.connectionWindow > defaultWindow) this.out.words(FrameType.WINDOW_UPDATE, 0, 0, this.connectionWindow - defaultWindow);
    this.flush();
  }

  /** Starts a stream: now when a slot is free, else once one is. */
  open(stream: H2Stream): void {
    if (this.goingAway || this.draining || this.closed) return this.finish(stream, new StreamError("connection is closing", ErrorCode.REFUSED_STREAM, true));
    stream.conn = this;
    if (!this.settled || this.streams.size >= this.peerMaxStreams) {
      stream.keepBlock();
      this.waiting.push(stream);
    } else this.start1(stream);
  }

  private start1(stream: H2Stream): void {
    const id = this.nextId;
    this.nextId += 2;
    stream.id = id;
    stream.sendWindow = this.peerInitialWindow;
    stream.recvWindow = this.streamWindow;
    this.streams.set(id, stream);
    const endStream = stream.pendingEnd && stream.pending.length === 0;
    this.out.headerBlock(id, endStream ? Flag.END_STREAM : 0, stream.block, this.peerMaxFrame);
    if (endStream) stream.localEnded = true;
    // A writer told to wait while the stream had no connection or slot is owed drain() once the
    // bytes are out, else it never writes its next message (a client stream's second one).
    else this.unblock(stream);
    this.schedule();
    if (this.nextId > lastStreamId) this.retire();
  }

  /** Sends what the stream holds as far as the windows allow; false while bytes still wait. */
  sendPending(stream: H2Stream): boolean {
    if (stream.id === 0) return !(stream.wantsDrain = true);
    const { pending } = stream;
    while (pending.length > 0) {
      const chunk = pending[0];
      const n = Math.min(chunk.length, stream.sendWindow, this.connSend, this.peerMaxFrame);
      if (n <= 0) break;
      const last = n === chunk.length && pending.length === 1 && stream.pendingEnd;
      this.out.frame(FrameType.DATA, last ? Flag.END_STREAM : 0, stream.id, chunk, 0, n);
      stream.sendWindow -= n;
      this.connSend -= n;
      if (n === chunk.length) pending.shift();
      else pending[0] = chunk.subarray(n);
      if (last) stream.localEnded = true;
    }
    if (pending.length === 0 && stream.pendingEnd && !stream.localEnded) {
      this.out.frame(FrameType.DATA, Flag.END_STREAM, stream.id);
      stream.localEnded = true;
    }
    this.schedule();
    if (stream.localEnded && stream.remoteEnded) this.finish(stream, undefined);
    if (pending.length > 0) this.blocked.add(stream);
    else this.blocked.delete(stream);
    const ok = pending.length === 0 && this.backlogBytes < highWaterBytes;
    if (!ok) stream.wantsDrain = true;
    return ok;
  }

  /** Grants the backend the window this stream used, unless its reader is paused. */
  grant(stream: H2Stream): void {
    if (stream.paused || stream.closed || stream.remoteEnded || stream.unacked < this.streamWindow / 2) return;
    this.out.words(FrameType.WINDOW_UPDATE, 0, stream.id, stream.unacked);
    stream.recvWindow += stream.unacked;
    stream.unacked = 0;
    this.schedule();
  }

  reset(stream: H2Stream, code: number): void {
    if (stream.closed) return;
    if (stream.id !== 0) {
      this.out.words(FrameType.RST_STREAM, 0, stream.id, code);
      this.schedule();
    }
    this.forget(stream);
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
    if (this.socket && this.settled && !this.goingAway) this.out.words(FrameType.GOAWAY, 0, 0, 0, ErrorCode.NO_ERROR);
    this.shutdown(undefined);
  }

  /** Stream ids ran out: calls still waiting go to the connection that replaces this one. */
  private retire(): void {
    if (this.goingAway) return;
    this.goingAway = true;
    for (const s of this.waiting.splice(0)) this.finish(s, new StreamError("connection ran out of stream ids", ErrorCode.REFUSED_STREAM, true));
    this.onGoaway?.();
  }

  private schedule(): void {
    if (this.flushQueued) return;
    this.flushQueued = true;
    setImmediate(this.flush);
  }

  private readonly flush = (): void => {
    this.flushQueued = false;
    const socket = this.socket;
    if (!socket || this.out.length === 0) return;
    const bytes = this.out.take();
    if (this.backlog.length > 0) return this.queue(bytes.slice());
    const n = socket.write(bytes);
    if (n < bytes.length) this.queue(bytes.slice(Math.max(n, 0)));
  };

  private queue(bytes: Uint8Array): void {
    this.backlog.push(bytes);
    this.backlogBytes += bytes.length;
  }

  onDrain(): void {
    const socket = this.socket;
    if (!socket) return;
    while (this.backlog.length > 0) {
      const next = this.backlog[0];
      const n = socket.write(next);
      if (n < next.length) {
        this.backlogBytes -= Math.max(n, 0);
        this.backlog[0] = next.subarray(Math.max(n, 0));
        return;
      }
      this.backlogBytes -= next.length;
      this.backlog.shift();
    }
    for (const s of this.streams.values()) {
      if (s.wantsDrain && s.pending.length === 0) {
        s.wantsDrain = false;
        s.handler.drain();
      }
    }
  }

  onData(data: Uint8Array): void {
    this.reads++;
    let buf = data;
    if (this.partial) {
      buf = joinBytes(this.partial, data);
      this.partial = undefined;
    }
    let pos = 0;
    try {
      while (buf.length - pos >= frameHeaderSize) {
        const length = (buf[pos] << 16) | (buf[pos + 1] << 8) | buf[pos + 2];
        if (length > defaultMaxFrameSize) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, `frame of ${length} bytes above ${defaultMaxFrameSize}`);
        if (buf.length - pos < frameHeaderSize + length) break;
        const type = buf[pos + 3];
        const flags = buf[pos + 4];
        const id = ((buf[pos + 5] & 0x7f) << 24) | (buf[pos + 6] << 16) | (buf[pos + 7] << 8) | buf[pos + 8];
        const start = pos + frameHeaderSize;
        pos = start + length;
        // A plain complete header block (the common HEADERS) is decoded in place, without a view.
        // So is a plain DATA frame's payload (a stream's messages): the handler gets the range, not a view per frame.
        if (type === FrameType.DATA && !(flags & Flag.PADDED) && this.settled && !this.block) this.onDataFrame(flags, id, buf, start, pos);
        else if (type === FrameType.HEADERS && (flags & (Flag.END_HEADERS | Flag.PADDED | Flag.PRIORITY)) === Flag.END_HEADERS && this.settled && !this.block && id !== 0) this.headerBlock(id, flags, buf, start, pos);
        else this.frame(type, flags, id, buf.subarray(start, pos));
        if (this.closed) return;
      }
    } catch (e) {
      if (e instanceof ConnectionError) return this.fail(e);
      if (e instanceof HpackError) return this.fail(new ConnectionError(ErrorCode.COMPRESSION_ERROR, e.message));
      throw e;
    }
    if (pos < buf.length) this.partial = buf.slice(pos);
  }

  private frame(type: number, flags: number, id: number, payload: Uint8Array): void {
    if (!this.settled && type !== FrameType.SETTINGS) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "backend did not start with SETTINGS: not an HTTP/2 server?");
    if (this.block && type !== FrameType.CONTINUATION) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "header block interrupted");
    switch (type) {
      case FrameType.DATA: {
        const body = unpad(flags, payload);
        return this.onDataFrame(flags, id, body, 0, body.length, payload.length);
      }
      case FrameType.HEADERS:
        return this.onHeaders(flags, id, payload);
      case FrameType.CONTINUATION:
        return this.onContinuation(flags, id, payload);
      case FrameType.RST_STREAM:
        return this.onReset(id, payload);
      case FrameType.SETTINGS:
        return this.onSettings(flags, id, payload);
      case FrameType.PING:
        if (payload.length !== 8 || id !== 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "bad PING");
        if (!(flags & Flag.ACK)) {
          this.out.frame(FrameType.PING, Flag.ACK, 0, payload);
          this.schedule();
        }
        return;
      case FrameType.GOAWAY:
        return this.onGoawayFrame(id, payload);
      case FrameType.WINDOW_UPDATE:
        return this.onWindowUpdate(id, payload);
      case FrameType.PUSH_PROMISE:
        throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "PUSH_PROMISE with push disabled");
      default:
        return; // PRIORITY and unknown frame types are ignored (RFC 9113 §5.5)
    }
  }

  /** A DATA frame whose body is bytes[start, end); `size` is the whole payload's, padding included (flow control counts it). */
  private onDataFrame(flags: number, id: number, bytes: Uint8Array, start: number, end: number, size = end - start): void {
    if (id === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "DATA on stream 0");
    this.connRecv -= size;
    if (this.connRecv < 0) throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, "backend overran the connection window");
    // The connection window is granted back at once: per-stream windows bound what kedge holds.
    this.connUnacked += size;
    if (this.connUnacked >= this.connectionWindow / 2) {
      this.out.words(FrameType.WINDOW_UPDATE, 0, 0, this.connUnacked);
      this.connRecv += this.connUnacked;
      this.connUnacked = 0;
      this.schedule();
    }
    const stream = this.streams.get(id);
    if (!stream) return this.unknownStream(id);
    if (!stream.responded || stream.remoteEnded) return this.streamError(stream, ErrorCode.PROTOCOL_ERROR, stream.responded ? "DATA after END_STREAM" : "DATA before response headers");
    stream.recvWindow -= size;
    if (stream.recvWindow < 0) return this.streamError(stream, ErrorCode.FLOW_CONTROL_ERROR, "backend overran the stream window");
    stream.unacked += size;
    if (end > start) stream.handler.data(bytes, start, end);
    if (flags & Flag.END_STREAM) this.remoteEnd(stream);
    else if (!stream.closed) this.grant(stream);
  }

  private onHeaders(flags: number, id: number, payload: Uint8Array): void {
    if (id === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "HEADERS on stream 0");
    let fragment = unpad(flags, payload);
    if (flags & Flag.PRIORITY) {
      if (fragment.length < 5) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "short HEADERS priority");
      fragment = fragment.subarray(5);
    }
    if (flags & Flag.END_HEADERS) return this.headerBlock(id, flags, fragment, 0, fragment.length);
    this.block = { id, flags, parts: [fragment.slice()], size: fragment.length };
  }

  private onContinuation(flags: number, id: number, payload: Uint8Array): void {
    const block = this.block;
    if (!block || block.id !== id) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "unexpected CONTINUATION");
    block.size += payload.length;
    // A header block may not outgrow what kedge agreed to decode (CVE-2024-27316: CONTINUATION floods).
    if (block.size > 2 * (this.options.maxHeaderListSize ?? 64 * 1024)) throw new ConnectionError(ErrorCode.ENHANCE_YOUR_CALM, "header block too large");
    block.parts.push(payload.slice());
    if (!(flags & Flag.END_HEADERS)) return;
    this.block = undefined;
    const whole = Buffer.concat(block.parts);
    this.headerBlock(id, block.flags, whole, 0, whole.length);
  }

  private headerBlock(id: number, flags: number, block: Uint8Array, start: number, end: number): void {
    // Decoded even for a stream kedge has dropped: the dynamic table must stay in step.
    const headers = this.decoder.decode(block, start, end);
    const stream = this.streams.get(id);
    if (!stream) return this.unknownStream(id);
    const endStream = (flags & Flag.END_STREAM) !== 0;
    if (stream.remoteEnded) return this.streamError(stream, ErrorCode.STREAM_CLOSED, "HEADERS after END_STREAM");
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

  private onReset(id: number, payload: Uint8Array): void {
    if (payload.length !== 4) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "bad RST_STREAM");
    if (id === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "RST_STREAM on stream 0");
    const stream = this.streams.get(id);
    if (!stream) return;
    const code = readU32(payload, 0);
    stream.rstCode = code;
    // NO_ERROR after a complete response only asks kedge to stop sending (RFC 9113 §8.1).
    if (code === ErrorCode.NO_ERROR && stream.remoteEnded) return this.finish(stream, undefined);
    this.finish(stream, new StreamError(`backend reset the stream: ${errorName(code)}`, code, code === ErrorCode.REFUSED_STREAM));
  }

  private onSettings(flags: number, id: number, payload: Uint8Array): void {
    if (id !== 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "SETTINGS on a stream");
    if (flags & Flag.ACK) {
      if (payload.length !== 0) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS ACK with a payload");
      return;
    }
    if (payload.length % 6 !== 0) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "bad SETTINGS length");
    for (let at = 0; at < payload.length; at += 6) {
      const key = (payload[at] << 8) | payload[at + 1];
      const value = readU32(payload, at + 2);
      if (key === Setting.MAX_CONCURRENT_STREAMS) this.peerMaxStreams = value;
      else if (key === Setting.INITIAL_WINDOW_SIZE) {
        if (value > maxWindow) throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, "INITIAL_WINDOW_SIZE above 2^31-1");
        const delta = value - this.peerInitialWindow;
        this.peerInitialWindow = value;
        for (const s of this.streams.values()) s.sendWindow += delta;
      } else if (key === Setting.MAX_FRAME_SIZE) {
        if (value < defaultMaxFrameSize || value > 16_777_215) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "bad MAX_FRAME_SIZE");
        this.peerMaxFrame = value;
      }
    }
    this.out.frame(FrameType.SETTINGS, Flag.ACK, 0);
    this.schedule();
    if (!this.settled) {
      this.settled = true;
      this.resolveReady();
      this.keepalive = setInterval(this.checkAlive, this.options.keepaliveMs ?? 300_000);
      this.keepalive.unref?.();
    }
    this.startWaiting();
    for (const s of [...this.blocked]) this.unblock(s);
  }

  private onGoawayFrame(id: number, payload: Uint8Array): void {
    if (id !== 0 || payload.length < 8) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "bad GOAWAY");
    const last = readU32(payload, 0) & 0x7fffffff;
    const code = readU32(payload, 4);
    const wasGoing = this.goingAway;
    this.goingAway = true;
    for (const s of [...this.streams.values()]) {
      if (s.id > last) this.finish(s, new StreamError(`backend sent GOAWAY (${errorName(code)})`, ErrorCode.REFUSED_STREAM, true));
    }
    for (const s of this.waiting.splice(0)) this.finish(s, new StreamError(`backend sent GOAWAY (${errorName(code)})`, ErrorCode.REFUSED_STREAM, true));
    if (!wasGoing) this.onGoaway?.();
    if (this.streams.size === 0) this.shutdown(undefined);
  }

  private onWindowUpdate(id: number, payload: Uint8Array): void {
    if (payload.length !== 4) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "bad WINDOW_UPDATE");
    const increment = readU32(payload, 0) & 0x7fffffff;
    if (id === 0) {
      if (increment === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE of 0");
      this.connSend += increment;
      if (this.connSend > maxWindow) throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, "connection window above 2^31-1");
      for (const s of [...this.blocked]) this.unblock(s);
      return;
    }
    const stream = this.streams.get(id);
    if (!stream) return;
    if (increment === 0) return this.streamError(stream, ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE of 0");
    stream.sendWindow += increment;
    if (stream.sendWindow > maxWindow) return this.streamError(stream, ErrorCode.FLOW_CONTROL_ERROR, "stream window above 2^31-1");
    if (this.blocked.has(stream)) this.unblock(stream);
  }

  private unblock(stream: H2Stream): void {
    if (stream.closed) return void this.blocked.delete(stream);
    if (this.sendPending(stream) && stream.wantsDrain) {
      stream.wantsDrain = false;
      stream.handler.drain();
    }
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
      if (!s.closed) this.start1(s);
    }
  }

  /** A frame for a stream kedge does not know: a closed one is fine, an idle one is an error. */
  private unknownStream(id: number): void {
    if (id % 2 === 0 || id >= this.nextId) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `frame on idle stream ${id}`);
  }

  private remoteEnd(stream: H2Stream): void {
    stream.remoteEnded = true;
    stream.handler.end();
    if (stream.closed) return;
    if (stream.localEnded) return this.finish(stream, undefined);
    // The backend answered in full before the request ended: the rest of the request is moot.
    this.out.words(FrameType.RST_STREAM, 0, stream.id, ErrorCode.CANCEL);
    this.schedule();
    this.finish(stream, undefined);
  }

  private streamError(stream: H2Stream, code: number, message: string): void {
    this.out.words(FrameType.RST_STREAM, 0, stream.id, code);
    this.schedule();
    this.finish(stream, new StreamError(`backend broke HTTP/2: ${message}`, code, false));
  }

  /** Drops a stream without telling its handler (kedge cancelled it). */
  private forget(stream: H2Stream): void {
    stream.closed = true;
    if (stream.id !== 0) this.streams.delete(stream.id);
    else {
      const i = this.waiting.indexOf(stream);
      if (i >= 0) this.waiting.splice(i, 1);
    }
    this.blocked.delete(stream);
    this.startWaiting();
    if (this.draining) this.drained();
    else if (this.goingAway && this.streams.size === 0) this.shutdown(undefined);
  }

  private finish(stream: H2Stream, err: StreamError | undefined): void {
    if (stream.closed) return;
    this.forget(stream);
    stream.handler.close(err);
  }

  /** The connection is unusable: tell the backend why (GOAWAY), fail every stream, close. */
  fail(err: Error): void {
    if (this.closed) return;
    if (err instanceof ConnectionError && this.socket) {
      const debug = Buffer.from(err.message.slice(0, 200));
      const payload = Buffer.alloc(8 + debug.length);
      payload.writeUInt32BE(0, 0); // kedge accepts no streams from the backend
      payload.writeUInt32BE(err.code, 4);
      debug.copy(payload, 8);
      this.out.frame(FrameType.GOAWAY, 0, 0, payload);
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
    for (const s of unsent) this.finish(s, new StreamError(message, ErrorCode.REFUSED_STREAM, true, dialFailed));
    for (const s of sent) this.finish(s, new StreamError(message, ErrorCode.INTERNAL_ERROR, false));
    this.socket?.end();
    this.whenClosed?.(err);
  }

  onSocketClose(err?: Error): void {
    this.shutdown(err ?? (this.closed ? undefined : new Error("backend closed the connection")));
  }
}

function readU32(b: Uint8Array, at: number): number {
  return ((b[at] << 24) | (b[at + 1] << 16) | (b[at + 2] << 8) | b[at + 3]) >>> 0;
}

/** A DATA or HEADERS payload without its padding (RFC 9113 §6.1). */
function unpad(flags: number, payload: Uint8Array): Uint8Array {
  if (!(flags & Flag.PADDED)) return payload;
  if (payload.length < 1 || payload[0] >= payload.length) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "bad padding");
  return payload.subarray(1, payload.length - payload[0]);
}
