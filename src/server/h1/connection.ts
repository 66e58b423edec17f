import { asKedgeError, type KedgeError } from "../../errors.js";
import type { IngressRequest, RequestBody as ProxyRequestBody, SwitchedConnection } from "../../proxy/ingress.js";
import { bodyTimeout } from "../connection-guard.js";
import { RequestBody, type BodySource } from "./request-body.js";
import { readRequestHead, type HeadLimits, type RequestHead } from "./request-head.js";
import { H1RawResponse, type ResponseOutput } from "./response.js";
import { TunnelSocket, type TunnelOutput } from "../../net/tunnel-socket.js";
import type { ClientTransport, TransportEvents } from "./transport.js";

/** What a connection hands its requests to, and the settings it runs by. */
export interface H1Handler {
  readonly limits: HeadLimits;
  readonly scheme: "http" | "https";
  readonly localPort: number;
  readonly headTimeoutMs: number;
  readonly idleMs: number;
  /** Proxies one request. */
  request(req: IngressRequest, res: H1RawResponse): void;
  /** A CONNECT request: the tunnel owns the connection from here on. */
  connect(head: RequestHead, tunnel: TunnelSocket, rest: Buffer, client: ClientTransport): void;
  /** A head that cannot be served: answered, then the connection closes. */
  refuse(conn: H1ServerConnection, err: KedgeError): void;
  /** The listener is draining: finish the request in flight, take no more. */
  draining: boolean;
}

/**
 * A `deadline` meaning: the keep-alive wait for the next request began. The listener's sweep makes
 * it a time (now + client_idle_timeout) when it next runs, so that a response costs no clock read;
 * an idle connection is closed at most one sweep later than it would be counting from the response.
 */
export const keepAliveStarted = -1;

const continueLine = Buffer.from("HTTP/1.1 100 Continue\r\n\r\n");
// Pipelined bytes kept while a response is in flight before the client is made to wait.
const maxBufferedAhead = 65_536;
const lingerMs = 5_000;
// How long the rest of a body answered early is waited for before the connection is not worth keeping.
const dropMs = 5_000;

/**
 * One client connection on a kedge-owned HTTP/1.1 listener (Bun.listen). Requests are read one
 * at a time: a pipelined request waits in the buffer until the previous response is complete,
 * which is what keeps responses in order. Hand-written because node:http's per-request machinery
 * costs more CPU in Bun than nginx's whole proxy (bench/README.md, "The Bun socket floor").
 */
export class H1ServerConnection implements ResponseOutput, TunnelOutput, TransportEvents, BodySource {
  closed = false;
  /** Its slot in its listener's connections (net/members.ts). */
  memberSlot = -1;
  /** When the head in progress, or the next one on an idle connection, must have arrived (performance.now()); 0: none; or keepAliveStarted. */
  deadline = 0;
  /** What a missed deadline means: 408 for a head begun and not finished, a quiet close for an idle keep-alive. */
  headStarted = false;
  /** No request head has arrived yet: a missed deadline is a 408 (slowloris, or a connection opened and left). */
  fresh = true;
  private input: Buffer | undefined;
  private body: RequestBody | undefined;
  private response: H1RawResponse | undefined;
  private drainWaiters: Array<() => void> = [];
  /** A write was queued and no drain has come since. */
  private blocked = false;
  private endWhenFlushed = false;
  private processing = false;
  private tunnel: TunnelSocket | undefined;
  private paused = false;
  /** The client half-closed: answer what it sent, then close. */
  private peerEnded = false;

  constructor(
    private readonly transport: ClientTransport,
    private readonly handler: H1Handler,
  ) {
    this.deadline = performance.now() + handler.headTimeoutMs;
  }

  get idle(): boolean {
    return !this.response && !this.headStarted && !this.body && !this.tunnel;
  }

  onData(data: Buffer): void {
    if (this.tunnel) return this.tunnel.received(data);
    if (this.endWhenFlushed) return; // closing: nothing more is read
    this.input = this.input ? Buffer.concat([this.input, data]) : data;
    this.process();
  }

