import type { OutgoingHttpHeaders } from "node:http";
import type { IncomingHttpHeaders } from "node:http2";
import { KedgeError } from "../errors.js";
import { ErrorCode } from "../h2/frames.js";
import type { ClientStream, ClientStreamHandler } from "../proxy/client-stream.js";
import { sendError } from "../proxy/error-response.js";
import { exchange } from "../proxy/exchange.js";
import { proxyGrpc } from "../proxy/grpc.js";
import type { ProxyContext } from "../proxy/http.js";
import type { HttpProxy } from "../proxy/http-proxy.js";
import type { BodyReader, GoneListener, IngressRequest, IngressResponse, RequestBody } from "../proxy/ingress.js";
import type { HeadLines } from "../net/hop-headers.js";
import { isGrpc } from "./listen.js";

const addressOf = new WeakMap<object, string>();

/** The client's address, read once per connection: a node socket's getter costs ~160 ns a call in Bun. */
function peerAddress(socket: { remoteAddress?: string } | undefined | null): string {
  if (!socket) return "";
  let address = addressOf.get(socket);
  if (address === undefined) {
    address = socket.remoteAddress ?? "";
    // Not yet known (a socket still connecting) is not remembered.
    if (address) addressOf.set(socket, address);
  }
  return address;
}

/** Adapts a client's HTTP/2 stream to the proxy's request; its body is read through `body` (the stream's handler). */
function h2Request(stream: ClientStream, headers: IncomingHttpHeaders, localPort: number, body: RequestBody): IngressRequest {
  const lengthHeader = headers["content-length"];
  const ended = stream.endAfterHeaders;
  const socket = stream.session?.socket ?? undefined;
  return {
    protocol: "h2",
    method: (headers[":method"] as string) ?? "GET",
    target: (headers[":path"] as string) ?? "/",
    authority: ((headers[":authority"] ?? headers.host) as string) ?? "",
    scheme: headers[":scheme"] === "http" ? "http" : "https",
    localPort,
    headers,
    remoteAddress: peerAddress(socket),
    socket,
    hasBody: !ended,
    contentLength: ended ? 0 : lengthHeader !== undefined ? Number(lengthHeader) : -1,
    body,
  };
}

/**
 * An HTTP exchange's reading side of a client stream, as the stream's handler: the request body,
 * and the drain and close its H2Response waits for. Body bytes nobody reads (the answer was given
 * first) are dropped.
 */
class H2RequestBody implements RequestBody, ClientStreamHandler {
  private reader: BodyReader | undefined;
  onDrain: (() => void) | undefined;
  onGone: GoneListener | undefined;

  /** Becomes the stream's handler; the body waits until the exchange reads it. */
  constructor(private readonly stream: ClientStream) {
    stream.pause();
    stream.handle(this);
  }

  read(reader: BodyReader): void {
    this.reader = reader;
    this.stream.resume();
  }

  pause(): void {
    this.stream.pause();
  }

  resume(): void {
    this.stream.resume();
  }

  data(chunk: Buffer): void {
    this.reader?.bodyData(chunk);
  }

  end(): void {
    this.reader?.bodyEnd();
  }

  close(): void {
    if (this.onGone !== undefined && !this.stream.writableFinished) this.onGone.clientGone();
  }

  drain(): void {
    const cb = this.onDrain;
    this.onDrain = undefined;
    cb?.();
  }
}

/** The response on a client stream; without the request's body (a refusal) nothing waits for drain or close. */
export class H2Response implements IngressResponse {
  private sent = false;

  constructor(
    private readonly stream: ClientStream,
    private readonly body?: H2RequestBody,
  ) {}

  lastOnConnection(): void {}

  get headersSent(): boolean {
    return this.sent;
  }

  get gone(): boolean {
    return this.stream.destroyed || this.stream.closed;
  }

  writeHead(status: number, headers: OutgoingHttpHeaders): void {
    // respond() throws once the client reset the stream.
    if (this.gone) return;
    this.sent = true;
    headers[":status"] = status;
    this.stream.respond(headers);
  }

  writeHeadLines(status: number, head: HeadLines): void {
    if (this.gone) return;
    this.sent = true;
    this.stream.respondHead(status, head);
  }

  write(chunk: Uint8Array): boolean {
    return this.gone ? true : this.stream.write(chunk);
  }

  onceDrain(cb: () => void): void {
    if (this.body) this.body.onDrain = cb;
  }

  end(last?: Uint8Array): void {
    if (!this.gone) this.stream.end(last);
  }

  abort(): void {
    if (!this.gone) this.stream.close(ErrorCode.INTERNAL_ERROR);
  }

  onGone(listener: GoneListener): void {
    if (this.body) this.body.onGone = listener;
  }
}

/** kedge's HTTP/2 requests: gRPC (by content-type) to the gRPC proxy, the rest to the HTTP proxy. */
export function serveKedgeStream(ctx: ProxyContext, http: HttpProxy, localPort: () => number): (stream: ClientStream, headers: IncomingHttpHeaders) => void {
  return (stream, headers) => {
    if (isGrpc(headers)) return proxyGrpc(ctx, stream, headers);
    const body = new H2RequestBody(stream);
    const res = new H2Response(stream, body);
    if (headers[":method"] === "CONNECT") {
      // winch tunnels over HTTP/1.1; HTTP/2 CONNECT (RFC 9113 §8.5) is not offered.
      return sendError(res, new KedgeError("bad-request", 405, "CONNECT over HTTP/2 is not supported: use HTTP/1.1"), "");
    }
    exchange(http, h2Request(stream, headers, localPort(), body), res);
  };
}
