import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from "node:http";
import type { IngressRequest, IngressResponse } from "../proxy/ingress.js";

/** Adapts node:http's request to the proxy's view. */
export function h1Request(req: IncomingMessage, scheme: "http" | "https", localPort: number): IngressRequest {
  const headers = req.headers;
  const lengthHeader = headers["content-length"];
  const chunked = headers["transfer-encoding"] !== undefined;
  const contentLength = chunked ? -1 : lengthHeader !== undefined ? Number(lengthHeader) : 0;
  return {
    protocol: "http/1.1",
    method: req.method ?? "GET",
    target: req.url ?? "/",
    authority: headers.host ?? "",
    scheme,
    localPort,
    headers,
    remoteAddress: req.socket.remoteAddress ?? "",
    socket: req.socket,
    hasBody: chunked || contentLength > 0,
    contentLength,
    body: req,
  };
}

export class H1Response implements IngressResponse {
  constructor(private readonly res: ServerResponse) {}

  get headersSent(): boolean {
    return this.res.headersSent;
  }

  get gone(): boolean {
    return this.res.destroyed;
  }

  writeHead(status: number, headers: OutgoingHttpHeaders): void {
    if (!this.res.destroyed) this.res.writeHead(status, headers);
  }

  write(chunk: Uint8Array): boolean {
    return this.res.destroyed ? true : this.res.write(chunk);
  }

  onceDrain(cb: () => void): void {
    this.res.once("drain", cb);
  }

  end(last?: Uint8Array): void {
    if (!this.res.destroyed) this.res.end(last);
  }

  abort(): void {
    // Closing the connection mid-body is how HTTP/1.1 tells a client the response is incomplete.
    this.res.destroy();
    this.res.socket?.destroy();
  }

  lastOnConnection(): void {
    this.res.shouldKeepAlive = false;
  }

  onGone(cb: () => void): void {
    this.res.once("close", () => {
      if (!this.res.writableFinished) cb();
    });
  }
}
