import { KedgeError } from "../../errors.js";

/** Receives the decoded body: bytes as they come, then the end. */
export interface BodySink {
  data(chunk: Uint8Array): void;
  end(): void;
}

const bad = (message: string) => new KedgeError("bad-request", 400, message);
// A size line with extensions, or a trailer section, longer than this is an attack, not a request.
const maxLineBytes = 4096;
const maxTrailerBytes = 16_384;
const hexDigits = /^[0-9a-fA-F]{1,15}$/;
// RFC 9112 §7.1.1: BWS (spaces, tabs) may precede an extension's ";"; its names and values are
// tokens or quoted strings, so a CR or another control byte there is a framing a backend reads differently.
const trailingBws = /[ \t]+$/;
const extensionByte = /[\x00-\x08\x0a-\x1f\x7f]/;

/**
 * Reads one request body off the connection's bytes: Content-Length or chunked (RFC 9112 §7.1).
 * `feed` consumes what belongs to the body and returns how many bytes it took, so what follows is
 * the next pipelined request; it throws a KedgeError for broken chunked framing.
 */
export class BodyReader {
  private remaining: number;
  private state: "data" | "size" | "data-end" | "trailers" | "done";
  private line = "";
  private trailerBytes = 0;
  private readonly chunked: boolean;

  constructor(
    contentLength: number,
    private readonly sink: BodySink,
  ) {
    this.chunked = contentLength < 0;
    this.remaining = contentLength < 0 ? 0 : contentLength;
    this.state = contentLength < 0 ? "size" : "data";
  }

  get done(): boolean {
    return this.state === "done";
  }

  /** Bytes of a Content-Length body still to come; -1 for chunked, whose length is unknown. */
  get unreadLength(): number {
    return this.chunked ? -1 : this.remaining;
  }

  /** Call when the head is parsed: an empty Content-Length body ends at once. */
  start(): void {
    if (this.state === "data" && this.remaining === 0) this.finish();
  }

  feed(buf: Uint8Array): number {
    let at = 0;
    while (at < buf.length && this.state !== "done") {
      if (this.state === "data") {
        const n = Math.min(this.remaining, buf.length - at);
        this.remaining -= n;
        const chunk = buf.subarray(at, at + n);
        at += n;
        this.sink.data(chunk);
        if (this.remaining === 0) {
          if (this.chunked) this.state = "data-end";
          else this.finish();
        }
      } else {
        const lf = buf.indexOf(10, at);
        const end = lf < 0 ? buf.length : lf + 1;
        this.line += Buffer.from(buf.buffer, buf.byteOffset + at, end - at).toString("latin1");
        at = end;
        if (this.line.length > maxLineBytes) throw bad("chunk framing line too long");
        if (lf >= 0) this.lineDone();
      }
    }
    return at;
  }

  private lineDone(): void {
    const line = this.line;
    this.line = "";
    if (line.length < 2 || line.charCodeAt(line.length - 2) !== 13) throw bad("bare LF in chunked framing");
    const text = line.slice(0, -2);
    if (this.state === "data-end") {
      if (text !== "") throw bad("chunk data longer than its size");
      this.state = "size";
    } else if (this.state === "size") {
      const semi = text.indexOf(";");
      // Chunk extensions are allowed and dropped: kedge re-frames the body for the backend.
      const size = semi >= 0 ? text.slice(0, semi).replace(trailingBws, "") : text;
      if (!hexDigits.test(size)) throw bad(`malformed chunk size ${JSON.stringify(size.slice(0, 20))}`);
      if (semi >= 0 && extensionByte.test(text)) throw bad("control character in a chunk extension");
      this.remaining = parseInt(size, 16);
      if (this.remaining === 0) this.state = "trailers";
      else this.state = "data";
    } else if (this.state === "trailers") {
      // Trailers are read and dropped; the backend gets a body without them.
      if (text === "") return this.finish();
      if ((this.trailerBytes += line.length) > maxTrailerBytes) throw bad("request trailers too large");
    }
  }

  private finish(): void {
    this.state = "done";
    this.line = "";
    this.sink.end();
  }
}
