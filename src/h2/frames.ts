import { copyRange } from "../net/bytes.js";

/** HTTP/2 wire constants (RFC 9113 §6, §7, §11) and the frame writer both roles use. */
export const FrameType = { DATA: 0, HEADERS: 1, PRIORITY: 2, RST_STREAM: 3, SETTINGS: 4, PUSH_PROMISE: 5, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8, CONTINUATION: 9 } as const;
export const Flag = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4, PADDED: 0x8, PRIORITY: 0x20 } as const;
export const Setting = { HEADER_TABLE_SIZE: 1, ENABLE_PUSH: 2, MAX_CONCURRENT_STREAMS: 3, INITIAL_WINDOW_SIZE: 4, MAX_FRAME_SIZE: 5, MAX_HEADER_LIST_SIZE: 6 } as const;
export const ErrorCode = {
  NO_ERROR: 0, PROTOCOL_ERROR: 1, INTERNAL_ERROR: 2, FLOW_CONTROL_ERROR: 3, SETTINGS_TIMEOUT: 4, STREAM_CLOSED: 5,
  FRAME_SIZE_ERROR: 6, REFUSED_STREAM: 7, CANCEL: 8, COMPRESSION_ERROR: 9, CONNECT_ERROR: 10, ENHANCE_YOUR_CALM: 11,
  INADEQUATE_SECURITY: 12, HTTP_1_1_REQUIRED: 13,
} as const;

export const preface = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");
export const frameHeaderSize = 9;
export const defaultWindow = 65_535;
export const maxWindow = 2 ** 31 - 1;
export const defaultMaxFrameSize = 16_384;

const names = Object.fromEntries(Object.entries(ErrorCode).map(([k, v]) => [v, k]));
export function errorName(code: number): string {
  return names[code] ?? `error ${code}`;
}

/** A connection-level protocol violation by the peer: the connection ends with GOAWAY(code). */
export class ConnectionError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
    this.name = "ConnectionError";
  }
}

/**
 * Why a stream ended without a complete response. `unprocessed` means the backend never acted
 * on it (REFUSED_STREAM, above a GOAWAY's last stream id, or never sent: RFC 9113 §8.7), so
 * sending the request again is safe.
 */
export class StreamError extends Error {
  constructor(
    message: string,
    readonly code: number,
    readonly unprocessed: boolean,
    /** The connection never came up: the endpoint itself is unreachable. */
    readonly dialFailed = false,
  ) {
    super(message);
    this.name = "StreamError";
  }
}

/** The tail of the last read that held no whole frame, followed by this read. */
export function joinBytes(head: Uint8Array, tail: Uint8Array): Buffer {
  const joined = Buffer.allocUnsafe(head.length + tail.length);
  joined.set(head);
  joined.set(tail, head.length);
  return joined;
}

/**
 * Frames waiting for the socket, built in one buffer: everything a connection writes in one
 * event-loop turn leaves in one write (one packet for a unary call's HEADERS and DATA).
 */
const initialBytes = 16 * 1024;
/** A turn that wrote more than this (a large upload) does not keep its buffer for the connection's life. */
const keepBytes = 1024 * 1024;

export class FrameBuffer {
  private buf = Buffer.allocUnsafe(initialBytes);
  length = 0;

  private room(n: number): void {
    if (this.length + n <= this.buf.length) return;
    const bigger = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.length + n));
    this.buf.copy(bigger, 0, 0, this.length);
    this.buf = bigger;
  }

  frame(type: number, flags: number, streamId: number, payload?: Uint8Array, start = 0, end = payload?.length ?? 0): void {
    const n = end - start;
    this.room(frameHeaderSize + n);
    const b = this.buf;
    let at = this.length;
    b[at++] = n >>> 16;
    b[at++] = (n >>> 8) & 0xff;
    b[at++] = n & 0xff;
    b[at++] = type;
    b[at++] = flags;
    b[at++] = streamId >>> 24;
    b[at++] = (streamId >>> 16) & 0xff;
    b[at++] = (streamId >>> 8) & 0xff;
    b[at++] = streamId & 0xff;
    if (payload && n > 0) {
      // Part of a larger array is copied from it: a subarray view would cost an object and a native call more.
      if (n === payload.length) b.set(payload, at);
      else copyRange(payload, start, end, b, at);
      at += n;
    }
    this.length = at;
  }

  /** A frame whose payload is 32-bit words (WINDOW_UPDATE, RST_STREAM, GOAWAY, SETTINGS pairs). */
  words(type: number, flags: number, streamId: number, ...values: number[]): void {
    const n = values.length * 4;
    this.room(frameHeaderSize + n);
    this.frame(type, flags, streamId);
    const b = this.buf;
    b[this.length - 9] = n >>> 16;
    b[this.length - 8] = (n >>> 8) & 0xff;
    b[this.length - 7] = n & 0xff;
    for (const v of values) {
      b.writeUInt32BE(v >>> 0, this.length);
      this.length += 4;
    }
  }

  settings(flags: number, pairs: readonly (readonly [number, number])[]): void {
    this.room(frameHeaderSize + pairs.length * 6);
    const n = pairs.length * 6;
    const b = this.buf;
    this.frame(FrameType.SETTINGS, flags, 0);
    b[this.length - 8] = n >>> 8;
    b[this.length - 7] = n & 0xff;
    for (const [id, value] of pairs) {
      b.writeUInt16BE(id, this.length);
      b.writeUInt32BE(value, this.length + 2);
      this.length += 6;
    }
  }

  /**
   * A header block, block[0, length), as HEADERS and, past `maxFrame` bytes, CONTINUATION frames;
   * `flags` are the HEADERS frame's (END_STREAM).
   */
  headerBlock(id: number, flags: number, block: Uint8Array, maxFrame: number, length = block.length): void {
    if (length <= maxFrame) return this.frame(FrameType.HEADERS, Flag.END_HEADERS | flags, id, block, 0, length);
    this.frame(FrameType.HEADERS, flags, id, block, 0, maxFrame);
    for (let at = maxFrame; at < length; at += maxFrame) {
      const end = Math.min(length, at + maxFrame);
      this.frame(FrameType.CONTINUATION, end === length ? Flag.END_HEADERS : 0, id, block, at, end);
    }
  }

  raw(bytes: Uint8Array): void {
    this.room(bytes.length);
    this.buf.set(bytes, this.length);
    this.length += bytes.length;
  }

  /**
   * The buffer whose first `length` octets are the frames so far, for a writer that sends them
   * from it (no view: a native call and an object per write) and then calls clear(). It is reused:
   * whatever of it must wait is copied first.
   */
  get bytes(): Buffer {
    return this.buf;
  }

  /** The frames so far were written: the buffer is free for the next ones. */
  clear(): void {
    this.length = 0;
    if (this.buf.length > keepBytes) this.buf = Buffer.allocUnsafe(initialBytes);
  }
}
