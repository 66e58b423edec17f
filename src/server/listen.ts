import type { IncomingHttpHeaders } from "node:http2";
import type { AddressInfo } from "node:net";

interface Listenable {
  listen: (options: { port: number; host: string; reusePort?: boolean }, cb: () => void) => unknown;
  once: (e: string, cb: (err: Error) => void) => unknown;
  address: () => AddressInfo | string | null;
}

/**
 * Binds `server` and resolves with the port it got (port 0 picks a free one). With `reusePort`
 * (SO_REUSEPORT) every kedge worker binds the same port and the kernel spreads connections.
 */
export function listen(server: Listenable, port: number, host: string, reusePort = false): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen({ port, host, reusePort }, () => resolve((server.address() as AddressInfo).port));
  });
}

/** gRPC by content-type; grpc-web stays HTTP (browsers' calls are plain HTTP requests to backends that speak it). */
export function isGrpc(headers: IncomingHttpHeaders): boolean {
  const ct = headers["content-type"];
  return ct !== undefined && ct.startsWith("application/grpc") && !ct.startsWith("application/grpc-web");
}
