import type { Duplex } from "node:stream";
import { asKedgeError, KedgeError } from "../errors.js";
import { log } from "../observe/log.js";
import { routeLabel } from "../observe/metrics.js";
import type { ConnectRequest } from "../proxy/connect.js";
import { dialTcp, writeRawError, tunnelEstablished, type Tunnels } from "../proxy/tunnel.js";
import { parseHostPort, type HostPort } from "../net/host-port.js";
import { noteDestination } from "./access-fields.js";
import { WinchTunnelRecord } from "./connect-record.js";
import { destination, type WinchContext } from "./context.js";
import { answerField, askKedgeForTunnel, type KedgeAnswer } from "./kedge-tunnel.js";
import type { Mapping } from "./mapper.js";
import { sniffTunnel } from "./tunnel-sniff.js";

/** How long a tunnel on a gRPC-capable route may stay silent before it is taken for a server-first protocol. */
const serverFirstWaitMs = 1_000;
const connectTimeoutMs = 5_000;

/** Where winch serves a tunnel's bytes itself, as if they had come to one of its ports. */
export interface TunnelServers {
  /** Plain HTTP to `target`, served by winch's HTTP proxy. */
  http(early: Buffer, target: string): void;
  /** HTTP/2 (gRPC) to `target`, served by winch's gRPC port's server; `early` starts with the preface. */
  grpc(early: Buffer, target: string): void;
}

/**
 * kedge's answer to the client as kedge wrote it (its head as the parser read it). When the tunnel
 * opened, the connections are spliced, `early` (what the client sent past its CONNECT) first;
 * otherwise the rest of the answer follows until kedge closes.
 */
function relayAnswer(tunnels: Tunnels, client: Duplex, answer: KedgeAnswer, early: Buffer, record: WinchTunnelRecord): void {
  const upstream = answer.socket;
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

/**
 * A tunnel that already got winch's 200 cannot be refused with a status: it is closed, with one
 * warn line saying why, and counted by `type` (kedge's refusal: "tunnel-refused").
 */
function closeAnswered(record: WinchTunnelRecord, client: Duplex, target: string, status: number, type: string, fields: Record<string, string>): void {
  log.warn("closed a CONNECT tunnel winch had answered 200", { target, kedge: record.backendName, status, ...fields });
  record.refused(type, status);
  client.destroy();
}

/**
 * CONNECT to winch (HTTPS_PROXY clients: kubectl, curl https://…). For a mapped host winch opens
 * TLS to the cluster's kedge and asks it for the tunnel, so the client's own TLS runs end to end
 * with the backend and winch terminates nothing it should not. backend_auth cannot apply inside an
 * opaque tunnel; proxy_auth does. Unknown hosts get a plain TCP tunnel, or are refused.
 *
 * A mapped host's port 80 carries plain HTTP, and clients that always CONNECT through a proxy
 * (kubectl exec, attach and port-forward; WebSocket clients) send it that way: `inside.http` hands
 * such a tunnel to winch's own HTTP proxy, so its requests get the route's credentials and upgrades.
 *
 * gRPC clients behind grpc_proxy / https_proxy (grpc-js, grpc-go) CONNECT too, and speak h2c inside,
 * but only after the 200. So for a mapped host on any port but 80 and 443 whose route takes gRPC
 * (protocol GRPC or ANY), winch answers 200 at once and looks at the first bytes: the HTTP/2
 * preface goes to `inside.grpc`, winch's own gRPC path (each call mapped by its :authority and
 * given the route's credentials); anything else (a TLS ClientHello …) goes to kedge's tunnel as
 * below, except on a GRPC-only route, where it is closed. A client that says nothing for
 * `serverFirstWaitMs` is taken to speak a protocol where the server talks first (SMTP, MySQL, SSH
 * banners) and goes to kedge's tunnel too: gRPC clients send their preface the moment the 200
 * arrives, so the wait costs them nothing and spares the others a hang. A refusal from kedge can then no longer
 * be relayed with its status: the client's connection is closed and the refusal logged and counted.
 * Port 443 and HTTP-only routes ask kedge first, so kubectl and curl see kedge's refusal as it is.
 */
export function winchConnect(ctx: WinchContext, tunnels: Tunnels, req: ConnectRequest, client: Duplex, early: Buffer, inside: TunnelServers): void {
  const target = req.target;
  const record = new WinchTunnelRecord(ctx.metrics, req);
  const requestId = record.requestId;
  client.on("error", () => {});
  const open = async () => {
    noteDestination(record.obs, target, undefined, false);
    const hostPort = /:\d+$/.test(target) ? parseHostPort(target, 0) : undefined;
    if (!hostPort) throw new KedgeError("bad-request", 400, `CONNECT needs host:port, got ${JSON.stringify(target.slice(0, 100))}`);
    if (hostPort.port !== 80 && hostPort.port !== 443) {
      const grpcRoute = ctx.mapper.map(hostPort.host, hostPort.port, "grpc");
      if (grpcRoute.kind === "mapped") return sniffFirst(ctx, tunnels, client, early, target, hostPort, grpcRoute.mapping, record, inside);
    }
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
      return inside.http(early, target);
    }
    if (to.mapping.backendAuth) log.debug("backend_auth does not apply to a CONNECT tunnel", { host: hostPort.host });
    record.sentTo(kedge.host);
    const answer = await askKedgeForTunnel(ctx, to.mapping, target, requestId);
    if (client.destroyed) {
      answer.socket.destroy();
      return record.answered(499, false);
    }
    record.answered(answer.head.status, answer.head.status === 200);
    // kedge's refusal (401, 403, 502 …) goes to the client as kedge wrote it.
    relayAnswer(tunnels, client, answer, early, record);
  };
  open().catch((e) => refuse(record, client, e));
}

