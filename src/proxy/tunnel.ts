import net from "node:net";
import type { Duplex } from "node:stream";
import { STATUS_CODES } from "node:http";
import type { KedgeError } from "../errors.js";

/** Open CONNECT tunnels, so a shutdown can close sockets the HTTP server no longer tracks. */
export class Tunnels {
  private readonly open = new Set<Duplex>();

  get size(): number {
    return this.open.size;
  }

  /**
   * Pipes bytes both ways until either side ends or fails, then closes both and calls `closed`
   * once; `counts` (an access-log record) gets the bytes each way.
   */
  splice(client: Duplex, upstream: Duplex, head: Buffer | undefined, counts?: { bytesIn: number; bytesOut: number }, closed?: () => void): void {
    this.open.add(client);
    if (head && head.length > 0) {
      upstream.write(head);
      if (counts) counts.bytesIn += head.length;
    }
    if (counts) {
      client.on("data", (chunk: Buffer) => (counts.bytesIn += chunk.length));
      upstream.on("data", (chunk: Buffer) => (counts.bytesOut += chunk.length));
    }
    let open = true;
    const close = () => {
      if (!open) return;
      open = false;
      this.open.delete(client);
      client.destroy();
      upstream.destroy();
      closed?.();
    };
    client.on("error", close).on("close", close);
    upstream.on("error", close).on("close", close);
    client.pipe(upstream);
    upstream.pipe(client);
  }

  closeAll(): void {
    for (const socket of this.open) socket.destroy();
    this.open.clear();
  }
}

/** A TCP connection, or a rejection after timeoutMs. */
export function dialTcp(host: string, port: number, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`dial ${host}:${port} timed out`));
    }, timeoutMs);
    socket.once("connect", () => {
      clearTimeout(timer);
      socket.setNoDelay(true);
      socket.setKeepAlive(true, 30_000);
      resolve(socket);
    });
    socket.once("error", (err) => {
      clearTimeout(timer);
      reject(new Error(`dial ${host}:${port}: ${err.message}`));
    });
  });
}

/** An error response written straight on the connection (a refused CONNECT, a head the parser rejected), then close. */
export function writeRawError(socket: Duplex, err: KedgeError, requestId: string, prefix: "x-kedge" | "x-winch"): void {
  if (socket.destroyed) return;
  socket.end(rawErrorResponse(err, requestId, prefix));
}

/** The error contract as a complete HTTP/1.1 response that closes the connection. */
export function rawErrorResponse(err: KedgeError, requestId: string, prefix: "x-kedge" | "x-winch"): string {
  const body = `${err.message}\n`;
  const oneLine = err.message.replace(/[\r\n]/g, " ");
  return (
    `HTTP/1.1 ${err.status} ${STATUS_CODES[err.status] ?? "Error"}\r\n` +
      `content-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
      `${prefix}-error: ${oneLine}\r\n${prefix}-error-type: ${err.type}\r\nx-kedge-request-id: ${requestId}\r\nconnection: close\r\n\r\n${body}`
  );
}

/** The tunnel is open: the 200 a CONNECT client waits for (RFC 9110 §9.3.6). */
export function tunnelEstablished(headers: Record<string, string>): string {
  let head = "HTTP/1.1 200 Connection established\r\n";
  for (const name in headers) head += `${name}: ${headers[name]}\r\n`;
  return `${head}\r\n`;
}
