import { Readable } from "node:stream";
import type { BodyReader as ProxyBodyReader, RequestBody as ProxyRequestBody } from "../../proxy/ingress.js";
import { BodyReader, type BodySink } from "./body-reader.js";

/** What a request body needs from the connection it arrives on. */
export interface BodySource {
  pause(): void;
  resume(): void;
  closeWhenFlushed(): void;
  /** The body was all read: handed to the exchange, or (`dropped`) read off after an early answer. */
  bodyEnded(dropped: boolean): void;
}

/**
 * The rest of a request body read and dropped after its answer, so the connection can carry the
 * next request; a longer rest costs less as a closed connection.
 */
const maxDropBytes = 262_144;

/**
 * One request's body on an HTTP/1.1 connection: read off the connection's bytes into the stream
 * the exchange reads, or, once the request was answered before all of it came, dropped.
 */
export class RequestBody implements BodySink, ProxyRequestBody {
  readonly stream: Readable;
  private readonly reader: BodyReader;
  /** The client sent `Expect: 100-continue` and waits for the 100 before sending the body. */
  continueAwaited: boolean;
  /** Answered early: what still comes is dropped, up to dropBudget bytes. */
  private dropping = false;
  private dropBudget = 0;

  constructor(
    private readonly source: BodySource,
    contentLength: number,
    expectContinue: boolean,
  ) {
    this.continueAwaited = expectContinue;
    this.stream = new Readable({ read: () => source.resume() });
    this.reader = new BodyReader(contentLength, this);
  }

  get done(): boolean {
    return this.reader.done;
  }

  // The proxy's view of the body.
  read(reader: ProxyBodyReader): void {
    this.stream.on("data", (chunk: Buffer) => reader.bodyData(chunk));
    this.stream.once("end", () => reader.bodyEnd());
    this.stream.resume();
  }

  pause(): void {
    this.stream.pause();
  }

  resume(): void {
    this.stream.resume();
  }

  /** Consumes what belongs to the body and returns how many bytes it took; throws a KedgeError for broken framing. */
  feed(buf: Uint8Array): number {
    return this.reader.feed(buf);
  }

  // BodySink
  data(chunk: Uint8Array): void {
    this.continueAwaited = false;
    if (!this.dropping) {
      if (!this.stream.push(chunk)) this.source.pause();
    } else if ((this.dropBudget -= chunk.length) < 0) this.source.closeWhenFlushed();
  }

  end(): void {
    if (!this.dropping) this.stream.push(null);
    this.source.bodyEnded(this.dropping);
  }

  /**
   * Whether the connection can carry another request after an answer given now: what is left of a
   * small body is read and dropped, but a client still waiting for its 100 may never send the body
   * it declared. A chunked body's length is unknown: its drop is cut off as it is read.
   */
  reusable(): boolean {
    if (this.reader.done) return true;
    if (this.continueAwaited) return false;
    return this.reader.unreadLength <= maxDropBytes;
  }

  /** The request was answered: the exchange reads no more, and the rest is dropped as it comes. */
  drop(): void {
    this.dropping = true;
    this.dropBudget = maxDropBytes;
    this.continueAwaited = false;
    this.stream.destroy();
  }

  /** The connection closed or broke mid-body: the exchange reading the stream stops as if the client had gone. */
  abandon(): void {
    if (!this.reader.done && !this.dropping) this.stream.destroy();
  }
}
