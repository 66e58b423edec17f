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
  return Uint8Array.prototype.slice.call(scratch, start, end);
}

/**
 * Writes to a Bun socket in order. Bun's socket.write may take only part of a buffer (it returns
 * how many bytes it took); the rest is queued here and sent from the socket's `drain` handler.
 */
export class SocketWriter {
  private queue: Uint8Array[] = [];

  constructor(private readonly socket: WritableSocket) {}

  get pending(): boolean {
    return this.queue.length > 0;
  }

  /** False when the bytes had to be queued: wait for a drain before writing more. */
  write(data: Uint8Array): boolean {
    if (this.queue.length > 0) {
      this.queue.push(data);
      return false;
    }
    const n = this.socket.write(data);
    if (n >= data.length) return true;
    this.queue.push(n > 0 ? data.subarray(n) : data);
    return false;
  }

  /** Writes data[0, length), which is reused once this returns (a frame buffer): what the socket does not take is copied. */
  writeTransient(data: Uint8Array, length = data.length): boolean {
    if (this.queue.length > 0) {
      this.queue.push(Uint8Array.prototype.slice.call(data, 0, length));
      return false;
    }
    const n = this.socket.write(data, 0, length);
    if (n >= length) return true;
    this.queue.push(Uint8Array.prototype.slice.call(data, Math.max(n, 0), length));
    return false;
  }

  /** Writes scratch[0..length) (see `scratch`); false when some had to be queued. */
  writeScratch(length: number): boolean {
    if (this.queue.length > 0) {
      this.queue.push(scratchCopy(0, length));
      return false;
    }
    const n = this.socket.write(scratch, 0, length);
    if (n >= length) return true;
    this.queue.push(scratchCopy(Math.max(n, 0), length));
    return false;
  }

  /** Call from the socket's drain handler; true once nothing is queued. */
  flush(): boolean {
    while (this.queue.length > 0) {
      const next = this.queue[0];
      const n = this.socket.write(next);
      if (n < next.length) {
        this.queue[0] = next.subarray(Math.max(n, 0));
        return false;
      }
      this.queue.shift();
    }
    return true;
  }

  clear(): void {
    if (this.queue.length > 0) this.queue.length = 0;
  }
}