  private process(): void {
    if (this.processing) return;
    this.processing = true;
    try {
      while (this.input && !this.closed && !this.endWhenFlushed) {
        if (this.body && !this.body.done) {
          const used = this.body.feed(this.input);
          this.consume(used);
          if (!this.body.done) {
            if (this.response) this.awaitBody();
            break;
          }
        }
        this.body = undefined;
        if (!this.input) break;
        if (this.response) {
          // The next pipelined request waits for this response; a client far ahead waits in TCP.
          if (this.input.length > maxBufferedAhead) this.pause();
          break;
        }
        if (!this.readHead()) break;
      }
    } catch (e) {
      this.refuse(asKedgeError(e));
    } finally {
      this.processing = false;
    }
    // A client that half-closed in the middle of a head has nothing more to send.
    if (this.peerEnded && !this.response && !this.closed) this.closeWhenFlushed();
  }

  /** Reads and starts one request; false when the head is incomplete (or refused). */
  private readHead(): boolean {
    let input = this.input!;
    // RFC 9112 §2.2: empty lines before a request line are ignored.
    let skip = 0;
    while (skip + 1 < input.length && input[skip] === 13 && input[skip + 1] === 10) skip += 2;
    if (skip > 0) {
      this.consume(skip);
      if (!this.input) return false;
      input = this.input;
    }
    const limits = this.handler.limits;
    const head = readRequestHead(input, input.length, limits);
    if (head === -1) {
      if (!this.headStarted) {
        this.headStarted = true;
        this.deadline = performance.now() + this.handler.headTimeoutMs;
      }
      return false;
    }
    if (!("method" in head)) return this.refuse(head), false;
    this.consume(head.length);
    this.fresh = false;
    this.headStarted = false;
    this.deadline = 0;
    if (head.method === "CONNECT") return this.startTunnel(head), false;
    this.startRequest(head);
    return true;
  }

  private startRequest(head: RequestHead): void {
    const keepAlive = head.keepAlive && !this.handler.draining;
    const res = new H1RawResponse(this, head.versionMinor, keepAlive, head.method === "HEAD");
    const hasBody = head.contentLength !== 0;
    let body: ProxyRequestBody;
    if (hasBody) {
      this.body = new RequestBody(this, head.contentLength, head.expectContinue);
      body = this.body;
      // Framing errors in what already arrived are refused before anything goes upstream.
      if (this.input) this.consume(this.body.feed(this.input));
    } else body = emptyBody;
    const req: IngressRequest = {
      protocol: "http/1.1",
      method: head.method,
      target: head.target,
      authority: (head.headers.host as string | undefined) ?? "",
      scheme: this.handler.scheme,
      localPort: this.handler.localPort,
      headers: head.headers,
      remoteAddress: this.transport.remoteAddress,
      socket: this.transport.peer,
      hasBody,
      contentLength: head.contentLength,
      forwardLines: head.forwardLines,
      upgrade: head.upgrade,
      body,
    };
    this.response = res;
    if (this.body && !this.body.done) this.awaitBody();
    this.handler.request(req, res);
  }

  /**
   * A body is being read for the request in flight: the client may go silent for client_idle_timeout
   * at most, counted while kedge wants its bytes (not while a slow backend holds it paused, nor while
   * it waits for a 100 kedge has not sent).
   */
  private awaitBody(): void {
    this.deadline = this.paused || this.body!.continueAwaited ? 0 : performance.now() + this.handler.idleMs;
  }

  // BodySource
  bodyEnded(dropped: boolean): void {
    if (dropped) this.dropped();
    else this.deadline = 0;
    // A stream that ended never asks for more: undo a pause its last chunk caused.
    this.resume();
  }

  private startTunnel(head: RequestHead): void {
    this.response = undefined;
    this.tunnel = new TunnelSocket(this);
    const rest = this.input ?? Buffer.alloc(0);
    this.input = undefined;
    this.handler.connect(head, this.tunnel, rest, this.transport);
  }

  /** The response in flight switched protocols (a 101): from here on the connection is a byte stream. */
  switchProtocols(): SwitchedConnection {
    this.response = undefined;
    this.deadline = 0;
    this.tunnel = new TunnelSocket(this);
    const rest = this.input;
    this.input = undefined;
    return { socket: this.tunnel, rest };
  }

  private consume(n: number): void {
    if (!this.input) return;
    this.input = n >= this.input.length ? undefined : this.input.subarray(n);
  }

