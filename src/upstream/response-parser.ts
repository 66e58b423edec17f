import { bytesIn } from "../net/bytes.js";
import { latin1Text } from "../net/latin1.js";
import { NoHead, ParseError, scanResponseHead, type ResponseHead } from "./response-head.js";


export interface ResponseSink {
  onHead(head: ResponseHead): void;
  /** Returns false to ask the caller to stop feeding until the sink drains. */
  onBody(chunk: Uint8Array): boolean;
  /**
   * The response is complete. `last` carries the final body bytes when they arrived together with
   * the end, so the sink can write them and end in one go (one syscall for small responses).
   */
  onEnd(last?: Uint8Array): void;
}

const enum State { Head, Fixed, ChunkSize, ChunkData, ChunkDataEnd, Trailers, UntilClose, Done, Switched }

const CR = 13;
const LF = 10;
const indexOf = Buffer.prototype.indexOf;
const maxHeadBytes = 64 * 1024;

/**
 * Incremental HTTP/1.1 response parser: head, then a body framed by Content-Length, chunked
 * encoding or connection close (RFC 9112 §6.3). Body bytes are handed out as views of the input,
 * never copied; chunked framing is removed.
 */
export class ResponseParser {
  private state = State.Head;
  private pending: Uint8Array | undefined; // an incomplete head, size line or trailer line
  private remaining = 0;
  private sink: ResponseSink | undefined;
  private noBody = false;
  private upgrade = false;

  /** Arms the parser for the next response; `noBody` for HEAD requests, `upgrade` when a 101 may answer. */
  expect(sink: ResponseSink, noBody: boolean, upgrade = false): void {
    this.sink = sink;
    this.noBody = noBody;
    this.upgrade = upgrade;
    this.state = State.Head;
    this.pending = undefined;
  }

  get done(): boolean {
    return this.state === State.Done;
  }

  /** A 101 was handed out: what follows its head is another protocol's, not HTTP. */
  get switched(): boolean {
    return this.state === State.Switched;
  }

  /** True when the body runs until the connection closes. */
  get untilClose(): boolean {
    return this.state === State.UntilClose;
  }

  /**
   * Feeds bytes. Returns the number consumed: less than `data.length` only once the response
   * is complete (the rest would be a protocol violation by the backend) or switched protocols
   * (the rest is the new protocol's). Throws ParseError.
   */
  feed(data: Uint8Array): number {
    let offset = 0;
    while (offset < data.length) {
      switch (this.state) {
        case State.Head: {
          const end = this.findHeadEnd(data, offset);
          if (end < 0) return data.length;
          offset = end;
          break;
        }
        case State.Fixed: {
          const n = Math.min(this.remaining, data.length - offset);
          this.remaining -= n;
          const chunk = bytesIn(data, offset, offset + n);
          offset += n;
          if (this.remaining === 0) this.finish(chunk);
          else this.sink!.onBody(chunk);
          break;
        }
        case State.UntilClose:
          this.sink!.onBody(bytesIn(data, offset, data.length));
          return data.length;
        case State.ChunkSize:
        case State.Trailers:
        case State.ChunkDataEnd: {
          const lineEnd = this.readLine(data, offset);
          if (lineEnd < 0) return data.length;
          offset = lineEnd;
          break;
        }
        case State.ChunkData: {
          const n = Math.min(this.remaining, data.length - offset);
          this.remaining -= n;
          if (n > 0) this.sink!.onBody(bytesIn(data, offset, offset + n));
          offset += n;
          if (this.remaining === 0) this.state = State.ChunkDataEnd;
          break;
        }
        case State.Done:
        case State.Switched:
          return offset;
      }
    }
    return offset;
  }

  /** The connection closed: completes a close-delimited body, else reports truncation. */
  eof(): boolean {
    if (this.state === State.UntilClose) {
      this.state = State.Done;
      this.sink!.onEnd();
      return true;
    }
    return this.state === State.Done;
  }

  private finish(last?: Uint8Array): void {
    this.state = State.Done;
    this.sink!.onEnd(last && last.length > 0 ? last : undefined);
  }

  /**
   * The pending bytes and data[offset..] as one array, the pending bytes at its start; the caller
   * maps offsets back into `data` with the pending length it read before calling.
   */
  private joinPending(pending: Uint8Array, data: Uint8Array, offset: number): Uint8Array {
    const joined = new Uint8Array(pending.length + data.length - offset);
    joined.set(pending, 0);
    joined.set(data.subarray(offset), pending.length);
    this.pending = undefined;
    return joined;
  }

