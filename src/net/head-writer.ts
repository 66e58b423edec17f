import type { LineDrops } from "./fields.js";
import { latin1Text, writeLatin1 } from "./latin1.js";
import { scratch } from "./socket-writer.js";

/** Ranges this long go through one native latin1Write; shorter ones are copied in JIT code (24 and 128 measured alike with bench/ab.sh). */
const nativeFrom = 128;
/** Byte ranges this long go through one Buffer#copy (~35 ns a call; a JIT loop ~1 ns a byte). */
const nativeCopyFrom = 32;
const copyBytes = Buffer.prototype.copy;

/**
 * Lays out an HTTP/1.1 head as latin1 bytes, piece by piece, in the shared `scratch` buffer (a
 * bigger one of its own when a head does not fit). A head built as a string and written with one
 * latin1Write has its rope flattened inside it, the largest native cost of a proxied request in a
 * profile (~1.5 µs for both heads, bench/README.md). Copying the pieces char by char makes no
 * string at all. Like `scratch`, the bytes live until the write that sends them returns.
 */
export class HeadWriter {
  buf: Buffer = scratch;
  /** Bytes written so far: buf[0..at). */
  at = 0;

  /** Starts a head at the beginning of scratch. */
  start(): this {
    this.buf = scratch;
    this.at = 0;
    return this;
  }

  text(s: string): void {
    this.range(s, 0, s.length);
  }

  /** s[from..end); chars above 0xFF keep their low byte, as latin1Write does. */
  range(s: string, from: number, end: number): void {
    const n = end - from;
    if (this.at + n > this.buf.length) this.grow(n);
    const buf = this.buf;
    let at = this.at;
    if (n >= nativeFrom) at += writeLatin1(buf, s.slice(from, end), at);
    else for (let i = from; i < end; i++) buf[at++] = s.charCodeAt(i);
    this.at = at;
  }

  /** src[from..end): one native copy for long ranges, JIT code for short ones. */
  copy(src: Uint8Array, from: number, end: number): void {
    const n = end - from;
    if (this.at + n > this.buf.length) this.grow(n);
    if (n >= nativeCopyFrom) {
      copyBytes.call(src, this.buf, this.at, from, end);
      this.at += n;
      return;
    }
    const buf = this.buf;
    let at = this.at;
    for (let i = from; i < end; i++) buf[at++] = src[i];
    this.at = at;
  }

  /**
   * bytes[shift + from..shift + end) without the lines `drops` marks (see net/fields' LineDrops;
   * offsets from shift), unless their kind's bit is in keptKinds: the head as the peer sent it, a
   * copy per run of lines.
   */
  bytesWithout(bytes: Uint8Array, shift: number, from: number, end: number, drops: LineDrops | undefined, keptKinds = 0): void {
    if (drops) {
      for (let i = 0; i < drops.length; i += 3) {
        if (keptKinds & (1 << drops[i + 2])) continue;
        this.copy(bytes, shift + from, shift + drops[i]);
        from = drops[i + 1];
      }
    }
    this.copy(bytes, shift + from, shift + end);
  }

  /** "name: value\r\n". */
  line(name: string, value: string): void {
    this.text(name);
    this.colon();
    this.text(value);
    this.crlf();
  }

  colon(): void {
    if (this.at + 2 > this.buf.length) this.grow(2);
    this.buf[this.at++] = 58;
    this.buf[this.at++] = 32;
  }

  crlf(): void {
    if (this.at + 2 > this.buf.length) this.grow(2);
    this.buf[this.at++] = 13;
    this.buf[this.at++] = 10;
  }

  bytes(data: Uint8Array): void {
    this.copy(data, 0, data.length);
  }

  /** The head as a string (winch's upgrade requests, tests). */
  toString(): string {
    return latin1Text(this.buf, 0, this.at);
  }

  /** The head outgrew scratch: its bytes, to be sent as they are. Undefined: send scratch[0..at). */
  ownBytes(): Uint8Array | undefined {
    return this.buf === scratch ? undefined : this.buf.subarray(0, this.at);
  }

  private grow(n: number): void {
    const bigger = Buffer.allocUnsafe(Math.max(2 * this.buf.length, this.at + n));
    this.buf.copy(bigger, 0, 0, this.at);
    this.buf = bigger;
  }
}

/** The one HeadWriter: JavaScript runs one head at a time, as it does with `scratch`. */
export const headWriter = new HeadWriter();
