import type { OutgoingHttpHeaders } from "node:http2";
import { ConnectionError, joinBytes, defaultMaxFrameSize, defaultWindow, ErrorCode, Flag, FrameBuffer, frameHeaderSize, FrameType, maxWindow, preface, Setting } from "../../h2/frames.js";
import { type H2Headers, HpackDecoder, HpackError } from "../../h2/hpack.js";
import { ClosedHow, ClosedStreams } from "../../h2/closed-streams.js";
import { bytesIn } from "../../net/bytes.js";
import { KedgeError } from "../../errors.js";
import { log } from "../../observe/log.js";
import { newRequestId } from "../../proxy/request.js";
import { rawErrorResponse } from "../../proxy/tunnel.js";
import type { ClientTransport } from "../h1/transport.js";
import type { HeadLimits } from "../h1/request-head.js";
import { requestFault } from "./request-check.js";
import { responseBlock } from "./response-block.js";
import { H2ServerStream } from "./stream.js";

export interface H2ServerHandler {
  readonly limits: HeadLimits;
  /** Prefix of the error headers on the answer to an HTTP/1.1 client. */
  readonly errorPrefix: "x-kedge" | "x-winch";
  readonly maxStreams: number;
  /** A request: its stream and its headers (checked per RFC 9113 §8.3). */
  stream(stream: H2ServerStream, headers: H2Headers): void;
  /** A request refused before the proxy saw it (431, 414): answered here with this status and reason. */
  refuse(stream: H2ServerStream, status: number, reason: string): void;
}

/** Client resets of open streams a second before the connection is cut off (rapid reset, CVE-2023-44487). */
const maxResetsPerSecond = 200;
/** PING, SETTINGS, PRIORITY and empty DATA frames a second: more is a flood (CVE-2019-9512/9515/9518). */
const maxControlPerSecond = 1000;
/** Receive window per stream (node:http2's default): bounds what a paused reader holds. */
const streamWindow = defaultWindow;
/** The connection's receive window: large, as each stream's own window bounds what kedge holds. */
const connectionWindow = 16 * 1024 * 1024;
/** A header block (HEADERS and CONTINUATIONs) larger than this ends the connection (CVE-2024-27316). */
const maxBlockBytes = 256 * 1024;

/**
 * One client's HTTP/2 connection on kedge's own server (RFC 9113): frames in from the transport,
 * requests out to the handler as H2ServerStreams, responses framed into one buffer written once
 * per turn. node:http2's server cost ~24 µs per gRPC call in Bun, more than nginx's whole proxy
 * (bench/grpc-floor.sh); this does the same work in ~1–2 µs.
 */
export class H2ServerConnection {
  readonly streams = new Map<number, H2ServerStream>();
  readonly streamWindow = streamWindow;
  peerInitialWindow = defaultWindow;
  private peerMaxFrame = defaultMaxFrameSize;
  private connSend = defaultWindow;
  private connRecv = connectionWindow;
  private connUnacked = 0;
  private readonly decoder: HpackDecoder;
  private readonly out = new FrameBuffer();
  private partial: Uint8Array | undefined;
  private prefaceSeen = false;
  private greeted = false;
  /** The client's first SETTINGS arrived: a real HTTP/2 client. */
  settled = false;
  private lastStreamId = 0;
  private readonly closedStreams = new ClosedStreams();
  /** A header block waiting for its CONTINUATION frames. */
  private block: { id: number; flags: number; selfDependent: boolean; chunks: Uint8Array[]; bytes: number } | undefined;
  private readonly blocked = new Set<H2ServerStream>();
  private closing: H2ServerStream[] = [];
  private flushQueued = false;
  private congested = false;
  /** GOAWAY sent or received: no new streams; the connection ends once its streams are done. */
  private goingAway = false;
  private shutdownMessage = "";
  /** performance.now() of shutdown's first GOAWAY, until the final one is sent; 0 otherwise. */
  drainingSince = 0;
  private endAfterFlush = false;
  closed = false;
  /** performance.now() of the last read, for the idle sweep. */
  lastActivity = performance.now();
  readonly openedAt = this.lastActivity;
  private windowStart = 0;
  private resets = 0;
  private controls = 0;