  /** Returns the offset in `data` just past the head, or -1 when more bytes are needed. */
  private findHeadEnd(data: Uint8Array, offset: number): number {
    const pending = this.pending;
    if (pending && indexOf.call(data, LF, offset) < 0) {
      // A head ends only with a line: wait for one without reading it all again.
      if (pending.length + data.length - offset > maxHeadBytes) throw new ParseError("response head too large");
      this.pending = this.joinPending(pending, data, offset);
      return -1;
    }
    // Offsets in buf are offsets in data shifted by `shift` when pending bytes were prepended.
    const shift = pending ? offset - pending.length : 0;
    const buf = pending ? this.joinPending(pending, data, offset) : data;
    const start = pending ? 0 : offset;
    const head = scanResponseHead(buf, start, Math.min(buf.length, start + maxHeadBytes));
    if (head === NoHead.BareLf) {
      const end = lfHeadEnd(buf, start);
      if (end >= 0) {
        this.onHead(crlfHead(buf, start, end));
        return end + shift;
      }
    } else if (head !== NoHead.Incomplete) {
      this.onHead(head);
      return head.bytesAt + head.fieldsEnd + 2 + shift;
    }
    if (buf.length - start > maxHeadBytes) throw new ParseError("response head too large");
    this.pending = buf.slice(start);
    return -1;
  }

  private onHead(head: ResponseHead): void {
    const { status } = head;
    if (status < 200) {
      if (status === 101) {
        if (!this.upgrade) throw new ParseError("101 Switching Protocols to a request that asked for no upgrade");
        this.state = State.Switched;
        this.sink!.onHead(head);
        return;
      }
      // Interim response (100 Continue, 103 Early Hints): skipped; the final head follows.
      this.state = State.Head;
      return;
    }
    const bodyless = this.noBody || status === 204 || status === 304;
    if (!bodyless && !head.chunked && head.contentLength < 0) head.close = true;
    this.sink!.onHead(head);
    if (bodyless || head.contentLength === 0) this.finish();
    else if (head.chunked) this.state = State.ChunkSize;
    else if (head.contentLength > 0) {
      this.state = State.Fixed;
      this.remaining = head.contentLength;
    } else this.state = State.UntilClose;
  }

  /** Reads one CRLF-terminated line for the chunk states; returns the offset after it or -1. */
  private readLine(data: Uint8Array, offset: number): number {
    const pending = this.pending;
    const shift = pending ? offset - pending.length : 0;
    const buf = pending ? this.joinPending(pending, data, offset) : data;
    const start = pending ? 0 : offset;
    let lf = -1;
    for (let i = start; i < buf.length; i++) {
      if (buf[i] === LF) {
        lf = i;
        break;
      }
    }
    if (lf < 0) {
      if (buf.length - start > 8192) throw new ParseError("chunk line too long");
      this.pending = buf.slice(start);
      return -1;
    }
    if (lf === start || buf[lf - 1] !== CR) throw new ParseError("bare LF in chunked body");
    const line = latin1Text(buf, start, lf - 1);
    this.onLine(line);
    return lf + 1 + shift;
  }

  private onLine(line: string): void {
    switch (this.state) {
      case State.ChunkDataEnd:
        if (line !== "") throw new ParseError("missing CRLF after chunk data");
        this.state = State.ChunkSize;
        return;
      case State.ChunkSize: {
        const semi = line.indexOf(";");
        const sizeText = (semi >= 0 ? line.slice(0, semi) : line).trim();
        if (!/^[0-9a-fA-F]{1,12}$/.test(sizeText)) throw new ParseError("invalid chunk size");
        const size = parseInt(sizeText, 16);
        if (size === 0) this.state = State.Trailers;
        else {
          this.remaining = size;
          this.state = State.ChunkData;
        }
        return;
      }
      case State.Trailers:
        // Trailer fields are dropped: HTTP/1.1 clients rarely read them and gRPC uses HTTP/2.
        if (line === "") this.finish();
    }
  }
}

/**
 * Where a head ends when its lines may end in a bare LF, which RFC 9112 §2.2 lets a recipient take
 * as a line end: just past the first empty line; -1 when none has arrived.
 */
function lfHeadEnd(buf: Uint8Array, start: number): number {
  const limit = Math.min(buf.length, start + maxHeadBytes);
  for (let lineStart = start; lineStart < limit; ) {
    const lf = buf.indexOf(LF, lineStart);
    if (lf < 0 || lf >= limit) break;
    const length = lf - lineStart;
    if (length === 0 || (length === 1 && buf[lineStart] === CR)) return lf + 1;
    lineStart = lf + 1;
  }
  if (buf.length - start > maxHeadBytes) throw new ParseError("response head too large");
  return -1;
}

/**
 * The head in buf[start..end) with every bare LF made CRLF, parsed: what the client is sent is
 * well-formed HTTP/1.1 however the backend ended its lines. A bare CR is still refused.
 */
function crlfHead(buf: Uint8Array, start: number, end: number): ResponseHead {
  if (end - start > maxHeadBytes) throw new ParseError("response head too large");
  let bare = 0;
  for (let i = start; i < end; i++) if (buf[i] === LF && (i === start || buf[i - 1] !== CR)) bare++;
  const out = Buffer.allocUnsafe(end - start + bare);
  let at = 0;
  for (let i = start; i < end; i++) {
    if (buf[i] === LF && (i === start || buf[i - 1] !== CR)) out[at++] = CR;
    out[at++] = buf[i];
  }
  const head = scanResponseHead(out, 0, out.length);
  // Every line now ends in CRLF, and `out` holds the whole head.
  if (typeof head === "number") throw new ParseError("malformed response head");
  return head;
}
