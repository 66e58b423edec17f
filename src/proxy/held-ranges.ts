import type { ClientStream } from "./client-stream.js";

/** Held response bytes up to this are joined into one write; above it, copying costs more than it saves. */
const coalesceLimitBytes = 64 * 1024;

/**
 * A gRPC backend's body bytes held for the next flush to the client: ranges of socket reads, kept
 * without a view per range until they are written.
 */
export class HeldRanges {
  private readonly sources: Uint8Array[] = [];
  /** start, end of each source's range. */
  private readonly bounds: number[] = [];
  private bytes = 0;

  get count(): number {
    return this.sources.length;
  }

  add(source: Uint8Array, start: number, end: number): void {
    this.sources.push(source);
    this.bounds.push(start, end);
    this.bytes += end - start;
  }

  /**
   * Writes the ranges to the client and forgets them; `ending` ends its stream with them. Held
   * messages go as one buffer while that is cheap: one DATA frame, one pass through the client
   * stream's machinery. Message boundaries are not frame boundaries in gRPC: the client reads the
   * same messages. False when the stream asks to wait.
   */
  writeTo(client: ClientStream, ending: boolean): boolean {
    const joined = this.sources.length > 0 && this.bytes <= coalesceLimitBytes ? this.join() : undefined;
    let ok = true;
    if (joined === undefined) ok = this.writeEach(client);
    else if (!ending) ok = client.write(joined);
    this.clear();
    if (ending) client.end(joined);
    return ok;
  }

  /** The ranges as one array: a view when there is one, else a copy (short ranges byte by byte, cheaper than a native call each). */
  private join(): Uint8Array {
    const { sources, bounds } = this;
    if (sources.length === 1) return sources[0].subarray(bounds[0], bounds[1]);
    const out = Buffer.allocUnsafe(this.bytes);
    let at = 0;
    for (let i = 0; i < sources.length; i++) {
      const source = sources[i];
      const start = bounds[2 * i];
      const end = bounds[2 * i + 1];
      if (end - start > 64) out.set(source.subarray(start, end), at);
      else for (let j = start; j < end; j++) out[at + j - start] = source[j];
      at += end - start;
    }
    return out;
  }

  /** Writes each range as it is (too much to copy into one); false when the stream asks to wait. */
  private writeEach(client: ClientStream): boolean {
    let ok = true;
    for (let i = 0; i < this.sources.length; i++) ok = client.write(this.sources[i].subarray(this.bounds[2 * i], this.bounds[2 * i + 1]));
    return ok;
  }

  clear(): void {
    this.sources.length = 0;
    this.bounds.length = 0;
    this.bytes = 0;
  }
}
