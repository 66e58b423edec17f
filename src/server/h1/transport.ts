import type { Socket } from "bun";
import type { Duplex } from "node:stream";
import { scratchCopy, SocketWriter } from "../../net/socket-writer.js";
import { copyOf } from "../../net/bytes.js";

/** What a client connection is read from and written to: a Bun socket (plaintext or TLS) or a node stream. */
export interface ClientTransport {
  readonly remoteAddress: string;
  /** The TLS socket a client certificate is read from; undefined on plaintext. */
  readonly peer: object | undefined;
  /** False when the bytes were queued: the connection's onDrain follows. */
  write(bytes: Uint8Array): boolean;
  /** Writes scratch[0..length) (net/socket-writer's `scratch`), which is reused once this returns. */
  writeScratch(length: number): boolean;
  /** Writes bytes[0, length) (default: all of them), which are reused once this returns. */
  writeTransient(bytes: Uint8Array, length?: number): boolean;
  /** Closes the write side once queued bytes are out. */
  end(): void;
  /** Closes at once. */
  terminate(): void;
  pause(): void;
  resume(): void;
}

/** The events a transport delivers to its connection. */
export interface TransportEvents {
  onData(data: Buffer): void;
  onDrain(): void;
  onEnd(): void;
  onClose(): void;
}

/** A Bun.listen socket; the listener's handlers call `drained()` and the connection's events. */
export class BunTransport implements ClientTransport {
  private readonly writer: SocketWriter;
  private endPending = false;
  private address: string | undefined;

  /** `peer`: the TLS connection's certificate and address (server/tls-listener), none on plaintext. */
  constructor(
    private readonly socket: Socket<unknown>,
    readonly peer: object | undefined = undefined,
  ) {
    this.writer = new SocketWriter(socket);
  }

  /** Read once per connection, as NodeTransport does; a request reads it for X-Forwarded-For and the access log. */
  get remoteAddress(): string {
    return (this.address ??= this.socket.remoteAddress);
  }

  write(bytes: Uint8Array): boolean {
    return this.writer.write(bytes);
  }

  writeScratch(length: number): boolean {
    return this.writer.writeScratch(length);
  }

  writeTransient(bytes: Uint8Array, length = bytes.length): boolean {
    return this.writer.writeTransient(bytes, length);
  }

  /** The socket's drain event; true when the connection should hear of it. */
  drained(): boolean {
    if (!this.writer.flush()) return false;
    if (this.endPending) this.socket.end();
    return true;
  }

  end(): void {
    if (this.writer.pending) this.endPending = true;
    else this.socket.end();
  }

  terminate(): void {
    this.writer.clear();
    this.socket.terminate();
  }

  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }
}

/** A node stream: a CONNECT tunnel whose bytes a listener serves itself (winch). */
export class NodeTransport implements ClientTransport {
  /** Read once: a node socket's getter costs ~160 ns a call in Bun. */
  private address: string | undefined;

  /** `remoteAddress`: the client's, for a stream that is not itself a socket (a tunnel). */
  constructor(
    private readonly socket: Duplex & { remoteAddress?: string },
    remoteAddress?: string,
  ) {
    this.address = remoteAddress;
    socket.on("error", () => {});
  }

  deliverTo(events: TransportEvents): void {
    this.socket.on("data", (d: Buffer) => events.onData(d));
    this.socket.on("drain", () => events.onDrain());
    this.socket.on("end", () => events.onEnd());
    this.socket.on("close", () => events.onClose());
  }

  get remoteAddress(): string {
    return (this.address ??= this.socket.remoteAddress ?? "");
  }

  get peer(): object {
    return this.socket;
  }

  write(bytes: Uint8Array): boolean {
    return this.socket.write(bytes);
  }

  /** A node socket may hold on to what it is given: the bytes are copied. */
  writeScratch(length: number): boolean {
    return this.socket.write(scratchCopy(0, length));
  }

  writeTransient(bytes: Uint8Array, length = bytes.length): boolean {
    return this.socket.write(copyOf(bytes, 0, length));
  }

  end(): void {
    this.socket.end();
  }

  terminate(): void {
    this.socket.destroy();
  }

  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }
}
