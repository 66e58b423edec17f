import type { OutgoingHttpHeaders } from "node:http2";
import { ClosedHow } from "../../h2/closed-streams.js";
import { H2Endpoint } from "../../h2/endpoint.js";
import { defaultWindow, ErrorCode, Flag, FrameType, preface, Setting } from "../../h2/frames.js";
import { currentBlockBytes, type H2Headers } from "../../h2/hpack.js";
import type { HeadLines } from "../../net/hop-headers.js";
import { bytesIn } from "../../net/bytes.js";
import { KedgeError } from "../../errors.js";
import { log } from "../../observe/log.js";
import { newRequestId } from "../../proxy/request.js";
import { rawErrorResponse } from "../../proxy/tunnel.js";
import type { ClientTransport } from "../h1/transport.js";
import type { HeadLimits } from "../h1/request-head.js";
import { requestFault } from "./request-check.js";
import { forwardedBlock, headLinesBlock, responseBlock } from "./response-block.js";
import { atTurnEnd } from "../../net/turn-end.js";
import { currentRead } from "../../net/read-epoch.js";
import { Batch } from "../../net/batch.js";
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
/** The connection's receive window: large, as each stream's own window (node:http2's default) bounds what kedge holds. */
const connectionWindow = 16 * 1024 * 1024;
/** A header block (HEADERS and CONTINUATIONs) larger than this ends the connection (CVE-2024-27316). */
const maxBlockBytes = 256 * 1024;
/**
 * Bytes that one read (net/read-epoch.ts) queued for this connection and that go out at once
 * rather than at the turn's end (see schedule): about four unary gRPC answers.
 */
const writeAtFromOneRead = 256;
/** Queued bytes that go out at once whatever read they came from: a full TLS record, past which waiting saves no record. */
const writeAtBytes = 16 * 1024;

/**
 * One client's HTTP/2 connection on kedge's own server: the server role on the shared engine
 * (h2/endpoint.ts). It checks the preface and each request, hands requests to the handler as
 * H2ServerStreams, and frames responses into one buffer written once per turn. node:http2's
 * server cost ~24 µs per gRPC call in Bun, more than nginx's whole proxy (bench/grpc-floor.sh);
 * this does the same work in ~1–2 µs.
 */
export class H2ServerConnection extends H2Endpoint<H2ServerStream> {
  /** Its slot in its listener's connections (net/members.ts). */
  memberSlot = -1;
  private greeted = false;
  private readonly closing = new Batch<H2ServerStream>();
  private flushQueued = false;
  private transportFull = false;
  /** The read whose frames are being queued, and how much was queued before it. */
  private readSeen = -1;
  private readStart = 0;
  /** GOAWAY sent or received: no new streams; the connection ends once its streams are done. */
  private goingAway = false;
  private shutdownMessage = "";
  /** performance.now() of shutdown's first GOAWAY, until the final one is sent; 0 otherwise. */
  drainingSince = 0;
  readonly openedAt = this.lastActivity;
  private resets = 0;

  constructor(
    readonly transport: ClientTransport,
    private readonly handler: H2ServerHandler,
    /** Where the proxy reads the client's certificate (TLS) and address. */
    readonly socket: object,
    /** The h2c port: a client that sends an HTTP/1.1 request line is answered in HTTP/1.1. Over TLS, ALPN chose h2 and any other preface is a protocol error. */
    private readonly plaintext: boolean,
  ) {
    super({ streamWindow: defaultWindow, connectionWindow, maxHeaderListSize: Math.max(64 * 1024, 4 * handler.limits.maxHeaderBytes), maxBlockBytes });
    this.awaitingPreface = true;
  }

