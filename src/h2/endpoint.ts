import { ClosedHow, ClosedStreams } from "./closed-streams.js";
import { StreamTable } from "./stream-table.js";
import { H2DataWriter, type H2SendingStream } from "./data-writer.js";
import { ConnectionError, defaultMaxFrameSize, defaultWindow, ErrorCode, Flag, frameHeaderSize, FrameType, joinBytes, maxWindow, Setting } from "./frames.js";
import { type H2Headers, HpackDecoder, HpackError } from "./hpack.js";
import { copyOf } from "../net/bytes.js";
import { readBegins } from "../net/read-epoch.js";

/** What the engine reads and updates on a stream of either role. */
export interface H2StreamState extends H2SendingStream {
  /** Window this side granted and the peer has not used. */
  recvWindow: number;
  /** Bytes received and not yet granted back. */
  unacked: number;
  remoteEnded: boolean;
}

export interface H2EndpointLimits {
  /** Receive window per stream: how much one slow reader makes kedge hold. */
  streamWindow: number;
  /** The connection's receive window. */
  connectionWindow: number;
  /** The largest decoded header list accepted (SETTINGS_MAX_HEADER_LIST_SIZE). */
  maxHeaderListSize: number;
  /** A header block (HEADERS and CONTINUATIONs) larger than this ends the connection (CVE-2024-27316). */
  maxBlockBytes: number;
}

/** PING, SETTINGS, PRIORITY, empty DATA and frames on closed streams a second: more is a flood (CVE-2019-9512/9515/9518). */
const maxControlPerSecond = 1000;

/**
 * The HTTP/2 engine both of kedge's roles share (RFC 9113): the frame reader, SETTINGS and their
 * ACK, flow control both ways, CONTINUATION assembly under a cap, PING, GOAWAY, and the frame-size
 * and stream-state rules, so a peer that breaks a rule gets the same error code whether it is a
 * client of kedge's server or a backend of kedge's client. Every stream in both roles is opened
 * by the client side (odd ids; server push is refused), which makes the stream-state rules one.
 * A role supplies what differs: accepting or opening streams, reading requests or responses,
 * writing, and how the connection ends.
 */
export abstract class H2Endpoint<S extends H2StreamState> extends H2DataWriter<S> {
  readonly streams = new StreamTable<S>();
  protected readonly decoder: HpackDecoder;
  protected readonly closedStreams = new ClosedStreams();
  readonly streamWindow: number;
  private readonly connectionWindow: number;
  private readonly maxBlockBytes: number;
  /** The peer's first SETTINGS arrived. */
  settled = false;
  peerInitialWindow = defaultWindow;
  /** The peer's MAX_CONCURRENT_STREAMS: until its SETTINGS say otherwise, 100 (RFC 9113 §6.5.2 suggests no fewer). */
  protected peerMaxStreams = 100;
  private connRecv: number;
  private connUnacked = 0;
  /** The highest stream id opened: ids above it (and even ones) are idle. */
  protected lastStreamId = 0;
  /** Bytes before the first frame still to be checked (the server's client preface). */
  protected awaitingPreface = false;
  private partial: Uint8Array | undefined;
  /** A header block waiting for its CONTINUATION frames. */
  private block: { id: number; flags: number; selfDependent: boolean; chunks: Uint8Array[]; bytes: number } | undefined;
  /** No more frames are read: the connection is closed or closing. */
  closed = false;
  protected stopReading = false;
  /** Reads so far, for keepalives. */
  protected reads = 0;
  private windowStart = 0;
  private controls = 0;

  constructor(limits: H2EndpointLimits) {
    super();
    this.streamWindow = limits.streamWindow;
    this.connectionWindow = limits.connectionWindow;
    this.connRecv = limits.connectionWindow;
    this.maxBlockBytes = limits.maxBlockBytes;
    this.decoder = new HpackDecoder(4096, limits.maxHeaderListSize);
  }

  // --- what a role supplies ---