/** The 200 first, then the tunnel's first bytes decide (winchConnect's rule for gRPC routes). */
async function sniffFirst(
  ctx: WinchContext,
  tunnels: Tunnels,
  client: Duplex,
  early: Buffer,
  target: string,
  hostPort: HostPort,
  grpcMapping: Mapping,
  record: WinchTunnelRecord,
  inside: TunnelServers,
): Promise<void> {
  record.backendName = grpcMapping.kedge.host;
  record.route = routeLabel(grpcMapping.routeIndex);
  noteDestination(record.obs, target, { kind: "kedge", mapping: grpcMapping }, false);
  client.write(tunnelEstablished({ "x-kedge-request-id": record.requestId }));
  const sniffed = await sniffTunnel(client, early, serverFirstWaitMs);
  if (sniffed.kind === "closed") {
    record.answered(200, false);
    return void client.destroy();
  }
  if (sniffed.kind === "h2") {
    // Each call inside gets its own access line from winch's gRPC path.
    record.answered(200, false);
    return inside.grpc(sniffed.bytes, target);
  }
  const httpRoute = ctx.mapper.map(hostPort.host, hostPort.port, "http");
  if (httpRoute.kind !== "mapped") {
    if (sniffed.kind === "idle") return closeAnswered(record, client, target, 408, "tunnel-idle-timeout", { error: "the client sent nothing on a route that takes gRPC only" });
    return closeAnswered(record, client, target, 400, "bad-request", { error: "the route takes gRPC only and the tunnel is not HTTP/2" });
  }
  record.backendName = httpRoute.mapping.kedge.host;
  record.route = routeLabel(httpRoute.mapping.routeIndex);
  noteDestination(record.obs, target, { kind: "kedge", mapping: httpRoute.mapping }, false);
  record.sentTo(httpRoute.mapping.kedge.host);
  let answer: KedgeAnswer;
  try {
    answer = await askKedgeForTunnel(ctx, httpRoute.mapping, target, record.requestId);
  } catch (e) {
    const err = asKedgeError(e);
    return closeAnswered(record, client, target, err.status, err.type, { error: err.message });
  }
  if (client.destroyed) {
    answer.socket.destroy();
    return record.answered(499, false);
  }
  if (answer.head.status !== 200) {
    answer.socket.destroy();
    const fields = { error: answerField(answer.head, "x-kedge-error"), errorType: answerField(answer.head, "x-kedge-error-type") };
    return closeAnswered(record, client, target, answer.head.status, "tunnel-refused", fields);
  }
  record.answered(200, true);
  if (answer.rest.length > 0) client.write(answer.rest);
  tunnels.splice(client, answer.socket, { head: sniffed.bytes, counts: record.obs, closed: record.closed });
  answer.socket.resume();
}
