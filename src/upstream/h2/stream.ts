import { currentBlockBytes, currentBlockLength, type H2Headers } from "../../h2/hpack.js";
import { ErrorCode, type StreamError } from "../../h2/frames.js";
import { noPendingOut } from "../../h2/data-writer.js";
import { copyOf } from "../../net/bytes.js";

/** What a stream tells its user, each synchronously as the frames arrive. */
export interface StreamHandler {
  /** The final (non-1xx) response headers; endStream: trailers-only, nothing follows but end(). */
  response(headers: H2Headers, endStream: boolean): void;
  /**
   * Response body bytes: bytes[start, end) of one socket read. kedge never reuses a read's buffer,
   * so a view of the range may be kept; one is not made per frame for handlers that copy.
   */
  data(bytes: Uint8Array, start: number, end: number): void;
  trailers(headers: H2Headers): void;
  /** The backend ended its side (END_STREAM), after the response, data or trailers. */
  end(): void;
  /** The stream is over: once, unless kedge cancelled it; `err` when it did not end cleanly. */
  close(err: StreamError | undefined): void;
  /** write() returned false and the stream may take more now. */
  drain(): void;
}

/** What a stream asks of the connection that carries it. */
export interface StreamCarrier {
  /** DATA as far as the windows allow, END_STREAM after it when `end`; false while bytes wait. */
  write(stream: H2Stream, chunk: Uint8Array, end: boolean): boolean;
  grant(stream: H2Stream): void;
  reset(stream: H2Stream, code: number): void;
}

/**
 * One request/response exchange on an upstream HTTP/2 connection. It may be created before its
 * connection is ready or has a free stream slot; what is written meanwhile waits in `pending`.
 */
export class H2Stream {
  /** 0 until the HEADERS frame is sent. */
  id = 0;
  conn: StreamCarrier | undefined;
  sendWindow = 0;
  /** Receive window kedge has granted and the backend not used yet. */
  recvWindow = 0;
  /** Bytes received and not yet granted again. */
  unacked = 0;
  paused = false;
  /** Request bytes waiting for the stream's id or for window. */
  pendingOut: Uint8Array[] = noPendingOut;
  pendingOutBytes = 0;
  /** end() was called and END_STREAM waits behind pendingOut. */
  pendingEnd = false;
  /** performance.now() since which pendingOut has waited for window. */
  blockedSince = 0;
  localEnded = false;
  remoteEnded = false;
  responded = false;
  closed = false;
  /** Set when write() returned false: drain() is owed. */
  wantsDrain = false;
  /** Set when a RST_STREAM ended it: the backend's error code. */
  rstCode: number | undefined;

  /** The request's header block; undefined while it is the encoder's current block (currentBlockBytes), until keepBlock(). */
  block: Uint8Array | undefined;
  readonly blockLength: number;

  constructor(
    /** The header block, or undefined for the one just encoded (hpack's current block), read when the stream starts or keeps it. */
    block: Uint8Array | undefined,
    readonly handler: StreamHandler,
  ) {
    this.block = block;
    this.blockLength = block === undefined ? currentBlockLength() : block.length;
  }

  /** The header block's bytes: its first blockLength octets. */
  get blockBytes(): Uint8Array {
    return this.block ?? currentBlockBytes();
  }

  /** The stream waits (for its connection or a stream slot): its header block must outlive the encoder's next one. */
  keepBlock(): void {
    this.block ??= copyOf(currentBlockBytes(), 0, this.blockLength);
  }

  /** False when the bytes wait for flow control (or the connection): wait for drain(). */
  write(chunk: Uint8Array): boolean {
    if (this.closed || this.pendingEnd || this.localEnded) return true;
    if (this.conn) return this.conn.write(this, chunk, false);
    this.hold(chunk);
    return !(this.wantsDrain = true);
  }

  end(chunk?: Uint8Array): void {
    if (this.closed || this.pendingEnd || this.localEnded) return;
    if (this.conn) return void this.conn.write(this, chunk ?? noBytes, true);
    if (chunk) this.hold(chunk);
    this.pendingEnd = true;
  }

  /** Bytes written before the stream was given to a connection. */
  private hold(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    if (this.pendingOut === noPendingOut) this.pendingOut = [];
    this.pendingOut.push(chunk);
    this.pendingOutBytes += chunk.length;
  }

  /** Resets the stream (RST_STREAM); no handler call follows. */
  cancel(code: number = ErrorCode.CANCEL): void {
    if (this.closed) return;
    if (this.conn) this.conn.reset(this, code);
    else this.closed = true;
  }

  /** Stops granting the backend more window: it stalls once what it may send is spent. */
  pause(): void {
    this.paused = true;
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.conn?.grant(this);
  }
}

const noBytes = new Uint8Array(0);
