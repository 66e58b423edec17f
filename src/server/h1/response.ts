import { STATUS_CODES, type OutgoingHttpHeaders } from "node:http";
import { writeLatin1 } from "../../net/latin1.js";
import { scratch } from "../../net/socket-writer.js";
import type { HeadLines } from "../../proxy/headers.js";
import type { IngressResponse, SwitchedConnection } from "../../proxy/ingress.js";

/** What a response needs from its connection. */
export interface ResponseOutput {
  readonly closed: boolean;
  /** Writes bytes; false when they had to be queued (wait for onceDrain). */
  send(bytes: Uint8Array): boolean;
  /** Writes scratch[0..length) (net/socket-writer's `scratch`); false when queued. */
  sendScratch(length: number): boolean;
  onceDrain(cb: () => void): void;
  /** The response is complete; `reuse`: the connection may carry another request. */
  responseDone(reuse: boolean): void;
  /** Closes the connection at once (a truncated response). */
  destroy(): void;
  /** The response was a 101: the connection is handed over as a stream. */
  switchProtocols(): SwitchedConnection;
}

const lastChunk = Buffer.from("0\r\n\r\n");
let dateLine = "";
let dateSecond = 0;

/** `date: …\r\n`, formatted once a second rather than once a response. */
function date(): string {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateLine = `date: ${new Date(now).toUTCString()}\r\n`;
  }
  return dateLine;
}

/**
 * A head string and a body chunk as one write: one packet for small responses. Laid out in the
 * shared scratch buffer when they fit, so a response allocates nothing for its head.
 */
function sendJoined(out: ResponseOutput, head: string, body: Uint8Array | undefined, prefix = "", suffix: Uint8Array | undefined = undefined): boolean {
  const headLength = head.length + prefix.length;
  const total = headLength + (body?.length ?? 0) + (suffix?.length ?? 0);
  const into = total <= scratch.length ? scratch : Buffer.allocUnsafe(total);
  writeLatin1(into, head, 0);
  if (prefix) writeLatin1(into, prefix, head.length);
  if (body) into.set(body, headLength);
  if (suffix) into.set(suffix, headLength + (body?.length ?? 0));
  return into === scratch ? out.sendScratch(total) : out.send(into);
}

/**
 * One HTTP/1.1 response written on a kedge-owned connection. The framing is kedge's: the backend's
 * Content-Length when it gave one, else chunked (HTTP/1.1 clients) or close-delimited (HTTP/1.0).
 */
export class H1RawResponse implements IngressResponse {
  headersSent = false;
  private ended = false;
  private pendingHead = "";
  private chunked = false;
  private bodyless: boolean;
  private keepAlive: boolean;
  private goneCallback: (() => void) | undefined;

  constructor(
    private readonly out: ResponseOutput,
    private readonly versionMinor: number,
    keepAlive: boolean,
    isHead: boolean,
  ) {
    this.keepAlive = keepAlive;
    this.bodyless = isHead;
  }

  get gone(): boolean {
    return this.out.closed;
  }

  writeHead(status: number, headers: OutgoingHttpHeaders): void {
    let lines = "";
    let hasLength = false;
    let hasDate = false;
    for (const name in headers) {
      const value = headers[name];
      if (value === undefined) continue;
      if (name.length === 14 && name.toLowerCase() === "content-length") hasLength = true;
      else if (name.length === 4 && name.toLowerCase() === "date") hasDate = true;
      if (Array.isArray(value)) for (const v of value) lines += `${name}: ${v}\r\n`;
      else lines += `${name}: ${value}\r\n`;
    }
    this.writeHeadLines(status, { lines, hasLength, hasDate, hasRequestId: false });
  }

  writeHeadLines(status: number, fields: HeadLines): void {
    if (this.headersSent || this.out.closed) return;
    this.headersSent = true;
    let head = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? "Unknown"}\r\n${fields.lines}`;
    if (status === 204 || status === 304 || status < 200) this.bodyless = true;
    if (!this.bodyless && !fields.hasLength) {
      if (this.versionMinor === 1) {
        this.chunked = true;
        head += "transfer-encoding: chunked\r\n";
      } else this.keepAlive = false; // HTTP/1.0: the body ends where the connection does
    }
    if (!this.keepAlive) head += "connection: close\r\n";
    else if (this.versionMinor === 0) head += "connection: keep-alive\r\n";
    this.pendingHead = fields.hasDate ? `${head}\r\n` : `${head}${date()}\r\n`;
  }

  write(chunk: Uint8Array): boolean {
    if (this.ended || this.out.closed) return true;
    if (this.bodyless || chunk.length === 0) return this.flushHead();
    const head = this.pendingHead;
    this.pendingHead = "";
    if (!this.chunked) return head ? sendJoined(this.out, head, chunk) : this.out.send(chunk);
    return sendJoined(this.out, head, chunk, `${chunk.length.toString(16)}\r\n`, crlf);
  }

  onceDrain(cb: () => void): void {
    this.out.onceDrain(cb);
  }

  end(last?: Uint8Array): void {
    if (this.ended || this.out.closed) return;
    if (!this.headersSent) this.writeHead(200, { "content-length": last?.length ?? 0 });
    this.ended = true;
    const body = this.bodyless || !last || last.length === 0 ? undefined : last;
    const head = this.pendingHead;
    this.pendingHead = "";
    if (this.chunked) {
      if (body) sendJoined(this.out, head, body, `${body.length.toString(16)}\r\n`, crlfLastChunk);
      else sendJoined(this.out, head, undefined, "", lastChunk);
    } else if (head) sendJoined(this.out, head, body);
    else if (body) this.out.send(body);
    this.out.responseDone(this.keepAlive);
  }

  switchProtocols(lines: string): SwitchedConnection | undefined {
    if (this.headersSent || this.out.closed) return undefined;
    this.headersSent = true;
    this.ended = true;
    this.out.send(Buffer.from(`HTTP/1.1 101 Switching Protocols\r\n${lines}\r\n`, "latin1"));
    return this.out.switchProtocols();
  }

  abort(): void {
    if (this.ended) return;
    this.ended = true;
    this.out.destroy();
  }

  onGone(cb: () => void): void {
    this.goneCallback = cb;
  }

  /** The connection closed; tells the exchange unless the response was complete. */
  connectionClosed(): void {
    if (!this.ended) {
      this.ended = true;
      this.goneCallback?.();
    }
  }

  lastOnConnection(): void {
    this.keepAlive = false;
  }

  private flushHead(): boolean {
    if (!this.pendingHead) return true;
    const head = this.pendingHead;
    this.pendingHead = "";
    return sendJoined(this.out, head, undefined);
  }
}

const crlf = Buffer.from("\r\n");
const crlfLastChunk = Buffer.from("\r\n0\r\n\r\n");
