import http from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";

export interface FlakyUpstream {
  port: number;
  name: string;
  /** What every request but the health path gets. */
  status: number;
  /** What the health path gets. */
  healthStatus: number;
  /** Requests answered, the health path's apart. */
  served: number;
  healthChecks: number;
  /** Connections accepted so far. */
  connections: number;
  close(): Promise<void>;
}

/**
 * A real HTTP/1.1 backend whose answers a test switches: `status` for requests (x-upstream names
 * it), `healthStatus` for GET /healthz. Plain, or TLS with `tls`.
 */
export async function startFlakyUpstream(name: string, tls?: { cert: string; key: string }): Promise<FlakyUpstream> {
  const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
    req.resume();
    req.on("end", () => {
      if (req.url === "/healthz") {
        up.healthChecks++;
        res.writeHead(up.healthStatus, { "x-upstream": name });
        return res.end(`health ${up.healthStatus}\n`);
      }
      up.served++;
      res.writeHead(up.status, { "x-upstream": name });
      res.end(`${name} ${up.status}\n`);
    });
  };
  const server = tls ? https.createServer(tls, handler) : http.createServer(handler);
  server.on(tls ? "secureConnection" : "connection", () => up.connections++);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const up: FlakyUpstream = {
    port: (server.address() as AddressInfo).port,
    name,
    status: 200,
    healthStatus: 200,
    served: 0,
    healthChecks: 0,
    connections: 0,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
  return up;
}
