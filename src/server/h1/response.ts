import type { OutgoingHttpHeaders } from "node:http";
import { statusText } from "../../net/status-text.js";
import { headWriter, type HeadWriter } from "../../net/head-writer.js";
import { writeFieldLines, type HeadLines } from "../../net/hop-headers.js";
import type { GoneListener, IngressResponse, SwitchedConnection } from "../../proxy/ingress.js";

/** What a response needs from its connection. */
export interface ResponseOutput {
  readonly closed: boolean;
  /** The server is shutting down: this response is the connection's last (Connection: close). */
  readonly draining: boolean;
  /** Writes bytes; false when they had to be queued (wait for onceDrain). */
  send(bytes: Uint8Array): boolean;
  /** Writes scratch[0..length) (net/socket-writer's `scratch`); false when queued. */
  sendScratch(length: number): boolean;
  onceDrain(cb: () => void): void;
  /** The response is complete; `reuse`: the connection may carry another request. */
  responseDone(reuse: boolean): void;
  /** False when the request's unread body rules out another request on this connection. */
  reusable(): boolean;
  /** Sends 100 Continue if the client waits for it before sending its body. */
  sendContinue(): void;
  /** Closes the connection at once (a truncated response). */
  destroy(): void;
  /** The response was a 101: the connection is handed over as a stream. */
  switchProtocols(): SwitchedConnection;
}

const lastChunk = Buffer.from("0\r\n\r\n");
let dateLine = "";

/**
 * `date: …\r\n`, formatted once a second rather than once a response, and without a clock read
 * per response either: a timer forgets the line when its second is over (armed only while
 * responses ask for it), as nginx keeps its time per turn of its event loop.
 */
function date(): string {
  if (dateLine === "") {
    const now = Date.now();
    dateLine = `date: ${new Date(now).toUTCString()}\r\n`;
    setTimeout(forgetDate, 1000 - (now % 1000)).unref();
  }
  return dateLine;
}

function forgetDate(): void {
  dateLine = "";
}

const statusLines: string[] = [];
/** "HTTP/1.1 200 OK\r\n", made once per status. */
function statusLine(status: number): string {
  return (statusLines[status] ??= `HTTP/1.1 ${status} ${statusText[status] ?? "Unknown"}\r\n`);
}

/**
 * One HTTP/1.1 response written on a kedge-owned connection. The framing is kedge's: the backend's
 * Content-Length when it gave one, else chunked (HTTP/1.1 clients) or close-delimited (HTTP/1.0).
 */
export class H1RawResponse implements IngressResponse {
  headersSent = false;
  private ended = false;
  /** The head, laid out with the first body bytes so that small responses leave in one write. */
  private pendingHead: HeadLines | undefined;
  private status = 0;
  private chunked = false;
  private bodyless: boolean;
  private keepAlive: boolean;
  private goneListener: GoneListener | undefined;

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
    this.writeHeadLines(status, { backend: undefined, keptKinds: 0, lines, backendName: undefined, requestId: undefined, hasLength, hasDate, hasRequestId: false });
  }

  writeHeadLines(status: number, fields: HeadLines): void {
    if (this.headersSent || this.out.closed) return;
    this.headersSent = true;
    this.status = status;
    if (this.keepAlive && !this.out.reusable()) this.keepAlive = false;
    this.pendingHead = fields;
    if (this.out.draining) this.keepAlive = false;
    if (status === 204 || status === 304 || status < 200) this.bodyless = true;
    if (!this.bodyless && !fields.hasLength) {
      if (this.versionMinor === 1) this.chunked = true;
      else this.keepAlive = false; // HTTP/1.0: the body ends where the connection does
    }
  }

  private writeHeadTo(w: HeadWriter, fields: HeadLines): void {
    w.text(statusLine(this.status));
    writeFieldLines(w, fields);
    if (this.chunked) w.text("transfer-encoding: chunked\r\n");
    if (!this.keepAlive) w.text("connection: close\r\n");
    else if (this.versionMinor === 0) w.text("connection: keep-alive\r\n");
    if (!fields.hasDate) w.text(date());
    w.crlf();
  }

  /**
   * The pending head (if any), `prefix`, `body` and `suffix` in one write when they fit in scratch:
   * one packet for small responses, and nothing allocated for the head.
   */
  private send(body: Uint8Array | undefined, prefix = "", suffix: Uint8Array | undefined = undefined): boolean {
    const w = headWriter.start();
    const head = this.pendingHead;
    if (head) {
      this.pendingHead = undefined;
      this.writeHeadTo(w, head);
    }
    if (prefix) w.text(prefix);
    const rest = (body?.length ?? 0) + (suffix?.length ?? 0);
    if (w.at + rest <= w.buf.length) {
      if (body) w.bytes(body);
      if (suffix) w.bytes(suffix);
      return this.sendWritten(w);
    }
    // A big chunk goes as it is rather than copied behind its head.
    let ok = this.sendWritten(w);
    if (body) ok = this.out.send(body) && ok;
    if (suffix) ok = this.out.send(suffix) && ok;
    return ok;
  }

  private sendWritten(w: HeadWriter): boolean {
    const own = w.ownBytes();
    return own ? this.out.send(own) : this.out.sendScratch(w.at);
  }

  write(chunk: Uint8Array): boolean {
    if (this.ended || this.out.closed) return true;
    if (this.bodyless || chunk.length === 0) return this.flushHead();
    if (this.chunked) return this.send(chunk, `${chunk.length.toString(16)}\r\n`, crlf);
    return this.pendingHead ? this.send(chunk) : this.out.send(chunk);
  }

  onceDrain(cb: () => void): void {
    this.out.onceDrain(cb);
  }

  end(last?: Uint8Array): void {
    if (this.ended || this.out.closed) return;
    if (!this.headersSent) this.writeHead(200, { "content-length": last?.length ?? 0 });
    this.ended = true;
    const body = this.bodyless || !last || last.length === 0 ? undefined : last;
    if (this.chunked) {
      if (body) this.send(body, `${body.length.toString(16)}\r\n`, crlfLastChunk);
      else this.send(undefined, "", lastChunk);
    } else if (this.pendingHead) this.send(body);
    else if (body) this.out.send(body);
    this.out.responseDone(this.keepAlive);
  }

  switchProtocols(fields: HeadLines): SwitchedConnection | undefined {
    if (this.headersSent || this.out.closed) return undefined;
    this.headersSent = true;
    this.ended = true;
    const w = headWriter.start();
    w.text(statusLine(101));
    writeFieldLines(w, fields);
    w.crlf();
    this.sendWritten(w);
    return this.out.switchProtocols();
  }

  abort(): void {
    if (this.ended) return;
    this.ended = true;
    this.out.destroy();
  }

  onGone(listener: GoneListener): void {
    this.goneListener = listener;
  }

  /** The connection closed; tells the exchange unless the response was complete. */
  connectionClosed(): void {
    if (!this.ended) {
      this.ended = true;
      this.goneListener?.clientGone();
    }
  }

  sendContinue(): void {
    if (!this.headersSent) this.out.sendContinue();
  }

  lastOnConnection(): void {
    this.keepAlive = false;
  }

  private flushHead(): boolean {
    return this.pendingHead ? this.send(undefined) : true;
  }
}

const crlf = Buffer.from("\r\n");
const crlfLastChunk = Buffer.from("\r\n0\r\n\r\n");
