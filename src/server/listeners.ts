import { readFileSync } from "node:fs";
import http, { type IncomingMessage, type ServerResponse } from "node:http";
import http2, { type Http2Session, type IncomingHttpHeaders, type ServerHttp2Stream } from "node:http2";
import type { AddressInfo, Socket } from "node:net";
import tls from "node:tls";
import type { ServerConfig } from "../gen/kedge/config/v1/server_pb.js";
import { durationMs } from "../backend/http-backend.js";
import { log } from "../observe/log.js";
import { proxyGrpc } from "../proxy/grpc.js";
import { proxyHttp, sendError, type ProxyContext } from "../proxy/http.js";
import { KedgeError } from "../errors.js";
import { H1Response, h1Request } from "./ingress-h1.js";
import { H2Response, h2Request } from "./ingress-h2.js";

export interface DataListeners {
  /** Bound ports, by listener name (tls, http). */
  readonly ports: Record<string, number>;
  /** Serves new TLS handshakes with the cert and key the config names now (rotation without restart). Throws if unreadable. */
  reloadTls(server: ServerConfig): void;
  /** Stops accepting, lets in-flight requests finish, closes idle client connections. */
  stopAccepting(): void;
  closeAll(): void;
}

const defaultClientIdleMs = 120_000;

/** gRPC by content-type; grpc-web stays HTTP (browsers' calls are plain HTTP requests to backends that speak it). */
function isGrpc(headers: IncomingHttpHeaders): boolean {
  const ct = headers["content-type"];
  return ct !== undefined && ct.startsWith("application/grpc") && !ct.startsWith("application/grpc-web");
}

function tlsFiles(server: ServerConfig): { cert: Buffer; key: Buffer } {
  return { cert: readFileSync(server.tlsCertFile), key: readFileSync(server.tlsKeyFile) };
}

function listen(server: { listen: (port: number, host: string, cb: () => void) => unknown; once: (e: string, cb: (err: Error) => void) => unknown; address: () => AddressInfo | string | null }, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve((server.address() as AddressInfo).port));
  });
}

function h1Server(ctx: ProxyContext, scheme: "http" | "https", port: () => number, idleMs: number, maxHeaderSize: number): http.Server {
  const server = http.createServer({ maxHeaderSize }, (req: IncomingMessage, res: ServerResponse) => {
    if (req.method === "CONNECT") {
      sendError(new H1Response(res), new KedgeError("bad-request", 405, "CONNECT is not supported on this listener"), "");
      return;
    }
    proxyHttp(ctx, h1Request(req, scheme, port()), new H1Response(res));
  });
  server.keepAliveTimeout = idleMs;
  server.headersTimeout = Math.min(60_000, idleMs);
  return server;
}

/**
 * Starts the TLS port (ALPN h2 + http/1.1 on one port, dispatched per connection) and the
 * optional plaintext HTTP/1.1 port. node:http2 and Bun.serve cannot share a port, hence the
 * TLS server feeding sockets to an h2 and an h1 server by the negotiated protocol.
 */
export async function startDataListeners(server: ServerConfig, ctx: ProxyContext): Promise<DataListeners> {
  const bind = server.bindAddress || "0.0.0.0";
  const idleMs = durationMs(server.clientIdleTimeout, defaultClientIdleMs);
  const maxHeaderSize = server.maxRequestHeaderBytes || 16_384;
  const ports: Record<string, number> = {};
  const closers: Array<{ stop: () => void; kill: () => void }> = [];
  let tlsServer: tls.Server | undefined;

  if (server.httpTlsPort !== undefined) {
    const h1 = h1Server(ctx, "https", () => ports.tls, idleMs, maxHeaderSize);
    const h2 = http2.createServer({ maxSessionMemory: 64 });
    const sessions = new Set<Http2Session>();
    h2.on("session", (session: Http2Session) => {
      sessions.add(session);
      session.on("close", () => sessions.delete(session));
      session.on("error", () => {});
      session.setTimeout(idleMs, () => session.close());
    });
    h2.on("stream", (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, flags: number) => {
      if (isGrpc(headers)) return proxyGrpc(ctx, stream, headers);
      const res = new H2Response(stream);
      if (headers[":method"] === "CONNECT") {
        sendError(res, new KedgeError("bad-request", 405, "CONNECT is not supported on this listener"), "");
        return;
      }
      proxyHttp(ctx, h2Request(stream, headers, flags, ports.tls), res);
    });
    tlsServer = tls.createServer(
      {
        ...tlsFiles(server),
        ALPNProtocols: ["h2", "http/1.1"],
        minVersion: "TLSv1.2",
      },
      (socket: tls.TLSSocket) => {
        socket.on("error", () => {});
        if (socket.alpnProtocol === "h2") h2.emit("connection", socket);
        else h1.emit("connection", socket);
      },
    );
    tlsServer.on("tlsClientError", (err: Error) => log.debug("TLS handshake failed", { error: err.message }));
    ports.tls = await listen(tlsServer, server.httpTlsPort, bind);
    const listening = tlsServer;
    closers.push({
      stop: () => {
        listening.close();
        h1.closeIdleConnections();
        for (const s of sessions) s.close(); // GOAWAY: no new streams, in-flight ones finish
      },
      kill: () => {
        h1.closeAllConnections();
        for (const s of sessions) s.destroy();
      },
    });
  }

  if (server.httpPort !== undefined) {
    const plain = h1Server(ctx, "http", () => ports.http, idleMs, maxHeaderSize);
    plain.on("connection", (socket: Socket) => socket.setNoDelay(true));
    ports.http = await listen(plain, server.httpPort, bind);
    closers.push({
      stop: () => {
        plain.close();
        plain.closeIdleConnections();
      },
      kill: () => plain.closeAllConnections(),
    });
  }

  return {
    ports,
    reloadTls: (next) => tlsServer?.setSecureContext({ ...tlsFiles(next), minVersion: "TLSv1.2" }),
    stopAccepting: () => closers.forEach((c) => c.stop()),
    closeAll: () => closers.forEach((c) => c.kill()),
  };
}
