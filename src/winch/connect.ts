import type { Duplex } from "node:stream";
import tls from "node:tls";
import { asKedgeError, KedgeError } from "../errors.js";
import { log } from "../observe/log.js";
import { routeLabel } from "../observe/metrics.js";
import type { ConnectRequest } from "../proxy/connect.js";
import { dialTcp, writeRawError, tunnelEstablished, type Tunnels } from "../proxy/tunnel.js";
import { parseHostPort } from "../net/host-port.js";
import { ResponseParser } from "../upstream/response-parser.js";
import type { ResponseHead } from "../upstream/response-head.js";
import { noteDestination } from "./access-fields.js";
import { WinchTunnelRecord } from "./connect-record.js";
import { destination, type WinchContext } from "./context.js";

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
function relayAnswer(tunnels: Tunnels, client: Duplex, upstream: Duplex, answer: KedgeAnswer, early: Buffer, record: WinchTunnelRecord): void {
  client.write(`${answer.head.text}\r\n`, "latin1");
  if (answer.rest.length > 0) client.write(answer.rest);
  if (answer.head.status === 200) tunnels.splice(client, upstream, { head: early, counts: record.obs, closed: record.closed });
  else {
    upstream.pipe(client);
    upstream.on("error", () => client.destroy());
  }
  upstream.resume();
}

/** A CONNECT winch refuses itself, counted like any other request. */
function refuse(record: WinchTunnelRecord, client: Duplex, e: unknown): void {
  const err = asKedgeError(e);
  writeRawError(client, err, record.requestId, "x-winch");
  record.refused(err.type, err.status);
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
export function winchConnect(ctx: WinchContext, tunnels: Tunnels, req: ConnectRequest, client: Duplex, early: Buffer, serveInside: ServeInside): void {
  const target = req.target;
  const record = new WinchTunnelRecord(ctx.metrics, req);
  const requestId = record.requestId;
  client.on("error", () => {});
  const open = async () => {
    noteDestination(record.obs, target, undefined, false);
    const hostPort = /:\d+$/.test(target) ? parseHostPort(target, 0) : undefined;
    if (!hostPort) throw new KedgeError("bad-request", 400, `CONNECT needs host:port, got ${JSON.stringify(target.slice(0, 100))}`);
    const to = destination(ctx, hostPort.host, hostPort.port, "http");
    noteDestination(record.obs, target, to, false);
    if (to.kind === "direct") {
      record.backendName = "direct";
      const upstream = await dialTcp(hostPort.host, hostPort.port, connectTimeoutMs).catch((e: Error) => {
        throw new KedgeError("no-connection-to-all-resolved-addresses", 502, e.message);
      });
      if (client.destroyed) {
        upstream.destroy();
        return record.answered(499, false);
      }
      record.sentTo(target);
      client.write(tunnelEstablished({ "x-kedge-request-id": requestId }));
      record.answered(200, true);
      tunnels.splice(client, upstream, { head: early, counts: record.obs, closed: record.closed });
      return;
    }
    const { kedge } = to.mapping;
    record.backendName = kedge.host;
    record.route = routeLabel(to.mapping.routeIndex);
    if (hostPort.port === 80) {
      // Plain HTTP inside: winch serves the tunnel's requests itself (each gets its own access line), credentials and upgrades included.
      client.write(tunnelEstablished({ "x-kedge-request-id": requestId }));
      record.answered(200, false);
      return serveInside(early, target);
    }
    if (to.mapping.backendAuth) log.debug("backend_auth does not apply to a CONNECT tunnel", { host: hostPort.host });
    const injection = await ctx.injector.inject(to.mapping, false);
    const socket = tls.connect(ctx.upstreams.tlsOptions(kedge, injection.clientCert));
    record.sentTo(kedge.host);
    const answer = await connectViaKedge(socket, target, { ...injection.headers, "x-kedge-request-id": requestId }).catch((e: Error) => {
      throw new KedgeError("no-connection-to-all-resolved-addresses", 502, `kedge ${kedge.host}: ${e.message}`);
    });
    if (client.destroyed) {
      socket.destroy();
      return record.answered(499, false);
    }
    const opened = answer.head.status === 200;
    record.answered(answer.head.status, opened);
    // kedge's refusal (401, 403, 502 …) goes to the client as kedge wrote it.
    relayAnswer(tunnels, client, socket, answer, early, record);
  };
  open().catch((e) => refuse(record, client, e));
}