  /** A connection error: GOAWAY with the code, every stream ends, then the socket. */
  protected abstract connectionError(code: number, reason: string): void;
  /** A stream error: RST_STREAM with the code, the stream ends. */
  protected abstract streamError(stream: S, code: number, reason: string): void;
  /** HEADERS on an idle stream: a request (server), a protocol error (client). */
  protected abstract openStream(id: number, headers: H2Headers, endStream: boolean, fault: string | undefined): void;
  /** A complete header block on an open stream the peer has not ended. */
  protected abstract streamHeaders(stream: S, headers: H2Headers, endStream: boolean): void;
  /** A DATA frame's body buf[start, end) on an open stream; `size` counts its padding too. */
  protected abstract streamData(stream: S, flags: number, buf: Uint8Array, start: number, end: number, size: number): void;
  protected abstract peerReset(stream: S, code: number): void;
  /** SETTINGS applied and acknowledged; `first`: the peer's preface. */
  protected abstract peerSettings(first: boolean): void;
  protected abstract peerGoaway(lastStreamId: number, code: number): void;
  /** The ACK of a PING this side sent, its opaque data at buf[start, start + 8). */
  protected pingAcked(_buf: Uint8Array, _start: number): void {}
  /** Checks the bytes before the first frame; returns where frames start, or -1 when it kept or refused them. */
  protected readPreface(_buf: Uint8Array): number {
    return 0;
  }

  // --- reading ---

