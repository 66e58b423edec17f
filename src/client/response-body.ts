import type { IncomingMessage } from "node:http";
import type { Readable } from "node:stream";
import zlib from "node:zlib";

/** Bytes a response body may buffer ahead of its reader before kedge's connection is paused. */
const highWaterMark = 64 * 1024;

/**
 * The decoder for a body's content-encoding, as fetch decodes: gzip, deflate (zlib-wrapped or
 * raw, as servers send both) and br; anything else, or several codings, stays as sent.
 */
function decoderFor(encoding: string | undefined): zlib.Gunzip | zlib.Unzip | zlib.BrotliDecompress | undefined {
  switch (encoding?.trim().toLowerCase()) {
    case "gzip":
    case "x-gzip":
      // Lenient like browsers: a body cut right at its end still gives what arrived.
      return zlib.createGunzip({ flush: zlib.constants.Z_SYNC_FLUSH, finishFlush: zlib.constants.Z_SYNC_FLUSH });
    case "deflate":
      return zlib.createUnzip({ flush: zlib.constants.Z_SYNC_FLUSH, finishFlush: zlib.constants.Z_SYNC_FLUSH });
    case "br":
      return zlib.createBrotliDecompress({ flush: zlib.constants.BROTLI_OPERATION_FLUSH, finishFlush: zlib.constants.BROTLI_OPERATION_FLUSH });
    default:
      return undefined;
  }
}

/**
 * A response body from kedge as a WHATWG ReadableStream, decoded as fetch decodes it: data flows
 * while the reader keeps up and the socket pauses when it does not; a connection lost mid-body
 * errors the stream with a TypeError ("terminated"), as fetch does; cancelling a body that has not
 * fully arrived closes the connection.
 */
export class IncomingBody {
  private controller: ReadableStreamDefaultController<Uint8Array> | undefined;
  private finished = false;
  private readonly source: Readable;

  constructor(
    private readonly res: IncomingMessage,
    private readonly onFinished: () => void,
  ) {
    const header = res.headers["content-encoding"];
    const decoder = decoderFor(typeof header === "string" ? header : undefined);
    this.source = decoder ? res.pipe(decoder) : res;
  }

  stream(): ReadableStream<Uint8Array> {
    return new ReadableStream(this, { highWaterMark, size: (chunk?: Uint8Array) => chunk?.byteLength ?? 0 });
  }

  start(controller: ReadableStreamDefaultController<Uint8Array>): void {
    this.controller = controller;
    this.source.on("data", (chunk: Buffer) => this.data(chunk));
    this.source.on("end", () => this.end());
    if (this.source !== this.res) this.source.on("error", (err) => this.fail(new TypeError("terminated", { cause: err })));
    // After a complete body the decoder may still be flushing; only a cut body fails here.
    this.res.on("close", () => {
      if (!this.res.complete) this.fail(new TypeError("terminated", { cause: new Error("kedge closed the connection before the response body ended") }));
    });
  }

  pull(): void {
    this.source.resume();
  }

  cancel(): void {
    if (this.finished) return;
    this.finished = true;
    // A body that has fully arrived is drained so its connection goes back to the pool; only a cut one closes it.
    if (this.res.complete) this.res.resume();
    else this.res.destroy();
    if (this.source !== this.res) this.source.destroy();
    this.onFinished();
  }

  /** Ends the stream with `err` (an abort's reason, a lost connection); no-op once it has ended. */
  fail(err: unknown): void {
    if (this.finished) return;
    this.finished = true;
    this.controller?.error(err);
    this.res.destroy();
    if (this.source !== this.res) this.source.destroy();
    this.onFinished();
  }

  private data(chunk: Buffer): void {
    if (this.finished || !this.controller) return;
    this.controller.enqueue(chunk);
    if ((this.controller.desiredSize ?? 0) <= 0) this.source.pause();
  }

  private end(): void {
    if (this.finished) return;
    this.finished = true;
    this.controller?.close();
    this.onFinished();
  }
}
