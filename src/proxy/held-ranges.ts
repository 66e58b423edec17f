import { copyRange } from "../net/bytes.js";
import type { ClientStream } from "./client-stream.js";

/** Held response bytes up to this are joined into one write; above it, copying costs more than it saves. */
const coalesceLimitBytes = 64 * 1024;

/**
 * A gRPC backend's body bytes held for the next flush to the client: ranges of socket reads, kept
 * without a view per range until they are written. The first range is held in fields: a unary
 * answer's one message makes no array.
 */
export class HeldRanges {
  private first: Uint8Array | undefined = undefined;
  private firstStart = 0;
  private firstEnd = 0;
  /** The ranges after the first, and the start, end of each. */
  private more: Uint8Array[] | undefined = undefined;
  private bounds: number[] | undefined = undefined;
  private bytes = 0;

  get count(): number {
    return this.first === undefined ? 0 : 1 + (this.more?.length ?? 0);
  }

  add(source: Uint8Array, start: number, end: number): void {
    this.bytes += end - start;
    if (this.first === undefined) {
      this.first = source;
      this.firstStart = start;
      this.firstEnd = end;
      return;
    }
    (this.more ??= []).push(source);
    (this.bounds ??= []).push(start, end);
  }

  /**
   * Writes the ranges to the client and forgets them; `ending` ends its stream with them. One range
   * goes as it is, a range of its read (no view: the first view of a socket read costs more than the
   * rest of relaying it, bytesIn). Several go as one buffer while that is cheap: one DATA frame,
   * one pass through the client stream's machinery. Message boundaries are not frame boundaries in
   * gRPC: the client reads the same messages. False when the stream asks to wait.
   */
  writeTo(client: ClientStream, ending: boolean): boolean {
    const first = this.first;
    let ok = true;
    if (first === undefined) {
      if (ending) client.end();
      return true;
    }
    const start = this.firstStart;
    const end = this.firstEnd;
    if (this.more === undefined || this.more.length === 0) {
      this.clear();
      if (ending) client.end(first, start, end);
      else ok = client.write(first, start, end);
      return ok;
    }
    const joined = this.bytes <= coalesceLimitBytes ? this.join(first) : undefined;
    if (joined === undefined) ok = this.writeEach(client);
    else if (!ending) ok = client.write(joined);
    this.clear();
    if (ending) client.end(joined);
    return ok;
  }

  /** The ranges (two or more) as one copy: short ranges byte by byte, cheaper than a native call each. */
  private join(first: Uint8Array): Uint8Array {
    const more = this.more!;
    const bounds = this.bounds!;
    const out = Buffer.allocUnsafe(this.bytes);
    let at = appendRange(out, 0, first, this.firstStart, this.firstEnd);
    for (let i = 0; i < more.length; i++) at = appendRange(out, at, more[i], bounds[2 * i], bounds[2 * i + 1]);
    return out;
  }

  /** Writes each range as it is (too much to copy into one); false when the stream asks to wait. */
  private writeEach(client: ClientStream): boolean {
    let ok = client.write(this.first!, this.firstStart, this.firstEnd);
    const { more, bounds } = this;
    if (more !== undefined) for (let i = 0; i < more.length; i++) ok = client.write(more[i], bounds![2 * i], bounds![2 * i + 1]);
    return ok;
  }

  clear(): void {
    this.first = undefined;
    if (this.more !== undefined) {
      this.more.length = 0;
      this.bounds!.length = 0;
    }
    this.bytes = 0;
  }
}

/** Copies source[start, end) into out at `at` (no view of the read); returns where the next range goes. */
function appendRange(out: Uint8Array, at: number, source: Uint8Array, start: number, end: number): number {
  if (end - start > 64) copyRange(source, start, end, out, at);
  else for (let j = start; j < end; j++) out[at + j - start] = source[j];
  return at + end - start;
}
