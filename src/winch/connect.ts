import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import tls from "node:tls";
import { asKedgeError, KedgeError } from "../errors.js";
import { log } from "../observe/log.js";
import { dialTcp, writeRawError, tunnelEstablished, type Tunnels } from "../proxy/tunnel.js";
import { requestIdFrom } from "../proxy/request.js";
import { parseHostPort } from "../net/host-port.js";
import { destination, winchRequestId, type WinchContext } from "./context.js";

const connectTimeoutMs = 5_000;
const maxResponseHead = 16_384;

export interface ResponseHeadRead {
  status: number;
  /** The head as received, its blank line included. */
  head: Buffer;
  /** What came after the head in the same reads. */
  rest: Buffer;
}

/** Reads one HTTP/1.1 response head from `socket` (paused after it), or rejects after a timeout; `what` names the request. */
export function readResponseHead(socket: Duplex, what: string): Promise<ResponseHeadRead> {
  return new Promise((resolve, reject) => {
    let buffered = Buffer.alloc(0);
    const timer = setTimeout(() => fail(new Error(`kedge did not answer ${what} in time`)), connectTimeoutMs);
    const fail = (err: Error) => {
      clearTimeout(timer);
      socket.off("data", onData);
      socket.destroy();
      reject(err);
    };
    const onData = (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      const end = buffered.indexOf("\r\n\r\n");
      if (end < 0) {
        if (buffered.length > maxResponseHead) fail(new Error(`kedge's answer to ${what} is too large`));
        return;
      }
      clearTimeout(timer);
      socket.off("data", onData);
      socket.off("error", fail);
      socket.pause();
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(buffered.subarray(0, end).toString("latin1"))?.[1] ?? 0);
      resolve({ status, head: buffered.subarray(0, end + 4), rest: buffered.subarray(end + 4) });
    };
    socket.on("data", onData);
    socket.once("error", fail);
  });
}

/** Opens TLS to the kedge, sends CONNECT with the route's proxy credentials, and resolves with kedge's answer. */
function connectViaKedge(socket: tls.TLSSocket, target: string, headers: Record<string, string>): Promise<ResponseHeadRead> {
  socket.once("secureConnect", () => {
    let request = `CONNECT ${target} HTTP/1.1\r\nhost: ${target}\r\n`;
    for (const name in headers) request += `${name}: ${headers[name]}\r\n`;
    socket.write(`${request}\r\n`);
  });
  return readResponseHead(socket, "CONNECT");
}

/**
 * kedge's answer to the client as kedge wrote it. When the tunnel opened (`opened`), the
 * connections are spliced, `early` (what the client sent past its request head) first; otherwise
 * the rest of the answer follows until kedge closes.
 */
export function relayAnswer(tunnels: Tunnels, client: Duplex, upstream: Duplex, answer: ResponseHeadRead, opened: boolean, early: Buffer): void {
  client.write(answer.head);
  if (answer.rest.length > 0) client.write(answer.rest);
  if (opened) tunnels.splice(client, upstream, { head: early });
  else {
    upstream.pipe(client);
    upstream.on("error", () => client.destroy());
  }
  upstream.resume();
}

/** A request winch refuses itself on the raw connection (CONNECT, upgrades), counted like any other. */
export function refuseRaw(ctx: WinchContext, client: Duplex, label: string, requestId: string, e: unknown): void {
  const err = asKedgeError(e);
  ctx.metrics.proxyErrors.inc([label, err.type]);
  ctx.metrics.httpRequests.inc([label, String(err.status)]);
  writeRawError(client, err, requestId, "x-winch");
}

/**
 * CONNECT to winch (HTTPS_PROXY clients: kubectl, curl https://…). For a mapped host winch opens
 * TLS to the cluster's kedge and asks it for the tunnel, so the client's own TLS runs end to end
 * with the backend and winch terminates nothing it should not. backend_auth cannot apply inside an
 * opaque tunnel; proxy_auth does. Unknown hosts get a plain TCP tunnel, or are refused.
 *
 * A mapped host's port 80 carries plain HTTP, and clients that always CONNECT through a proxy
 * (kubectl exec, attach and port-forward; WebSocket clients) send it that way: `serveInside` hands
 * such a tunnel to winch's own HTTP proxy, so its requests get the route's credentials and upgrades.
 */
export function winchConnect(
  ctx: WinchContext,
  tunnels: Tunnels,
  req: IncomingMessage,
  client: Duplex,
  head: Buffer,
  serveInside?: (client: Duplex, head: Buffer, target: string) => void,
): void {
  const target = req.url ?? "";
  const requestId = requestIdFrom(req.headers, winchRequestId);
  client.on("error", () => {});
  let label = "none";
  const open = async () => {
    const hostPort = /:\d+$/.test(target) ? parseHostPort(target, 0) : undefined;
    if (!hostPort) throw new KedgeError("bad-request", 400, `CONNECT needs host:port, got ${JSON.stringify(target.slice(0, 100))}`);
    const to = destination(ctx, hostPort.host, hostPort.port, "http");
    if (to.kind === "direct") {
      label = "direct";
      const upstream = await dialTcp(hostPort.host, hostPort.port, connectTimeoutMs).catch((e: Error) => {
        throw new KedgeError("no-connection-to-all-resolved-addresses", 502, e.message);
      });
      if (client.destroyed) return void upstream.destroy();
      client.write(tunnelEstablished({ "x-kedge-request-id": requestId }));
      tunnels.splice(client, upstream, { head });
      ctx.metrics.httpRequests.inc([label, "200"]);
      return;
    }
    const { kedge } = to.mapping;
    label = kedge.host;
    if (serveInside && hostPort.port === 80) {
      // Plain HTTP inside: winch serves the tunnel's requests itself, credentials and upgrades included.
      client.write(tunnelEstablished({ "x-kedge-request-id": requestId }));
      ctx.metrics.httpRequests.inc([label, "200"]);
      return serveInside(client, head, target);
    }
    if (to.mapping.backendAuth) log.debug("backend_auth does not apply to a CONNECT tunnel", { host: hostPort.host });
    const injection = await ctx.injector.inject(to.mapping, false);
    const socket = tls.connect(ctx.upstreams.tlsOptions(kedge, injection.clientCert));
    const answer = await connectViaKedge(socket, target, { ...injection.headers, "x-kedge-request-id": requestId }).catch((e: Error) => {
      throw new KedgeError("no-connection-to-all-resolved-addresses", 502, `kedge ${kedge.host}: ${e.message}`);
    });
    ctx.metrics.httpRequests.inc([label, String(answer.status)]);
    if (client.destroyed) return void socket.destroy();
    // kedge's refusal (401, 403, 502 …) goes to the client as kedge wrote it.
    relayAnswer(tunnels, client, socket, answer, answer.status === 200, head);
  };
  open().catch((e) => refuseRaw(ctx, client, label, requestId, e));
}
