import http, { type IncomingMessage, type ServerResponse } from "node:http";
import http2 from "node:http2";
import net from "node:net";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import type { Hono } from "hono";
import type { Runtime } from "../runtime.js";
import { adminRoutes } from "./admin-api.js";
import { guardAdmin } from "./admin-auth.js";
import { listen } from "./listen.js";

/** Hands a node request to the Hono app (admin traffic is light, so the Fetch conversion is fine here). */
function honoHandler(app: Hono) {
  return async (req: IncomingMessage | http2.Http2ServerRequest, res: ServerResponse | http2.Http2ServerResponse) => {
    const headers = new Headers();
    for (const [k, v] of Object.entries(req.headers)) {
      if (k.startsWith(":") || v === undefined) continue;
      headers.set(k, Array.isArray(v) ? v.join(", ") : v);
    }
    const response = await app.fetch(new Request(`http://admin${req.url}`, { method: req.method, headers }));
    const out: Record<string, string> = {};
    response.headers.forEach((v, k) => (out[k] = v));
    (res as ServerResponse).writeHead(response.status, out);
    res.end(Buffer.from(await response.arrayBuffer()));
  };
}

/**
 * The admin port: kedge.admin.v1.AdminService over Connect, gRPC and gRPC-web (HTTP/1.1 and
 * h2c, since gRPC needs HTTP/2), and everything else (/_healthz, /metrics, …) by the Hono app.
 */
export async function startAdminListener(app: Hono, runtime: () => Runtime, host: string, port: number): Promise<{ port: number; close: () => void }> {
  const handler = guardAdmin(runtime, connectNodeAdapter({ routes: adminRoutes(runtime), fallback: honoHandler(app) as never }) as never);
  const h1 = http.createServer(handler as never);
  const h2 = http2.createServer(handler as never);
  // node:http2 offers allowHTTP1 only with TLS: tell h2c from HTTP/1.1 by the client preface.
  const server = net.createServer((socket) => {
    socket.on("error", () => {});
    socket.once("data", (first: Buffer) => {
      socket.pause();
      socket.unshift(first);
      (first.toString("latin1", 0, 3) === "PRI" ? h2 : h1).emit("connection", socket);
      socket.resume();
    });
  });
  return { port: await listen(server, port, host), close: () => server.close() };
}
