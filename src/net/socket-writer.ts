/** The part of a Bun socket a writer needs. */
interface WritableSocket {
  write(data: Uint8Array): number;
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