  onData(data: Uint8Array): void {
    if (this.closed) return;
    readBegins();
    this.lastActivity = performance.now();
    this.reads++;
    let buf = data;
    if (this.partial) {
      buf = joinBytes(this.partial, data);
      this.partial = undefined;
    }
    let pos = 0;
    if (this.awaitingPreface) {
      pos = this.readPreface(buf);
      if (pos < 0) return;
    }
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
        this.frame(type, flags, id, buf, start, pos);
        if (this.closed || this.stopReading) return;
      }
    } catch (e) {
      if (e instanceof ConnectionError) return this.connectionError(e.code, e.message);
      if (e instanceof HpackError) return this.connectionError(ErrorCode.COMPRESSION_ERROR, e.message);
      throw e;
    }
    if (pos < buf.length) this.partial = buf.slice(pos);
    // The connection window is granted back as it is used: per-stream windows bound what kedge holds.
    if (this.connUnacked >= this.connectionWindow / 2) {
      this.out.words(FrameType.WINDOW_UPDATE, 0, 0, this.connUnacked);
      this.connRecv += this.connUnacked;
      this.connUnacked = 0;
      this.schedule();
    }
  }

  /** Keeps bytes that may yet become a preface, to be read again with the next ones. */
  protected keepPartial(buf: Uint8Array): void {
    this.partial = buf;
  }

  private frame(type: number, flags: number, id: number, buf: Uint8Array, start: number, end: number): void {
    if (!this.settled && type !== FrameType.SETTINGS) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "the peer's first frame was not SETTINGS: not speaking HTTP/2?");
    if (this.block && type !== FrameType.CONTINUATION) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "header block interrupted");
    switch (type) {
      case FrameType.DATA:
        return this.onDataFrame(flags, id, buf, start, end);
      case FrameType.HEADERS:
        return this.onHeaders(flags, id, buf, start, end);
      case FrameType.CONTINUATION:
        return this.onContinuation(flags, id, buf, start, end);
      case FrameType.RST_STREAM:
        return this.onReset(id, buf, start, end);
      case FrameType.SETTINGS:
        return this.onSettings(flags, id, buf, start, end);
      case FrameType.PING:
        return this.onPing(flags, id, buf, start, end);
      case FrameType.GOAWAY:
        if (id !== 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "GOAWAY on a stream");
        if (end - start < 8) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "GOAWAY shorter than 8 bytes");
        return this.peerGoaway(readU32(buf, start) & 0x7fffffff, readU32(buf, start + 4));
      case FrameType.WINDOW_UPDATE:
        return this.onWindowUpdate(id, buf, start, end);
      case FrameType.PRIORITY:
        return this.onPriority(id, buf, start, end);
      case FrameType.PUSH_PROMISE:
        throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "PUSH_PROMISE: server push is refused");
      default:
        return; // unknown frame types are ignored (RFC 9113 §5.5)
    }
  }

  /** Counts a frame that costs kedge work and the peer nothing; a flood ends the connection. */
  protected control(): void {
    const now = this.lastActivity;
    if (now - this.windowStart > 1000) {
      this.windowStart = now;
      this.controls = 0;
      this.newSecond();
    }
    if (++this.controls > maxControlPerSecond) throw new ConnectionError(ErrorCode.ENHANCE_YOUR_CALM, "too many control frames");
  }

  /** A new second of the flood counters began (a role counting more per second resets its own here). */
  protected newSecond(): void {}

  private onDataFrame(flags: number, id: number, buf: Uint8Array, start: number, end: number): void {
    if (id === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "DATA on stream 0");
    const size = end - start;
    this.connRecv -= size;
    if (this.connRecv < 0) throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, "DATA overran the connection window");
    this.connUnacked += size;
    let bodyStart = start;
    let bodyEnd = end;
    if (flags & Flag.PADDED) {
      const pad = size > 0 ? buf[start] : 0;
      if (size === 0 || pad >= size) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "padding as long as the frame");
      bodyStart++;
      bodyEnd -= pad;
    }
    const stream = this.streams.get(id);
    if (stream === undefined) return this.lateFrame(id, false);
    if (stream.remoteEnded) return this.streamError(stream, ErrorCode.STREAM_CLOSED, "DATA after END_STREAM");
    stream.recvWindow -= size;
    if (stream.recvWindow < 0) return this.streamError(stream, ErrorCode.FLOW_CONTROL_ERROR, "DATA overran the stream window");
    if (bodyEnd === bodyStart && !(flags & Flag.END_STREAM)) this.control();
    this.streamData(stream, flags, buf, bodyStart, bodyEnd, size);
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
      if (end - start < 5) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "HEADERS too short for its priority");
      selfDependent = dependency(buf, start) === id;
      start += 5;
    }
    if (flags & Flag.END_HEADERS) return this.headerBlock(id, flags, selfDependent, buf, start, end);
    this.block = { id, flags, selfDependent, chunks: [copyOf(buf, start, end)], bytes: end - start };
  }

  private onContinuation(flags: number, id: number, buf: Uint8Array, start: number, end: number): void {
    const block = this.block;
    if (!block || block.id !== id) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "CONTINUATION without a header block");
    block.bytes += end - start;
    if (block.bytes > this.maxBlockBytes) throw new ConnectionError(ErrorCode.ENHANCE_YOUR_CALM, "header block too large");
    if (end === start) this.control();
    block.chunks.push(copyOf(buf, start, end));
    if (!(flags & Flag.END_HEADERS)) return;
    this.block = undefined;
    const whole = Buffer.concat(block.chunks);
    this.headerBlock(id, block.flags, block.selfDependent, whole, 0, whole.length);
  }

  /** A complete header block: decoded whatever its stream's state, as the HPACK context must follow every block. */
  private headerBlock(id: number, flags: number, selfDependent: boolean, buf: Uint8Array, start: number, end: number): void {
    const headers = this.decoder.decode(buf, start, end);
    const endStream = (flags & Flag.END_STREAM) !== 0;
    // RFC 9113 §5.3.1, §8.3: a stream depending on itself, a pseudo-header after a regular field.
    const fault = selfDependent ? "a stream depending on itself" : this.decoder.pseudoAfterRegular ? "a pseudo-header after a regular field" : undefined;
    const stream = this.streams.get(id);
    if (stream === undefined) {
      if (id > this.lastStreamId) return this.openStream(id, headers, endStream, fault);
      return this.lateFrame(id, true);
    }
    if (stream.remoteEnded) return this.streamError(stream, ErrorCode.STREAM_CLOSED, "HEADERS after END_STREAM");
    if (fault !== undefined) return this.streamError(stream, ErrorCode.PROTOCOL_ERROR, fault);
    this.streamHeaders(stream, headers, endStream);
  }

  /**
   * DATA or HEADERS for a stream that is not open (RFC 9113 §5.1). Idle: a connection error. Closed:
   * in flight when this side reset it, dropped; after the peer reset it, a stream error; after both
   * sides ended it, a connection error. HEADERS on an id the peer skipped reuses a lower id.
   */
  private lateFrame(id: number, headers: boolean): void {
    const what = headers ? "HEADERS" : "DATA";
    if ((id & 1) === 0 || id > this.lastStreamId) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `${what} on idle stream ${id}`);
    switch (this.closedStreams.how(id)) {
      case ClosedHow.RESET_BY_PEER:
        this.control();
        return this.resetFrame(id, ErrorCode.STREAM_CLOSED);
      case ClosedHow.ENDED:
        throw new ConnectionError(ErrorCode.STREAM_CLOSED, `${what} on closed stream ${id}`);
      case ClosedHow.NEVER_OPENED:
        throw headers ? new ConnectionError(ErrorCode.PROTOCOL_ERROR, `stream ${id} opened after a higher one`) : new ConnectionError(ErrorCode.STREAM_CLOSED, `DATA on closed stream ${id}`);
      default:
        return this.control();
    }
  }

  private onReset(id: number, buf: Uint8Array, start: number, end: number): void {
    if (end - start !== 4) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "RST_STREAM of other than 4 bytes");
    if (id === 0 || (id & 1) === 0 || id > this.lastStreamId) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `RST_STREAM on idle stream ${id}`);
    const stream = this.streams.get(id);
    if (stream === undefined) {
      // Frames the peer sent before this RST_STREAM may still be in flight after this side's own
      // reset; anything after it is the peer's error (RFC 9113 §5.1, "closed").
      this.closedStreams.peerResetToo(id);
      return this.control();
    }
    this.peerReset(stream, readU32(buf, start));
  }

  private onSettings(flags: number, id: number, buf: Uint8Array, start: number, end: number): void {
    if (id !== 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "SETTINGS on a stream");
    if (flags & Flag.ACK) {
      if (end !== start) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS ACK with a payload");
      return;
    }
    if ((end - start) % 6 !== 0) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS not a multiple of 6 bytes");
    const first = !this.settled;
    if (!first) this.control();
    for (let at = start; at < end; at += 6) {
      const key = (buf[at] << 8) | buf[at + 1];
      const value = readU32(buf, at + 2);
      if (key === Setting.INITIAL_WINDOW_SIZE) {
        if (value > maxWindow) throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, "INITIAL_WINDOW_SIZE above 2^31-1");
        const delta = value - this.peerInitialWindow;
        this.peerInitialWindow = value;
        for (const s of this.streams.values()) s.sendWindow += delta;
      } else if (key === Setting.MAX_FRAME_SIZE) {
        if (value < defaultMaxFrameSize || value > 16_777_215) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `MAX_FRAME_SIZE ${value}`);
        this.peerMaxFrame = value;
      } else if (key === Setting.MAX_CONCURRENT_STREAMS) this.peerMaxStreams = value;
      else if (key === Setting.ENABLE_PUSH && value > 1) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `ENABLE_PUSH ${value}`);
    }
    this.settled = true;
    this.out.frame(FrameType.SETTINGS, Flag.ACK, 0);
    this.schedule();
    this.peerSettings(first);
    this.sendBlocked();
  }

  private onPing(flags: number, id: number, buf: Uint8Array, start: number, end: number): void {
    if (end - start !== 8) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "PING of other than 8 bytes");
    if (id !== 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "PING on a stream");
    this.control();
    if (flags & Flag.ACK) return this.pingAcked(buf, start);
    this.out.frame(FrameType.PING, Flag.ACK, 0, buf, start, end);
    this.schedule();
  }

  private onWindowUpdate(id: number, buf: Uint8Array, start: number, end: number): void {
    if (end - start !== 4) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "WINDOW_UPDATE of other than 4 bytes");
    const increment = readU32(buf, start) & 0x7fffffff;
    if (id === 0) {
      if (increment === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE of 0");
      this.connSend += increment;
      if (this.connSend > maxWindow) throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, "connection window above 2^31-1");
      return this.sendBlocked();
    }
    const stream = this.streams.get(id);
    if (stream === undefined) {
      if ((id & 1) === 0 || id > this.lastStreamId) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE on an idle stream");
      // A closed stream's: the peer may send these for a while (RFC 9113 §5.1), but never one of
      // 0 (§6.9) nor past the largest window (§6.9.1), which are errors on any stream.
      const fault = increment === 0 ? ErrorCode.PROTOCOL_ERROR : this.closedStreams.overflows(id, increment) ? ErrorCode.FLOW_CONTROL_ERROR : -1;
      if (fault < 0) return;
      this.control();
      return this.resetFrame(id, fault);
    }
    if (increment === 0) return this.streamError(stream, ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE of 0");
    stream.sendWindow += increment;
    if (stream.sendWindow > maxWindow) return this.streamError(stream, ErrorCode.FLOW_CONTROL_ERROR, "stream window above 2^31-1");
    if (this.blocked.has(stream)) this.sendPending(stream);
  }

  /** PRIORITY: kedge does not prioritise, but the frame's own rules hold (RFC 9113 §6.3, §5.3.1). */
  private onPriority(id: number, buf: Uint8Array, start: number, end: number): void {
    if (id === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "PRIORITY on stream 0");
    this.control();
    const fault = end - start !== 5 ? ErrorCode.FRAME_SIZE_ERROR : dependency(buf, start) === id ? ErrorCode.PROTOCOL_ERROR : -1;
    if (fault < 0) return;
    const stream = this.streams.get(id);
    if (stream !== undefined) return this.streamError(stream, fault, fault === ErrorCode.FRAME_SIZE_ERROR ? "PRIORITY of other than 5 bytes" : "a stream depending on itself");
    this.resetFrame(id, fault);
  }

  // --- writing ---

  protected resetFrame(id: number, code: number): void {
    this.out.words(FrameType.RST_STREAM, 0, id, code);
    this.schedule();
  }

  /** Grants the peer back the window a stream's reader consumed, once half of it is. */
  protected grantStream(stream: S): void {
    if (stream.remoteEnded || stream.closed || stream.unacked < this.streamWindow / 2) return;
    this.out.words(FrameType.WINDOW_UPDATE, 0, stream.id, stream.unacked);
    stream.recvWindow += stream.unacked;
    stream.unacked = 0;
    this.schedule();
  }

  protected goawayFrame(lastStreamId: number, code: number, message: string): void {
    const debug = Buffer.from(message.slice(0, 200), "latin1");
    const payload = Buffer.allocUnsafe(8 + debug.length);
    payload.writeUInt32BE(lastStreamId, 0);
    payload.writeUInt32BE(code, 4);
    debug.copy(payload, 8);
    this.out.frame(FrameType.GOAWAY, 0, 0, payload);
    this.schedule();
  }
}

function readU32(b: Uint8Array, at: number): number {
  return ((b[at] << 24) | (b[at + 1] << 16) | (b[at + 2] << 8) | b[at + 3]) >>> 0;
}

/** The stream a PRIORITY frame or a HEADERS priority block at `at` depends on. */
function dependency(buf: Uint8Array, at: number): number {
  return ((buf[at] & 0x7f) << 24) | (buf[at + 1] << 16) | (buf[at + 2] << 8) | buf[at + 3];
}
