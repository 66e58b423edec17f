import http, { type IncomingMessage, type ServerResponse } from "node:http";
import http2 from "node:http2";
import net from "node:net";
import type { Hono } from "hono";
import type { AdminState } from "./admin.js";
import { guardAdmin } from "./admin-auth.js";
import { listen } from "./listen.js";

type AdminRequest = IncomingMessage | http2.Http2ServerRequest;
type AdminResponse = ServerResponse | http2.Http2ServerResponse;
type AdminHandler = (req: AdminRequest, res: AdminResponse) => void;

/** Every AdminService method's path starts with this: the service's full name (admin.proto). */
const adminServicePrefix = "/kedge.admin.v1.AdminService/";

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
export async function startAdminListener(app: Hono, state: Pick<AdminState, "runtime" | "backends" | "audit">, host: string, port: number): Promise<{ port: number; close: () => void }> {
  const fallback = honoHandler(app);
  const runtime = () => state.runtime();
  // The AdminService handler is loaded on its first call: Connect, its Node adapter (with
  // node:zlib) and the admin descriptors cost start-up time and idle memory that only `kedge admin`
  // callers need. Probes and scrapers (/_healthz, /metrics) are answered by the Hono app without it.
  let service: Promise<AdminHandler> | undefined;
  const loadService = () => (service ??= import("./admin-api.js").then((api) => api.adminServiceHandler(state, fallback)));
  const handler = guardAdmin(runtime, host, (req, res) => {
    if (!req.url?.startsWith(adminServicePrefix)) return void fallback(req, res);
    loadService().then(
      (serve) => serve(req, res),
      (e: Error) => {
        service = undefined; // the next call tries again
        (res as ServerResponse).writeHead(500, { "content-type": "text/plain; charset=utf-8" });
        res.end(`admin service unavailable: ${e.message}\n`);
      },
    );
  }, state.audit);
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
