import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { statusText } from "../net/status-text.js";
import type { KedgeError } from "../errors.js";

/** How a tunnel ended: one side closed or failed, or both were silent for the idle timeout. */
export type TunnelEnd = "closed" | "idle";

export interface SpliceOptions {
  /** Bytes the client sent after its head, before the splice: they go upstream first. */
  head?: Buffer;
  /** An access-log record: gets the bytes each way. */
  counts?: { bytesIn: number; bytesOut: number };
  /** Called once, after both sides are closed. */
  closed?: (end: TunnelEnd) => void;
  /** Closes the tunnel after this long without a byte either way; 0 or absent: never. */
  idleMs?: number;
}

/** Open CONNECT tunnels and switched connections, so a shutdown can close sockets the HTTP server no longer tracks. */
export class Tunnels {
  private readonly open = new Set<Duplex>();

  get size(): number {
    return this.open.size;
  }

  /** Pipes bytes both ways until either side ends or fails or both are idle too long, then closes both. */
  splice(client: Duplex, upstream: Duplex, opts: SpliceOptions = {}): void {
    const { head, counts, closed, idleMs = 0 } = opts;
    this.open.add(client);
    if (head && head.length > 0) {
      upstream.write(head);
      if (counts) counts.bytesIn += head.length;
    }
    let lastActive = performance.now();
    if (counts || idleMs > 0) {
      client.on("data", (chunk: Buffer) => {
        lastActive = performance.now();
        if (counts) counts.bytesIn += chunk.length;
      });
      upstream.on("data", (chunk: Buffer) => {
        lastActive = performance.now();
        if (counts) counts.bytesOut += chunk.length;
      });
    }
    // One timer per tunnel, re-armed for the time left when it fires: no timer work per chunk.
    let timer: ReturnType<typeof setTimeout> | undefined;
    const checkIdle = () => {
      const quiet = performance.now() - lastActive;
      if (quiet >= idleMs) close("idle");
      else timer = setTimeout(checkIdle, idleMs - quiet);
    };
    if (idleMs > 0) timer = setTimeout(checkIdle, idleMs);
    let open = true;
    const close = (end: TunnelEnd) => {
      if (!open) return;
      open = false;
      clearTimeout(timer);
      this.open.delete(client);
      client.destroy();
      upstream.destroy();
      closed?.(end);
    };
    const onClose = () => close("closed");
    client.on("error", onClose).on("close", onClose);
    upstream.on("error", onClose).on("close", onClose);
    client.pipe(upstream);
    upstream.pipe(client);
  }

  closeAll(): void {
    for (const socket of this.open) socket.destroy();
    this.open.clear();
  }
}

/** node:net, loaded by the first tunnel: a kedge that serves no CONNECT never sets it up. */
let net: Promise<typeof import("node:net")> | undefined;

/** A TCP connection, or a rejection after timeoutMs. */
export async function dialTcp(host: string, port: number, timeoutMs: number): Promise<Socket> {
  const { connect } = await (net ??= import("node:net"));
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port });
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
    `HTTP/1.1 ${err.status} ${statusText[err.status] ?? "Error"}\r\n` +
      `content-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
      `${prefix}-error: ${oneLine}\r\n${prefix}-error-type: ${err.type}\r\nx-kedge-request-id: ${requestId}\r\n` +
      (err.retryAfter !== undefined ? `retry-after: ${err.retryAfter}\r\n` : "") +
      `connection: close\r\n\r\n${body}`
  );
}

/** The tunnel is open: the 200 a CONNECT client waits for (RFC 9110 §9.3.6). */
export function tunnelEstablished(headers: Record<string, string>): string {
  let head = "HTTP/1.1 200 Connection established\r\n";
  for (const name in headers) head += `${name}: ${headers[name]}\r\n`;
  return `${head}\r\n`;
}
