import { Duplex } from "node:stream";

/** The connection side a tunnel writes to. */
export interface TunnelOutput {
  readonly closed: boolean;
  send(bytes: Uint8Array): boolean;
  /** Stops reading from the client (the upstream is not keeping up). */
  pause(): void;
  resume(): void;
  closeWhenFlushed(): void;
  destroy(): void;
}

/**
 * A CONNECT tunnel's client side as a node Duplex, so the tunnel code that splices node sockets
 * serves kedge's own listener too. Only tunnels pay for the stream machinery.
 */
export class TunnelSocket extends Duplex {
  private writeDone: ((error?: Error | null) => void) | undefined;

  constructor(private readonly out: TunnelOutput) {
    super();
  }

  /** Bytes from the client. */
  received(data: Uint8Array): void {
    if (!this.push(data)) this.out.pause();
  }

  /** The connection's queue emptied. */
  drained(): void {
    const done = this.writeDone;
    this.writeDone = undefined;
    done?.();
  }

  /** The client connection closed. */
  connectionClosed(): void {
    this.push(null);
    this.destroy();
  }

  override _read(): void {
    this.out.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (error?: Error | null) => void): void {
    if (this.out.closed) return done();
    if (this.out.send(typeof chunk === "string" ? Buffer.from(chunk) : chunk)) done();
    else this.writeDone = done;
  }

  override _final(done: (error?: Error | null) => void): void {
    this.out.closeWhenFlushed();
    done();
  }

  override _destroy(error: Error | null, done: (error?: Error | null) => void): void {
    if (!this.out.closed) this.out.destroy();
    done(error);
  }
}