  /** kedge's SETTINGS, once the client's preface shows it speaks HTTP/2 (one that does not is answered in HTTP/1.1). */
  private greet(): void {
    if (this.greeted) return;
    this.greeted = true;
    const { handler } = this;
    this.out.settings(0, [
      [Setting.MAX_CONCURRENT_STREAMS, handler.maxStreams],
      [Setting.INITIAL_WINDOW_SIZE, this.streamWindow],
      [Setting.MAX_HEADER_LIST_SIZE, handler.limits.maxHeaderBytes],
    ]);
    this.out.words(FrameType.WINDOW_UPDATE, 0, 0, connectionWindow - defaultWindow);
    this.schedule();
  }

  get activeStreams(): number {
    return this.streams.size;
  }

  // --- reading ---

  protected override readPreface(buf: Uint8Array): number {
    const n = Math.min(buf.length, preface.length);
    for (let i = 0; i < n; i++) {
      if (buf[i] !== preface[i]) {
        this.badPreface(buf);
        return -1;
      }
    }
    if (n < preface.length) {
      this.keepPartial(buf);
      return -1;
    }
    this.awaitingPreface = false;
    this.greet();
    return preface.length;
  }

  /**
   * Not the client preface. On the h2c port an HTTP/1.1 client is told in HTTP/1.1 that the port
   * speaks HTTP/2 only, once its request line is in; anything else (and anything over TLS, where
   * ALPN already chose h2) is a connection error of type PROTOCOL_ERROR (RFC 9113 §3.4).
   */
  private badPreface(buf: Uint8Array): void {
    if (this.plaintext) {
      const lineEnd = buf.indexOf(10 /* LF */);
      if (lineEnd < 0 && buf.length < this.handler.limits.maxUriBytes + 64) return this.keepPartial(buf);
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

  protected connectionError(code: number, reason: string): void {
    this.fail(code, reason);
  }

  protected streamError(stream: H2ServerStream, code: number): void {
    this.reset(stream, code);
  }

  protected streamData(stream: H2ServerStream, flags: number, buf: Uint8Array, start: number, end: number, size: number): void {
    stream.unacked += size - (end - start); // padding is granted back at once, the body as the reader takes it
    const endStream = (flags & Flag.END_STREAM) !== 0;
    stream.received += end - start;
    if (stream.declaredLength >= 0 && (stream.received > stream.declaredLength || (endStream && stream.received !== stream.declaredLength))) {
      return this.reset(stream, ErrorCode.PROTOCOL_ERROR); // RFC 9113 §8.1.1: a body unlike its content-length
    }
    stream.receive(end > start ? (bytesIn(buf, start, end) as Buffer) : emptyBody, endStream);
    if (endStream && stream.localEnded) this.closeStream(stream, ClosedHow.ENDED);
  }

  /** Trailers: kedge forwards none from clients (gRPC and HTTP requests carry them rarely); they end the body. */
  protected streamHeaders(stream: H2ServerStream, _headers: H2Headers, endStream: boolean): void {
    if (!endStream) return this.reset(stream, ErrorCode.PROTOCOL_ERROR);
    if (stream.declaredLength >= 0 && stream.received !== stream.declaredLength) return this.reset(stream, ErrorCode.PROTOCOL_ERROR);
    stream.receive(emptyBody, true);
    if (stream.localEnded) this.closeStream(stream, ClosedHow.ENDED);
  }

  /** A new request. */
  protected openStream(id: number, headers: H2Headers, endStream: boolean, malformed: string | undefined): void {
    this.lastStreamId = id;
    if (this.goingAway) return this.closedStreams.add(id, ClosedHow.RESET_LOCALLY, this.peerInitialWindow); // after GOAWAY: ignored, as are its frames in flight
    const { limits } = this.handler;
    const fault = malformed ?? requestFault(headers);
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
    this.resetFrame(id, code);
    this.closedStreams.add(id, ClosedHow.RESET_LOCALLY, this.peerInitialWindow);
    this.control();
  }

  protected peerReset(stream: H2ServerStream): void {
    this.closeStream(stream, ClosedHow.RESET_BY_PEER);
    this.control();
    if (++this.resets > maxResetsPerSecond) this.fail(ErrorCode.ENHANCE_YOUR_CALM, "too many streams reset");
  }

  protected override newSecond(): void {
    this.resets = 0;
  }

  protected peerSettings(): void {}

  /** The client will open no more streams: the connection closes once its streams are done. */
  protected peerGoaway(): void {
    this.goingAway = true;
    if (this.streams.size === 0) this.endSoon();
  }

  protected override pingAcked(buf: Uint8Array, start: number): void {
    if (this.drainingSince > 0 && isShutdownPing(buf, start)) this.finalGoaway();
  }

  // --- writing ---

  /** HEADERS (and CONTINUATIONs) for a response or trailers; throws, as node:http2 does, on a field HTTP/2 forbids. */
  sendHeaders(stream: H2ServerStream, headers: OutgoingHttpHeaders, endStream: boolean): void {
    this.sendBlock(stream, responseBlock(headers), endStream);
  }

  /** HEADERS for a backend's answer or trailers passed on as decoded (see forwardedBlock); throws as sendHeaders does. */
  sendForwarded(stream: H2ServerStream, headers: H2Headers, keepStatus: boolean, backendName: string | undefined, endStream: boolean): void {
    this.sendBlock(stream, forwardedBlock(headers, keepStatus, backendName), endStream);
  }

  /** A response's HEADERS from field lines (see headLinesBlock); the body follows. */
  sendHeadLines(stream: H2ServerStream, status: number, head: HeadLines): void {
    this.sendBlock(stream, headLinesBlock(status, head), false);
  }

  /** Frames the encoder's current block (`length` octets, just built) as the stream's HEADERS. */
  private sendBlock(stream: H2ServerStream, length: number, endStream: boolean): void {
    this.out.headerBlock(stream.id, endStream ? Flag.END_STREAM : 0, currentBlockBytes(), this.peerMaxFrame, length);
    this.schedule();
  }

  /** Response body bytes; false when they wait (flow control or a full socket): "drain" follows. */
  sendData(stream: H2ServerStream, chunk: Uint8Array, from: number, to: number): boolean {
    return this.writeData(stream, chunk, false, from, to);
  }

  /** end(): the last bytes, then END_STREAM, or the trailers the stream's handler sends when asked. */
  endData(stream: H2ServerStream, chunk: Uint8Array | undefined, from: number, to: number): void {
    const last = !stream.waitForTrailers;
    this.writeData(stream, chunk ?? emptyBody, last, from, to);
    if (!last && stream.pendingOutBytes === 0) this.finishEnd(stream);
  }

  protected get congested(): boolean {
    return this.transportFull;
  }

  protected dataEnded(stream: H2ServerStream): void {
    this.localEnd(stream);
  }

  protected notifyDrain(stream: H2ServerStream): void {
    stream.drained();
  }

  /** The body went out and end() waits on trailers: "wantTrailers" now. */
  protected override pendingSent(stream: H2ServerStream): void {
    if (stream.ending && !stream.localEnded) this.finishEnd(stream);
    else super.pendingSent(stream);
  }

  /**
   * Resets the streams whose answer has waited longer than `limitMs` for the client to grant
   * window. CANCEL, not FLOW_CONTROL_ERROR: a client that grants none breaks no rule of RFC 9113
   * §6.9, kedge just stops waiting; the stream's close cancels its backend call.
   */
  resetStalled(now: number, limitMs: number): void {
    for (const s of this.blocked) if (now - s.blockedSince > limitMs) this.reset(s, ErrorCode.CANCEL);
  }

  private finishEnd(stream: H2ServerStream): void {
    if (stream.localEnded || stream.closed) return;
    if (stream.waitForTrailers && stream.askTrailers()) {
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
    this.grantStream(stream);
  }

  reset(stream: H2ServerStream, code: number): void {
    if (stream.closed) return;
    this.resetFrame(stream.id, code);
    this.closeStream(stream, ClosedHow.RESET_LOCALLY);
  }

  private closeStream(stream: H2ServerStream, how: ClosedHow): void {
    if (stream.closed) return;
    this.closedStreams.add(stream.id, how, stream.sendWindow);
    stream.markClosed();
    this.streams.delete(stream.id);
    this.blocked.delete(stream);
    this.closing.add(stream);
    this.schedule();
    if (this.goingAway && this.streams.size === 0) this.endSoon();
  }

  /**
   * The flush runs once the event loop's turn is over (atTurnEnd), not after the callback that
   * queued frames (a microtask): answers from different backend connections read in one poll then
   * leave in one write, one TLS record and one sendto instead of one each (-22% CPU per HTTPS h2
   * request under h2load -m10, bench/README.md).
   *
   * Frames go out sooner once one read has queued `writeAtFromOneRead` bytes of them. One read
   * from a multiplexed backend can carry a hundred answers; held to the turn's end, the client sits
   * idle while kedge relays them all, then everything moves as one batch. Writing every few
   * answers lets the client work alongside kedge: under a closed gRPC loop sharing two cores the
   * machine idled 8% instead of 22% (bench/README.md, "Answers held to the turn's end"). Answers
   * that came in separate reads (HTTP/1.1 backends, one each) still leave together: over TLS each
   * write is a record, and writing every 256 bytes of those cost HTTPS h2 17–20% more CPU.
   */
  protected schedule(): void {
    const read = currentRead();
    if (this.readSeen !== read) {
      this.readSeen = read;
      this.readStart = this.out.length;
    }
    if (this.out.length - this.readStart >= writeAtFromOneRead || this.out.length >= writeAtBytes) this.writeQueued();
    if (this.flushQueued) return;
    this.flushQueued = true;
    atTurnEnd(this.flush);
  }

  private writeQueued(): void {
    const out = this.out;
    if (out.length > 0 && !this.closed) {
      if (!this.transport.writeTransient(out.bytes, out.length)) this.transportFull = true;
    }
    out.clear();
    this.readStart = 0;
  }

  /** Writes the turn's frames in one write, then tells closed streams' handlers. */
  private readonly flush = (): void => {
    this.flushQueued = false;
    this.writeQueued();
    if (this.closing.size > 0) this.closing.drain(tellClosed);
    if (this.stopReading && !this.closed && !this.flushQueued) {
      this.closed = true;
      this.transport.end();
    }
  };

  /** The socket took everything queued: writers waiting on it may go on. */
  onDrain(): void {
    this.transportFull = false;
    this.transportDrained(this.streams.values());
  }

  // --- ending ---

  private endSoon(): void {
    this.stopReading = true;
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

  /**
   * Graceful, in RFC 9113 §6.8's two steps: a GOAWAY with the largest stream id and a PING; streams
   * the client opened before it heard that are still served. The final GOAWAY, naming the last
   * stream kedge took, follows the PING's ack (or finalGoaway from the sweep if none comes); the
   * open streams finish, then the socket closes.
   */
  shutdown(message: string): void {
    if (this.closed || this.goingAway || this.drainingSince > 0) return;
    this.shutdownMessage = message;
    if (!this.settled) {
      // Before the client's preface: nothing was taken yet, so the final GOAWAY at once, after the server's own preface (RFC 9113 §3.4).
      this.greet();
      return this.finalGoaway();
    }
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

let lastLength = "";
let lastLengthValue = 0;

/**
 * A content-length requestFault has checked: digits, or absent. The last one is kept: a client's
 * calls repeat one length (the same string, from its HPACK table), and Number() of a string is a
 * native call.
 */
function contentLength(value: string | string[] | undefined): number {
  if (typeof value !== "string") return -1;
  if (value !== lastLength) {
    lastLengthValue = Number(value);
    lastLength = value;
  }
  return lastLengthValue;
}

function tellClosed(stream: H2ServerStream): void {
  stream.tellClosed();
}
