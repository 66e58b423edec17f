import http from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { gzipSync } from "node:zlib";

export interface SeenRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  bodyBytes: number;
}

export interface Upstream {
  port: number;
  name: string;
  seen: SeenRequest[];
  /** TCP connections accepted so far. */
  connections(): number;
  close(): Promise<void>;
}

/**
 * A real HTTP/1.1 backend (node:http) that answers JSON describing what it received: method, URL,
 * headers and body size, plus its own name so load balancing is visible. Special paths:
 * /echo streams the request body back, /slow-chunks writes chunks with pauses, /big?bytes=N
 * streams N bytes, /status/N answers N, /redirect?to=URL&status=N redirects (302 by default),
 * /gzip?text=T answers T gzip-encoded, /hang never answers, /die sends half a body then resets.
 * `port`: listen there (a backend restarted where it was), else on a free one.
 */
export async function startUpstream(name: string, options: { tls?: { cert: string; key: string; ca?: string; requestCert?: boolean }; port?: number } = {}): Promise<Upstream> {
  const seen: SeenRequest[] = [];
  const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const url = new URL(req.url ?? "/", "http://x");
    if (url.pathname === "/echo") {
      res.writeHead(200, { "content-type": "application/octet-stream", "x-upstream": name });
      req.pipe(res);
      return;
    }
    let bodyBytes = 0;
    req.on("data", (c: Buffer) => (bodyBytes += c.length));
    req.on("end", async () => {
      seen.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers, bodyBytes });
      if (url.pathname === "/hang") return;
      if (url.pathname === "/die") {
        res.writeHead(200, { "content-length": "1000" });
        res.write("x".repeat(100));
        setTimeout(() => res.socket?.destroy(), 20);
        return;
      }
      if (url.pathname === "/gzip") {
        res.writeHead(200, { "content-type": "text/plain", "content-encoding": "gzip", "x-upstream": name });
        res.end(gzipSync(url.searchParams.get("text") ?? ""));
        return;
      }
      if (url.pathname === "/redirect") {
        res.writeHead(Number(url.searchParams.get("status") ?? 302), { location: url.searchParams.get("to") ?? "/", "x-upstream": name });
        res.end();
        return;
      }
      if (url.pathname.startsWith("/status/")) {
        const status = Number(url.pathname.slice(8));
        res.writeHead(status, { "x-upstream": name });
        res.end(status === 204 || status === 304 ? undefined : `status ${status}\n`);
        return;
      }
      if (url.pathname === "/slow-chunks") {
        res.writeHead(200, { "content-type": "text/plain", "x-upstream": name });
        const n = Number(url.searchParams.get("n") ?? 3);
        for (let i = 0; i < n; i++) {
          res.write(`chunk ${i}\n`);
          await Bun.sleep(Number(url.searchParams.get("ms") ?? 300));
        }
        res.end();
        return;
      }
      if (url.pathname === "/big") {
        const total = Number(url.searchParams.get("bytes") ?? 1 << 20);
        res.writeHead(200, { "content-type": "application/octet-stream", "content-length": String(total), "x-upstream": name });
        const block = Buffer.alloc(64 * 1024, 97);
        let sent = 0;
        const pump = () => {
          while (sent < total) {
            const n = Math.min(block.length, total - sent);
            sent += n;
            if (!res.write(n === block.length ? block : block.subarray(0, n))) return void res.once("drain", pump);
          }
          res.end();
        };
        pump();
        return;
      }
      const body = JSON.stringify({ upstream: name, method: req.method, url: req.url, headers: req.headers, bodyBytes });
      res.writeHead(200, { "content-type": "application/json", "x-upstream": name, "set-cookie": ["a=1", "b=2"] });
      res.end(body);
    });
  };
  const server = options.tls ? https.createServer({ ...options.tls }, handler) : http.createServer(handler);
  let connections = 0;
  server.on(options.tls ? "secureConnection" : "connection", () => connections++);
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, "127.0.0.1", resolve));
  return {
    port: (server.address() as AddressInfo).port,
    name,
    seen,
    connections: () => connections,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
}

/** A response body as loosely typed JSON, for assertions on what the upstream echoed. */
export const json = (res: Response): Promise<any> => res.json();