  constructor(
    readonly transport: ClientTransport,
    private readonly handler: H2ServerHandler,
    /** Where the proxy reads the client's certificate (TLS) and address. */
    readonly socket: object,
    /** The h2c port: a client that sends an HTTP/1.1 request line is answered in HTTP/1.1. Over TLS, ALPN chose h2 and any other preface is a protocol error. */
    private readonly plaintext: boolean,
  ) {
    this.decoder = new HpackDecoder(4096, Math.max(64 * 1024, 4 * handler.limits.maxHeaderBytes));
  }

  /** kedge's SETTINGS, once the client's preface shows it speaks HTTP/2 (one that does not is answered in HTTP/1.1). */
  private greet(): void {
    if (this.greeted) return;
    this.greeted = true;
    const { handler } = this;
    this.out.settings(0, [
      [Setting.MAX_CONCURRENT_STREAMS, handler.maxStreams],
      [Setting.INITIAL_WINDOW_SIZE, streamWindow],
      [Setting.MAX_HEADER_LIST_SIZE, handler.limits.maxHeaderBytes],
    ]);
    this.out.words(FrameType.WINDOW_UPDATE, 0, 0, connectionWindow - defaultWindow);
    this.schedule();
  }

  get activeStreams(): number {
    return this.streams.size;
  }

  // --- reading ---

