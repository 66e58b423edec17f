import { copyOf } from "./bytes.js";

/** The part of a Bun socket a writer needs. */
interface WritableSocket {
  write(data: Uint8Array, byteOffset?: number, byteLength?: number): number;
}

/**
 * One buffer for bytes that live only until the write that sends them returns: the heads made per
 * request. A Buffer per head would be two allocations per proxied request for the GC (bench/README.md).
 * JavaScript is single-threaded, so one is enough; whatever a socket does not take at once is
 * copied before it is queued.
 */
export const scratch = Buffer.allocUnsafe(64 * 1024);

/** scratch[start..end) as bytes of their own, for a queue or a socket that keeps what it is given. */
export function scratchCopy(start: number, end: number): Uint8Array {
  return copyOf(scratch, start, end);
}

/**
 * Writes to a Bun socket in order. Bun's socket.write may take only part of a buffer (it returns
 * how many bytes it took); the rest is queued here and sent from the socket's `drain` handler.
 */
export class SocketWriter {
  private queue: Uint8Array[] = [];
  /** Bytes queued and not yet taken by the socket: a writer that must bound them reads this. */
  queuedBytes = 0;

  constructor(private readonly socket: WritableSocket) {}

  get pending(): boolean {
    return this.queue.length > 0;
  }

  /** False when the bytes had to be queued: wait for a drain before writing more. */
  write(data: Uint8Array): boolean {
    if (this.queue.length > 0) return this.hold(data);
    const n = this.socket.write(data);
    if (n >= data.length) return true;
    return this.hold(n > 0 ? data.subarray(n) : data);
  }

  /**
   * Writes data[0, length), which is reused once this returns (a frame buffer): what the socket
   * does not take is copied (copyOf: Buffer's own slice() would be a view, overwritten by the next use).
   */
  writeTransient(data: Uint8Array, length = data.length): boolean {
    if (this.queue.length > 0) return this.hold(copyOf(data, 0, length));
    const n = this.socket.write(data, 0, length);
    if (n >= length) return true;
    return this.hold(copyOf(data, Math.max(n, 0), length));
  }

  /** Writes scratch[0..length) (see `scratch`); false when some had to be queued. */
  writeScratch(length: number): boolean {
    return this.writeTransient(scratch, length);
  }

  private hold(bytes: Uint8Array): false {
    this.queue.push(bytes);
    this.queuedBytes += bytes.length;
    return false;
  }

  /** Call from the socket's drain handler; true once nothing is queued. */
  flush(): boolean {
    while (this.queue.length > 0) {
      const next = this.queue[0];
      const n = this.socket.write(next);
      if (n < next.length) {
        const taken = Math.max(n, 0);
        this.queuedBytes -= taken;
        this.queue[0] = next.subarray(taken);
        return false;
      }
      this.queuedBytes -= next.length;
      this.queue.shift();
    }
    return true;
  }

  clear(): void {
    if (this.queue.length > 0) this.queue.length = 0;
    this.queuedBytes = 0;
  }
}
