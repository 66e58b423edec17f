import type { IncomingMessage } from "node:http";

/** Bytes a response body may buffer ahead of its reader before kedge's connection is paused. */
const highWaterMark = 64 * 1024;

/**
 * A response body from kedge as a WHATWG ReadableStream: data flows while the reader keeps up and
 * the socket pauses when it does not; a connection lost mid-body errors the stream with a
 * TypeError ("terminated"), as fetch does; cancelling the stream closes the connection.
 */
export class IncomingBody {
  private controller: ReadableStreamDefaultController<Uint8Array> | undefined;
  private finished = false;

  constructor(
    private readonly res: IncomingMessage,
    private readonly onFinished: () => void,
  ) {}

  stream(): ReadableStream<Uint8Array> {
    return new ReadableStream(this, { highWaterMark, size: (chunk?: Uint8Array) => chunk?.byteLength ?? 0 });
  }

  start(controller: ReadableStreamDefaultController<Uint8Array>): void {
    this.controller = controller;
    this.res.on("data", (chunk: Buffer) => this.data(chunk));
    this.res.on("end", () => this.end());
    this.res.on("close", () => this.fail(new TypeError("terminated", { cause: new Error("kedge closed the connection before the response body ended") })));
  }

  pull(): void {
    this.res.resume();
  }

  cancel(): void {
    if (this.finished) return;
    this.finished = true;
    // A body that has fully arrived is drained so its connection goes back to the pool; only a cut one closes it.
    if (this.res.complete) this.res.resume();
    else this.res.destroy();
    this.onFinished();
  }

  /** Ends the stream with `err` (an abort's reason, a lost connection); no-op once it has ended. */
  fail(err: unknown): void {
    if (this.finished) return;
    this.finished = true;
    this.controller?.error(err);
    this.res.destroy();
    this.onFinished();
  }

  private data(chunk: Buffer): void {
    if (this.finished || !this.controller) return;
    this.controller.enqueue(chunk);
    if ((this.controller.desiredSize ?? 0) <= 0) this.res.pause();
  }

  private end(): void {
    if (this.finished) return;
    this.finished = true;
    this.controller?.close();
    this.onFinished();
  }
}