  private refuse(err: KedgeError): void {
    this.input = undefined;
    this.headStarted = false;
    this.deadline = 0;
    this.body?.abandon();
    const inFlight = this.response;
    if (inFlight) {
      // Broken body framing mid-request: the exchange stops as if the client had gone.
      this.response = undefined;
      inFlight.connectionClosed();
      if (inFlight.headersSent) return this.destroy();
    }
    this.handler.refuse(this, err);
  }

  pause(): void {
    if (this.paused) return;
    this.paused = true;
    this.transport.pause();
    if (this.response && this.body) this.deadline = 0;
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.transport.resume();
    if (this.response && this.body && !this.body.done) this.awaitBody();
  }

  // ResponseOutput, for the response in flight.
  get draining(): boolean {
    return this.handler.draining;
  }

  sendContinue(): void {
    const body = this.body;
    if (!body?.continueAwaited || this.closed) return;
    body.continueAwaited = false;
    this.send(continueLine);
    if (!body.done) this.awaitBody();
  }

  reusable(): boolean {
    return this.body?.reusable() ?? true;
  }

  send(bytes: Uint8Array): boolean {
    if (this.closed) return true;
    if (this.transport.write(bytes)) return true;
    this.blocked = true;
    return false;
  }

  sendScratch(length: number): boolean {
    if (this.closed) return true;
    if (this.transport.writeScratch(length)) return true;
    this.blocked = true;
    return false;
  }

  onceDrain(cb: () => void): void {
    if (!this.blocked) cb();
    else this.drainWaiters.push(cb);
  }

  responseDone(reuse: boolean): void {
    this.response = undefined;
    if (!reuse || this.handler.draining) return this.closeWhenFlushed();
    if (this.peerEnded && !this.input) return this.closeWhenFlushed();
    if (this.body && !this.body.done) return this.dropBody();
    this.deadline = keepAliveStarted;
    if (!this.body) this.resume();
    if (this.input) queueMicrotask(() => this.process());
  }

  /** The request was answered before its body was all read: the rest is read off and dropped, bounded in bytes and time. */
  private dropBody(): void {
    this.body!.drop();
    this.deadline = performance.now() + dropMs;
    this.resume();
  }

  /** The dropped rest of a body has all been read: the connection waits for its next request. */
  private dropped(): void {
    if (this.endWhenFlushed) return;
    if (this.handler.draining || (this.peerEnded && !this.input)) return this.closeWhenFlushed();
    this.deadline = performance.now() + this.handler.idleMs;
  }

  /**
   * Sends what is queued, then closes: the answer to a refused request, the last of a drain. The
   * client gets lingerMs to read it and close its side before the connection is cut.
   */
  closeWhenFlushed(): void {
    if (this.endWhenFlushed) return;
    this.endWhenFlushed = true;
    this.input = undefined;
    this.deadline = performance.now() + lingerMs;
    this.transport.end();
  }

  /** The deadline passed. True when a request head is late (a 408); otherwise it closed what it had to. */
  expired(): boolean {
    this.deadline = 0;
    if (this.endWhenFlushed) {
      this.destroy();
      return false;
    }
    if (this.response && this.body && !this.body.done) {
      this.refuse(bodyTimeout);
      return false;
    }
    if (this.headStarted || this.fresh) return true;
    // Idle past its keep-alive time, or still sending the rest of a body answered long ago.
    if (this.idle || (!this.response && this.body)) this.closeWhenFlushed();
    return false;
  }

  destroy(): void {
    if (this.closed) return;
    this.transport.terminate();
    this.onClose();
  }

  onDrain(): void {
    this.blocked = false;
    if (this.tunnel) this.tunnel.drained();
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const cb of waiters) cb();
  }

  onClose(): void {
    if (this.closed) return;
    this.closed = true;
    this.input = undefined;
    this.drainWaiters = [];
    this.body?.abandon();
    this.response?.connectionClosed();
    this.response = undefined;
    this.tunnel?.connectionClosed();
  }

  /** The client half-closed: it may still read the answer to what it sent (httpAllowHalfOpen). */
  onEnd(): void {
    this.peerEnded = true;
    // The rest of a body can never come now: the exchange ends as if the client had gone.
    if (this.body && !this.body.done) return this.response ? this.destroy() : this.closeWhenFlushed();
    if (!this.response) this.closeWhenFlushed();
  }
}

const emptyBody: ProxyRequestBody = {
  read(reader) {
    reader.bodyEnd();
  },
  pause() {},
  resume() {},
};
