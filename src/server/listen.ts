import type { IncomingHttpHeaders } from "node:http2";
import type { AddressInfo } from "node:net";

interface Listenable {
  listen: (port: number, host: string, cb: () => void) => unknown;
  once: (e: string, cb: (err: Error) => void) => unknown;
  address: () => AddressInfo | string | null;
}

/** Binds `server` and resolves with the port it got (port 0 picks a free one). */
export function listen(server: Listenable, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve((server.address() as AddressInfo).port));
  });
}

/** gRPC by content-type; grpc-web stays HTTP (browsers' calls are plain HTTP requests to backends that speak it). */
export function isGrpc(headers: IncomingHttpHeaders): boolean {
  const ct = headers["content-type"];
  return ct !== undefined && ct.startsWith("application/grpc") && !ct.startsWith("application/grpc-web");
}
