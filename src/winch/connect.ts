import type { Duplex } from "node:stream";
import tls from "node:tls";
import { asKedgeError, KedgeError } from "../errors.js";
import { log } from "../observe/log.js";
import { requestIdFrom } from "../proxy/request.js";
import { dialTcp, writeRawError, tunnelEstablished, type Tunnels } from "../proxy/tunnel.js";
import { parseHostPort } from "../net/host-port.js";
import type { RequestHead } from "../server/h1/request-head.js";
import { ResponseParser } from "../upstream/response-parser.js";
import type { ResponseHead } from "../upstream/response-head.js";
import { destination, winchRequestId, type WinchContext } from "./context.js";

const connectTimeoutMs = 5_000;

/** kedge's answer to a CONNECT: its head, and what came after the head in the same read. */
interface KedgeAnswer {
  head: ResponseHead;
  rest: Uint8Array;
}

/** A sink for a head only: a CONNECT's 200 is followed by the tunnel's bytes, a refusal's body is relayed as it comes. */
class HeadOnly {
  head: ResponseHead | undefined;
  onHead(head: ResponseHead): void {
    this.head = head;
  }
  onBody(): boolean {
    return true;
  }
  onEnd(): void {}
}

/**
 * Opens TLS to the kedge, sends CONNECT with the route's proxy credentials, and resolves with
 * kedge's answer read by the upstream response parser (the socket is paused after it), or rejects
 * after connectTimeoutMs.
 */
function connectViaKedge(socket: tls.TLSSocket, target: string, headers: Record<string, string>): Promise<KedgeAnswer> {
  socket.once("secureConnect", () => {
    let request = `CONNECT ${target} HTTP/1.1\r\nhost: ${target}\r\n`;
    for (const name in headers) request += `${name}: ${headers[name]}\r\n`;
    socket.write(`${request}\r\n`);
  });
  return new Promise((resolve, reject) => {
    const parser = new ResponseParser();
    const sink = new HeadOnly();
    parser.expect(sink, true);
    const timer = setTimeout(() => fail(new Error("kedge did not answer CONNECT in time")), connectTimeoutMs);
    const stop = () => {
      clearTimeout(timer);
      socket.off("data", onData);
      socket.off("error", fail);
      socket.off("close", closed);
    };
    const fail = (err: Error) => {
      stop();
      socket.destroy();
      reject(err);
    };
    const closed = () => fail(new Error("kedge closed the connection before answering CONNECT"));
    const onData = (chunk: Buffer) => {
      let used: number;
      try {
        used = parser.feed(chunk);
      } catch (e) {
        return fail(e as Error);
      }
      if (!sink.head) return;
      stop();
      socket.pause();
      resolve({ head: sink.head, rest: chunk.subarray(used) });
    };
    socket.on("data", onData);
    socket.once("error", fail);
    socket.once("close", closed);
  });
}

/**
 * kedge's answer to the client as kedge wrote it (its head as the parser read it). When the tunnel
 * opened, the connections are spliced, `early` (what the client sent past its CONNECT) first;
 * otherwise the rest of the answer follows until kedge closes.
 */
function relayAnswer(tunnels: Tunnels, client: Duplex, upstream: Duplex, answer: KedgeAnswer, early: Buffer): void {
  client.write(`${answer.head.text}\r\n`, "latin1");
  if (answer.rest.length > 0) client.write(answer.rest);
  if (answer.head.status === 200) tunnels.splice(client, upstream, { head: early });
  else {
    upstream.pipe(client);
    upstream.on("error", () => client.destroy());
  }
  upstream.resume();
}

/** A CONNECT winch refuses itself, counted like any other request. */
function refuse(ctx: WinchContext, client: Duplex, label: string, requestId: string, e: unknown): void {
  const err = asKedgeError(e);
  ctx.metrics.proxyErrors.inc([label, err.type]);
  ctx.metrics.httpRequests.inc([label, String(err.status)]);
  writeRawError(client, err, requestId, "x-winch");
}

/** Serves the plain HTTP inside a tunnel to `target` as winch's own requests. */
export type ServeInside = (early: Buffer, target: string) => void;

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
export function winchConnect(ctx: WinchContext, tunnels: Tunnels, req: RequestHead, client: Duplex, early: Buffer, serveInside: ServeInside): void {
  const target = req.target;
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
      tunnels.splice(client, upstream, { head: early });
      ctx.metrics.httpRequests.inc([label, "200"]);
      return;
    }
    const { kedge } = to.mapping;
    label = kedge.host;
    if (hostPort.port === 80) {
      // Plain HTTP inside: winch serves the tunnel's requests itself, credentials and upgrades included.
      client.write(tunnelEstablished({ "x-kedge-request-id": requestId }));
      ctx.metrics.httpRequests.inc([label, "200"]);
      return serveInside(early, target);
    }
    if (to.mapping.backendAuth) log.debug("backend_auth does not apply to a CONNECT tunnel", { host: hostPort.host });
    const injection = await ctx.injector.inject(to.mapping, false);
    const socket = tls.connect(ctx.upstreams.tlsOptions(kedge, injection.clientCert));
    const answer = await connectViaKedge(socket, target, { ...injection.headers, "x-kedge-request-id": requestId }).catch((e: Error) => {
      throw new KedgeError("no-connection-to-all-resolved-addresses", 502, `kedge ${kedge.host}: ${e.message}`);
    });
    ctx.metrics.httpRequests.inc([label, String(answer.head.status)]);
    if (client.destroyed) return void socket.destroy();
    // kedge's refusal (401, 403, 502 …) goes to the client as kedge wrote it.
    relayAnswer(tunnels, client, socket, answer, early);
  };
  open().catch((e) => refuse(ctx, client, label, requestId, e));
}