  onData(data: Uint8Array): void {
    if (this.closed) return;
    this.lastActivity = performance.now();
    let buf = data;
    if (this.partial) {
      buf = joinBytes(this.partial, data);
      this.partial = undefined;
    }
    let pos = 0;
    try {
      if (!this.prefaceSeen) {
        const n = Math.min(buf.length, preface.length);
        for (let i = 0; i < n; i++) if (buf[i] !== preface[i]) return this.badPreface(buf);
        if (n < preface.length) {
          this.partial = buf;
          return;
        }
        this.prefaceSeen = true;
        this.greet();
        pos = preface.length;
      }
      while (buf.length - pos >= frameHeaderSize) {
        const length = (buf[pos] << 16) | (buf[pos + 1] << 8) | buf[pos + 2];
        if (length > defaultMaxFrameSize) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, `frame of ${length} bytes above ${defaultMaxFrameSize}`);
        if (buf.length - pos < frameHeaderSize + length) break;
        const type = buf[pos + 3];
        const flags = buf[pos + 4];
        const id = ((buf[pos + 5] & 0x7f) << 24) | (buf[pos + 6] << 16) | (buf[pos + 7] << 8) | buf[pos + 8];
        const start = pos + frameHeaderSize;
        pos = start + length;
        this.frame(type, flags, id, buf, start, pos);
        if (this.closed || this.endAfterFlush) return;
      }
    } catch (e) {
      if (e instanceof ConnectionError) return this.fail(e.code, e.message);
      if (e instanceof HpackError) return this.fail(ErrorCode.COMPRESSION_ERROR, e.message);
      throw e;
    }
    if (pos < buf.length) this.partial = buf.slice(pos);
    if (this.connUnacked >= connectionWindow / 2) {
      this.out.words(FrameType.WINDOW_UPDATE, 0, 0, this.connUnacked);
      this.connRecv += this.connUnacked;
      this.connUnacked = 0;
      this.schedule();
    }
  }

  private frame(type: number, flags: number, id: number, buf: Uint8Array, start: number, end: number): void {
    if (!this.settled && type !== FrameType.SETTINGS) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "the client's first frame was not SETTINGS");
    if (this.block && type !== FrameType.CONTINUATION) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "header block interrupted");
    switch (type) {
      case FrameType.DATA:
        return this.onDataFrame(flags, id, buf, start, end);
      case FrameType.HEADERS:
        return this.onHeaders(flags, id, buf, start, end);
      case FrameType.CONTINUATION:
        return this.onContinuation(flags, id, buf, start, end);
      case FrameType.RST_STREAM:
        return this.onReset(id, start, end);
      case FrameType.SETTINGS:
        return this.onSettings(flags, id, buf, start, end);
      case FrameType.PING:
        if (end - start !== 8) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "PING of other than 8 bytes");
        if (id !== 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "PING on a stream");
        this.control();
        if (!(flags & Flag.ACK)) {
          this.out.frame(FrameType.PING, Flag.ACK, 0, buf, start, end);
          this.schedule();
        } else if (this.drainingSince > 0 && isShutdownPing(buf, start)) this.finalGoaway();
        return;
      case FrameType.GOAWAY:
        return this.onGoaway();
      case FrameType.WINDOW_UPDATE:
        return this.onWindowUpdate(id, buf, start, end);
      case FrameType.PRIORITY:
        return this.onPriority(id, buf, start, end);
      case FrameType.PUSH_PROMISE:
        throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "PUSH_PROMISE from a client");
      default:
        return; // unknown frame types are ignored (RFC 9113 §5.5)
    }
  }

  /** Counts a frame that costs kedge work and the client nothing; a flood ends the connection. */
  private control(): void {
    this.tick();
    if (++this.controls > maxControlPerSecond) throw new ConnectionError(ErrorCode.ENHANCE_YOUR_CALM, "too many control frames");
  }

  private tick(): void {
    const now = this.lastActivity;
    if (now - this.windowStart > 1000) {
      this.windowStart = now;
      this.resets = 0;
      this.controls = 0;
    }
  }

  private onDataFrame(flags: number, id: number, buf: Uint8Array, start: number, end: number): void {
    if (id === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "DATA on stream 0");
    const size = end - start;
    this.connRecv -= size;
    if (this.connRecv < 0) throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, "DATA beyond the connection window");
    this.connUnacked += size;
    let bodyEnd = end;
    let bodyStart = start;
    if (flags & Flag.PADDED) {
      const pad = size > 0 ? buf[start] : 0;
      if (size === 0 || pad >= size) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "padding as long as the frame");
      bodyStart++;
      bodyEnd -= pad;
    }
    const stream = this.streams.get(id);
    if (!stream) {
      if (id > this.lastStreamId) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "DATA on an idle stream");
      return this.onClosedStream(id, false);
    }
    if (stream.remoteEnded) return this.reset(stream, ErrorCode.STREAM_CLOSED);
    stream.recvWindow -= size;
    if (stream.recvWindow < 0) return this.reset(stream, ErrorCode.FLOW_CONTROL_ERROR);
    stream.unacked += size - (bodyEnd - bodyStart); // padding is consumed at once
    const endStream = (flags & Flag.END_STREAM) !== 0;
    if (bodyEnd === bodyStart && !endStream) this.control();
    stream.received += bodyEnd - bodyStart;
    if (stream.declaredLength >= 0 && (stream.received > stream.declaredLength || (endStream && stream.received !== stream.declaredLength))) {
      return this.reset(stream, ErrorCode.PROTOCOL_ERROR); // RFC 9113 §8.1.1: a body unlike its content-length
    }
    stream.receive(bodyEnd > bodyStart ? (bytesIn(buf, bodyStart, bodyEnd) as Buffer) : emptyBody, endStream);
    if (endStream && stream.localEnded) this.closeStream(stream, ClosedHow.ENDED);
  }

  private onHeaders(flags: number, id: number, buf: Uint8Array, start: number, end: number): void {
    if (id === 0 || (id & 1) === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `HEADERS on stream ${id}`);
    if (flags & Flag.PADDED) {
      const pad = end > start ? buf[start++] : 0;
      end -= pad;
      if (end < start) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "padding as long as the frame");
    }
    let selfDependent = false;
    if (flags & Flag.PRIORITY) {
      selfDependent = end - start >= 5 && dependency(buf, start) === id;
      start += 5;
    }
    if (end < start) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "HEADERS too short");
    if (flags & Flag.END_HEADERS) return this.headerBlock(id, flags, selfDependent, buf, start, end);
    this.block = { id, flags, selfDependent, chunks: [Uint8Array.prototype.slice.call(buf, start, end)], bytes: end - start };
  }

  private onContinuation(flags: number, id: number, buf: Uint8Array, start: number, end: number): void {
    const block = this.block;
    if (!block || block.id !== id) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "CONTINUATION without a header block");
    block.bytes += end - start;
    if (block.bytes > maxBlockBytes) throw new ConnectionError(ErrorCode.ENHANCE_YOUR_CALM, "header block too large");
    if (end === start) this.control();
    block.chunks.push(Uint8Array.prototype.slice.call(buf, start, end));
    if (!(flags & Flag.END_HEADERS)) return;
    this.block = undefined;
    const whole = Buffer.concat(block.chunks);
    this.headerBlock(id, block.flags, block.selfDependent, whole, 0, whole.length);
  }

  /** A complete header block: a new request, or an open stream's trailers. */
  private headerBlock(id: number, flags: number, selfDependent: boolean, buf: Uint8Array, start: number, end: number): void {
    const headers = this.decoder.decode(buf, start, end); // always: the HPACK context must follow every block
    const endStream = (flags & Flag.END_STREAM) !== 0;
    const open = this.streams.get(id);
    if (open) {
      if (open.remoteEnded) return this.reset(open, ErrorCode.STREAM_CLOSED);
      // Trailers: kedge forwards none from clients (gRPC and HTTP requests carry them rarely); they end the body.
      if (!endStream || selfDependent || this.decoder.pseudoAfterRegular) return this.reset(open, ErrorCode.PROTOCOL_ERROR);
      if (open.declaredLength >= 0 && open.received !== open.declaredLength) return this.reset(open, ErrorCode.PROTOCOL_ERROR);
      open.receive(emptyBody, true);
      if (open.localEnded) this.closeStream(open, ClosedHow.ENDED);
      return;
    }
    if (id <= this.lastStreamId) return this.onClosedStream(id, true);
    this.lastStreamId = id;
    if (this.goingAway) return this.closedStreams.add(id, ClosedHow.RESET_LOCALLY); // after GOAWAY: ignored, as are its frames in flight
    const { limits } = this.handler;
    const fault = selfDependent ? "a stream depending on itself" : this.decoder.pseudoAfterRegular ? "a pseudo-header after a regular field" : requestFault(headers);
    if (this.streams.size >= this.handler.maxStreams || fault !== undefined) return this.refuseStream(id, fault === undefined ? ErrorCode.REFUSED_STREAM : ErrorCode.PROTOCOL_ERROR);
    const stream = new H2ServerStream(this, id, endStream, contentLength(headers["content-length"]));
    this.streams.set(id, stream);
    if (endStream) stream.noBody();
    if (this.decoder.fieldCount > limits.maxHeaders || this.decoder.listSize > limits.maxHeaderBytes) {
      return this.handler.refuse(stream, 431, `request headers above ${limits.maxHeaderBytes} bytes or ${limits.maxHeaders} fields`);
    }
    const path = headers[":path"];
    if (typeof path === "string" && path.length > limits.maxUriBytes) return this.handler.refuse(stream, 414, `request target longer than ${limits.maxUriBytes} bytes`);
    try {
      this.handler.stream(stream, headers);
    } catch (e) {
      // A bug in one request's handling must not take the connection's other streams with it.
      log.error("HTTP/2 request handler failed", { error: (e as Error).message });
      this.reset(stream, ErrorCode.INTERNAL_ERROR);
    }
  }

  /** A stream kedge never started (a malformed request, or one above max_concurrent_streams). */
  private refuseStream(id: number, code: number): void {
    this.out.words(FrameType.RST_STREAM, 0, id, code);
    this.closedStreams.add(id, ClosedHow.RESET_LOCALLY);
    this.schedule();
    this.control();
  }

  /**
   * DATA or HEADERS on a stream that is no longer open (RFC 9113 §5.1): in flight when kedge reset
   * it, dropped; after the client reset it, a stream error; after both sides ended it, a
   * connection error. HEADERS on an id the client skipped reuses an id lower than one it opened.
   */
  private onClosedStream(id: number, headers: boolean): void {
    switch (this.closedStreams.how(id)) {
      case ClosedHow.RESET_BY_PEER:
        this.out.words(FrameType.RST_STREAM, 0, id, ErrorCode.STREAM_CLOSED);
        this.schedule();
        return this.control();
      case ClosedHow.ENDED:
        throw new ConnectionError(ErrorCode.STREAM_CLOSED, `${headers ? "HEADERS" : "DATA"} on closed stream ${id}`);
      case ClosedHow.NEVER_OPENED:
        if (headers) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `stream ${id} opened after a higher one`);
        throw new ConnectionError(ErrorCode.STREAM_CLOSED, `DATA on closed stream ${id}`);
      default:
        return this.control();
    }
  }

  /** PRIORITY: kedge does not prioritise, but the frame's own rules still hold (RFC 9113 §6.3, §5.3.1). */
  private onPriority(id: number, buf: Uint8Array, start: number, end: number): void {
    if (id === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "PRIORITY on stream 0");
    this.control();
    const fault = end - start !== 5 ? ErrorCode.FRAME_SIZE_ERROR : dependency(buf, start) === id ? ErrorCode.PROTOCOL_ERROR : -1;
    if (fault < 0) return;
    const stream = this.streams.get(id);
    if (stream) return this.reset(stream, fault);
    this.out.words(FrameType.RST_STREAM, 0, id, fault);
    this.schedule();
  }

  private onReset(id: number, start: number, end: number): void {
    if (end - start !== 4) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "RST_STREAM of other than 4 bytes");
    if (id === 0 || id > this.lastStreamId) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `RST_STREAM on idle stream ${id}`);
    const stream = this.streams.get(id);
    if (!stream) return this.control();
    this.closeStream(stream, ClosedHow.RESET_BY_PEER);
    this.tick();
    if (++this.resets > maxResetsPerSecond) throw new ConnectionError(ErrorCode.ENHANCE_YOUR_CALM, "too many streams reset");
  }

  private onSettings(flags: number, id: number, buf: Uint8Array, start: number, end: number): void {
    if (id !== 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "SETTINGS on a stream");
    if (flags & Flag.ACK) {
      if (end !== start) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS ACK with a payload");
      return;
    }
    if ((end - start) % 6 !== 0) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS not a multiple of 6 bytes");
    if (this.settled) this.control();
    this.settled = true;
    for (let at = start; at < end; at += 6) {
      const key = (buf[at] << 8) | buf[at + 1];
      const value = ((buf[at + 2] << 24) | (buf[at + 3] << 16) | (buf[at + 4] << 8) | buf[at + 5]) >>> 0;
      if (key === Setting.INITIAL_WINDOW_SIZE) {
        if (value > maxWindow) throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, "INITIAL_WINDOW_SIZE above 2^31-1");
        const delta = value - this.peerInitialWindow;
        this.peerInitialWindow = value;
        for (const s of this.streams.values()) s.sendWindow += delta;
      } else if (key === Setting.MAX_FRAME_SIZE) {
        if (value < defaultMaxFrameSize || value > 16_777_215) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `MAX_FRAME_SIZE ${value}`);
        this.peerMaxFrame = value;
      } else if (key === Setting.ENABLE_PUSH && value > 1) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `ENABLE_PUSH ${value}`);
    }
    this.out.frame(FrameType.SETTINGS, Flag.ACK, 0);
    this.schedule();
    this.sendBlocked();
  }

  /** The client will open no more streams: the connection closes once its streams are done. */
  private onGoaway(): void {
    this.goingAway = true;
    if (this.streams.size === 0) this.endSoon();
  }

  private onWindowUpdate(id: number, buf: Uint8Array, start: number, end: number): void {
    if (end - start !== 4) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "WINDOW_UPDATE of other than 4 bytes");
    const increment = ((buf[start] & 0x7f) << 24) | (buf[start + 1] << 16) | (buf[start + 2] << 8) | buf[start + 3];
    if (id === 0) {
      if (increment === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE of 0");
      this.connSend += increment;
      if (this.connSend > maxWindow) throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, "connection window above 2^31-1");
      return this.sendBlocked();
    }
    const stream = this.streams.get(id);
    if (!stream) {
      if (id > this.lastStreamId) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE on an idle stream");
      return;
    }
    if (increment === 0) return this.reset(stream, ErrorCode.PROTOCOL_ERROR);
    stream.sendWindow += increment;
    if (stream.sendWindow > maxWindow) return this.reset(stream, ErrorCode.FLOW_CONTROL_ERROR);
    if (stream.pendingOutBytes > 0) this.sendPending(stream);
  }

  /**
   * Not the client preface. On the h2c port an HTTP/1.1 client is told in HTTP/1.1 that the port
   * speaks HTTP/2 only, once its request line is in; anything else (and anything over TLS, where
   * ALPN already chose h2) is a connection error of type PROTOCOL_ERROR (RFC 9113 §3.4).
   */
  private badPreface(buf: Uint8Array): void {
    if (this.plaintext) {
      const lineEnd = buf.indexOf(10 /* LF */);
      if (lineEnd < 0 && buf.length < this.handler.limits.maxUriBytes + 64) {
        this.partial = buf;
        return;
      }
      if (lineEnd >= 0 && http1RequestLine.test(Buffer.from(buf.buffer, buf.byteOffset, lineEnd).toString("latin1"))) return this.notHttp2();
    }
    this.fail(ErrorCode.PROTOCOL_ERROR, "not the HTTP/2 client preface");
  }

  /** An HTTP/1.1 client on the h2c port: told so in HTTP/1.1, then closed. */
  private notHttp2(): void {
    const err = new KedgeError("bad-request", 505, "this port speaks HTTP/2 with prior knowledge only");
    this.transport.write(Buffer.from(rawErrorResponse(err, newRequestId(), this.handler.errorPrefix), "latin1"));
    this.closed = true;
    this.transport.end();
  }

  // --- writing ---

  /** HEADERS (and CONTINUATIONs) for a response or trailers; throws, as node:http2 does, on a field HTTP/2 forbids. */
  sendHeaders(stream: H2ServerStream, headers: OutgoingHttpHeaders, endStream: boolean): void {
    this.out.headerBlock(stream.id, endStream ? Flag.END_STREAM : 0, responseBlock(headers), this.peerMaxFrame);
    this.schedule();
  }

  /** Response body bytes; false when they wait (flow control or a full socket): "drain" follows. */
  sendData(stream: H2ServerStream, chunk: Uint8Array): boolean {
    if (chunk.length > 0) {
      if (stream.pendingOutBytes > 0) this.hold(stream, chunk, 0);
      else {
        const sent = this.dataFrames(stream, chunk, false);
        if (sent < chunk.length) this.hold(stream, chunk, sent);
      }
    }
    const ok = stream.pendingOutBytes === 0 && !this.congested;
    if (!ok) stream.wantsDrain = true;
    return ok;
  }

  /** end(): the last bytes, then END_STREAM, or the trailers the stream's "wantTrailers" listener sends. */
  endData(stream: H2ServerStream, chunk: Uint8Array | undefined): void {
    if (chunk !== undefined && chunk.length > 0) {
      if (stream.pendingOutBytes > 0) return this.hold(stream, chunk, 0);
      const last = !stream.waitForTrailers;
      const sent = this.dataFrames(stream, chunk, last);
      if (sent < chunk.length) return this.hold(stream, chunk, sent);
      if (last) return this.localEnd(stream);
    } else if (stream.pendingOutBytes > 0) return;
    this.finishEnd(stream);
  }

  /** Frames as much of chunk as the windows allow, END_STREAM on the last when `last` and all of it went; returns the bytes sent. */
  private dataFrames(stream: H2ServerStream, chunk: Uint8Array, last: boolean): number {
    const n = Math.min(chunk.length, stream.sendWindow, this.connSend);
    if (n <= 0) return 0;
    const max = this.peerMaxFrame;
    for (let at = 0; at < n; at += max) {
      const stop = Math.min(n, at + max);
      this.out.frame(FrameType.DATA, last && stop === chunk.length ? Flag.END_STREAM : 0, stream.id, chunk, at, stop);
    }
    stream.sendWindow -= n;
    this.connSend -= n;
    this.schedule();
    return n;
  }

  private hold(stream: H2ServerStream, chunk: Uint8Array, from: number): void {
    stream.pendingOut.push(from > 0 ? chunk.subarray(from) : chunk);
    stream.pendingOutBytes += chunk.length - from;
    if (this.blocked.has(stream)) return;
    this.blocked.add(stream);
    stream.blockedSince = performance.now();
  }

  /** Sends a stream's queued bytes as far as the windows allow; ends it if end() is waiting on them. */
  private sendPending(stream: H2ServerStream): void {
    const pending = stream.pendingOut;
    while (pending.length > 0) {
      const chunk = pending[0];
      const sent = this.dataFrames(stream, chunk, false);
      stream.pendingOutBytes -= sent;
      if (sent < chunk.length) {
        pending[0] = chunk.subarray(sent);
        // Called on a read (WINDOW_UPDATE, SETTINGS): lastActivity is now.
        if (sent > 0) stream.blockedSince = this.lastActivity;
        return;
      }
      pending.shift();
    }
    this.blocked.delete(stream);
    if (stream.ending && !stream.localEnded) this.finishEnd(stream);
    else if (stream.wantsDrain && !this.congested) {
      stream.wantsDrain = false;
      stream.emit("drain");
    }
  }

  /**
   * Resets the streams whose answer has waited longer than `limitMs` for the client to grant
   * window. CANCEL, not FLOW_CONTROL_ERROR: a client that grants none breaks no rule of RFC 9113
   * §6.9, kedge just stops waiting; the stream's close cancels its backend call.
   */
  resetStalled(now: number, limitMs: number): void {
    for (const s of this.blocked) if (now - s.blockedSince > limitMs) this.reset(s, ErrorCode.CANCEL);
  }

  private sendBlocked(): void {
    if (this.blocked.size === 0) return;
    for (const s of [...this.blocked]) {
      if (this.connSend <= 0) return;
      this.sendPending(s);
    }
  }

  private finishEnd(stream: H2ServerStream): void {
    if (stream.localEnded || stream.closed) return;
    if (stream.waitForTrailers && stream.has("wantTrailers")) {
      stream.emit("wantTrailers");
      if (stream.localEnded || stream.closed) return;
    }
    this.out.frame(FrameType.DATA, Flag.END_STREAM, stream.id);
    this.schedule();
    this.localEnd(stream);
  }

  /** END_STREAM went out: the stream is done if the client's side is, else the client is told to stop sending (RFC 9113 §8.1). */
  localEnd(stream: H2ServerStream): void {
    stream.localEnded = true;
    if (stream.remoteEnded) return this.closeStream(stream, ClosedHow.ENDED);
    this.out.words(FrameType.RST_STREAM, 0, stream.id, ErrorCode.NO_ERROR);
    this.schedule();
    this.closeStream(stream, ClosedHow.RESET_LOCALLY);
  }

  /** Gives the client back the window a reader has consumed. */
  grant(stream: H2ServerStream): void {
    if (stream.remoteEnded || stream.closed || stream.unacked < streamWindow / 2) return;
    this.out.words(FrameType.WINDOW_UPDATE, 0, stream.id, stream.unacked);
    stream.recvWindow += stream.unacked;
    stream.unacked = 0;
    this.schedule();
  }

  reset(stream: H2ServerStream, code: number): void {
    if (stream.closed) return;
    this.out.words(FrameType.RST_STREAM, 0, stream.id, code);
    this.schedule();
    this.closeStream(stream, ClosedHow.RESET_LOCALLY);
  }

  private closeStream(stream: H2ServerStream, how: ClosedHow): void {
    if (stream.closed) return;
    this.closedStreams.add(stream.id, how);
    stream.markClosed();
    this.streams.delete(stream.id);
    this.blocked.delete(stream);
    this.closing.push(stream);
    this.schedule();
    if (this.goingAway && this.streams.size === 0) this.endSoon();
  }

  private schedule(): void {
    if (this.flushQueued) return;
    this.flushQueued = true;
    queueMicrotask(this.flush);
  }

  /** Writes the turn's frames in one write, then tells closed streams' listeners. */
  private readonly flush = (): void => {
    this.flushQueued = false;
    if (this.out.length > 0 && !this.closed) {
      if (!this.transport.writeTransient(this.out.take())) this.congested = true;
    }
    if (this.closing.length > 0) {
      const closing = this.closing;
      this.closing = [];
      for (const s of closing) s.emitClosed();
    }
    if (this.endAfterFlush && !this.closed && !this.flushQueued) {
      this.closed = true;
      this.transport.end();
    }
  };

  /** The socket took everything queued: writers waiting on it may go on. */
  onDrain(): void {
    this.congested = false;
    for (const s of this.streams.values()) {
      if (s.wantsDrain && s.pendingOutBytes === 0) {
        s.wantsDrain = false;
        s.emit("drain");
      }
    }
  }

  // --- ending ---

  private endSoon(): void {
    this.endAfterFlush = true;
    this.schedule();
  }

  /** A connection error: GOAWAY with the code, every stream ends, then the socket. */
  fail(code: number, message: string): void {
    if (this.closed) return;
    this.greet(); // a GOAWAY follows the server's preface (RFC 9113 §3.4), even before the client's arrived
    if (!this.goingAway || code !== ErrorCode.NO_ERROR) this.goaway(code, message);
    for (const s of [...this.streams.values()]) this.closeStream(s, ClosedHow.RESET_LOCALLY);
    this.endSoon();
  }

  private goaway(code: number, message: string): void {
    this.goingAway = true;
    this.goawayFrame(this.lastStreamId, code, message);
  }

  private goawayFrame(lastStreamId: number, code: number, message: string): void {
    const debug = Buffer.from(message.slice(0, 200), "latin1");
    const payload = Buffer.allocUnsafe(8 + debug.length);
    payload.writeUInt32BE(lastStreamId, 0);
    payload.writeUInt32BE(code, 4);
    debug.copy(payload, 8);
    this.out.frame(FrameType.GOAWAY, 0, 0, payload);
    this.schedule();
  }

  /**
   * Graceful, in RFC 9113 §6.8's two steps: a GOAWAY with the largest stream id and a PING; streams
   * the client opened before it heard that are still served. The final GOAWAY, naming the last
   * stream kedge took, follows the PING's ack (or finalGoaway from the sweep if none comes); the
   * open streams finish, then the socket closes.
   */
  shutdown(message: string): void {
    if (this.closed || this.goingAway || this.drainingSince > 0) return;
    this.shutdownMessage = message;
    if (!this.settled) return this.finalGoaway();
    this.drainingSince = performance.now();
    this.goawayFrame(maxStreamId, ErrorCode.NO_ERROR, message);
    this.out.frame(FrameType.PING, 0, 0, shutdownPing);
    this.schedule();
  }

  /** Shutdown's second GOAWAY: streams after the last one taken will not be served. */
  finalGoaway(): void {
    this.drainingSince = 0;
    if (this.closed || this.goingAway) return;
    this.goaway(ErrorCode.NO_ERROR, this.shutdownMessage);
    if (this.streams.size === 0) this.endSoon();
  }

  /** The socket is gone: every open stream is aborted. */
  onClose(): void {
    if (this.closed && this.streams.size === 0) return;
    this.closed = true;
    for (const s of [...this.streams.values()]) this.closeStream(s, ClosedHow.RESET_LOCALLY);
  }

  /**
   * The client closed its side (FIN). HTTP/2 has no half-closed connection: a client that can send
   * no more frames can grant no window and acknowledge nothing, so a stream waiting on it would
   * wait forever with its socket in CLOSE-WAIT. As Go's HTTP/2 server does, the connection ends
   * here: its streams are aborted (their backend calls cancelled) and the socket is closed at once,
   * whatever is still queued for it.
   */
  onEnd(): void {
    this.destroy();
  }

  destroy(): void {
    this.onClose();
    this.transport.terminate();
  }
}

const emptyBody = Buffer.alloc(0);
const maxStreamId = 0x7fffffff;
/** The opaque data of shutdown's PING, to tell its ack from a client's own PINGs' acks. */
const shutdownPing = Buffer.from("kedge-go");

function isShutdownPing(buf: Uint8Array, start: number): boolean {
  for (let i = 0; i < 8; i++) if (buf[start + i] !== shutdownPing[i]) return false;
  return true;
}

/** A request line as HTTP/1.x clients send it: told in HTTP/1.1 that the h2c port speaks HTTP/2 only. */
const http1RequestLine = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+ \S+ HTTP\/1\.[01]\r?$/;

/** The stream a PRIORITY frame or HEADERS priority block at `at` depends on. */
function dependency(buf: Uint8Array, at: number): number {
  return ((buf[at] & 0x7f) << 24) | (buf[at + 1] << 16) | (buf[at + 2] << 8) | buf[at + 3];
}

/** A content-length requestFault has checked: digits, or absent. */
function contentLength(value: string | string[] | undefined): number {
  return typeof value === "string" ? Number(value) : -1;
}
