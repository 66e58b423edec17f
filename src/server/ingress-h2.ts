import { constants, type IncomingHttpHeaders, type ServerHttp2Stream } from "node:http2";
import type { OutgoingHttpHeaders } from "node:http";
import type { IngressRequest, IngressResponse } from "../proxy/ingress.js";

const addressOf = new WeakMap<object, string>();

/** The client's address, read once per connection: a node socket's getter costs ~160 ns a call in Bun. */
function peerAddress(socket: { remoteAddress?: string } | undefined): string {
  if (!socket) return "";
  let address = addressOf.get(socket);
  if (address === undefined) {
    address = socket.remoteAddress ?? "";
    // Not yet known (a socket still connecting) is not remembered.
    if (address) addressOf.set(socket, address);
  }
  return address;
}

/** Adapts a raw node:http2 stream (never the compat API: it costs ~2× per request). */
export function h2Request(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, flags: number, localPort: number): IngressRequest {
  const lengthHeader = headers["content-length"];
  const ended = (flags & constants.NGHTTP2_FLAG_END_STREAM) !== 0 || stream.endAfterHeaders;
  return {
    protocol: "h2",
    method: (headers[":method"] as string) ?? "GET",
    target: (headers[":path"] as string) ?? "/",
    authority: ((headers[":authority"] ?? headers.host) as string) ?? "",
    scheme: headers[":scheme"] === "http" ? "http" : "https",
    localPort,
    headers,
    remoteAddress: peerAddress(stream.session?.socket),
    socket: stream.session?.socket,
    hasBody: !ended,
    contentLength: ended ? 0 : lengthHeader !== undefined ? Number(lengthHeader) : -1,
    body: stream,
  };
}

export class H2Response implements IngressResponse {
  private sent = false;

  constructor(private readonly stream: ServerHttp2Stream) {
    // An unhandled stream error would crash the process (client resets are routine).
    stream.on("error", () => {});
  }

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

  write(chunk: Uint8Array): boolean {
    return this.gone ? true : this.stream.write(chunk);
  }

  onceDrain(cb: () => void): void {
    this.stream.once("drain", cb);
  }

  end(last?: Uint8Array): void {
    if (!this.gone) this.stream.end(last);
  }

  abort(): void {
    if (!this.gone) this.stream.close(constants.NGHTTP2_INTERNAL_ERROR);
  }

  onGone(cb: () => void): void {
    this.stream.once("close", () => {
      if (!this.stream.writableFinished) cb();
    });
  }
}
