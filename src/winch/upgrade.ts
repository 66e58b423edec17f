import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import tls from "node:tls";
import { KedgeError } from "../errors.js";
import { buildUpstreamHead, switchable } from "../net/hop-headers.js";
import { requestIdFrom } from "../proxy/request.js";
import { dialTcp, type Tunnels } from "../proxy/tunnel.js";
import { readResponseHead, refuseRaw, relayAnswer } from "./connect.js";
import { destination, winchRequestId, type WinchContext } from "./context.js";

const connectTimeoutMs = 5_000;

/** TLS to a kedge, once the handshake is done. */
function dialTls(options: tls.ConnectionOptions): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect(options);
    const timer = setTimeout(() => fail(new Error("TLS handshake timed out")), connectTimeoutMs);
    const fail = (err: Error) => {
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    };
    socket.once("secureConnect", () => {
      clearTimeout(timer);
      socket.off("error", fail);
      resolve(socket);
    });
    socket.once("error", fail);
  });
}

/**
 * A WebSocket or SPDY upgrade through winch: an absolute-URI request (or one inside a tunnel winch
 * serves, see winchConnect) goes to the cluster's kedge with the route's credentials, like any
 * request winch forwards, on a connection of its own. kedge's answer reaches the client as it was
 * written; after a 101 the two connections are spliced.
 */
export function winchUpgrade(ctx: WinchContext, tunnels: Tunnels, req: IncomingMessage, client: Duplex, early: Buffer): void {
  const requestId = requestIdFrom(req.headers, winchRequestId);
  client.on("error", () => {});
  let label = "none";
  const open = async () => {
    const target = req.url ?? "";
    if (!/^http:\/\//i.test(target)) throw new KedgeError("bad-request", 400, "winch is a forward proxy: send absolute-URI requests (set HTTP_PROXY) or CONNECT");
    const upgrade = req.headers.upgrade ?? "";
    const framed = req.headers["transfer-encoding"] !== undefined || Number(req.headers["content-length"] ?? 0) > 0;
    if (!switchable(upgrade) || framed) throw new KedgeError("bad-request", 400, `winch passes on WebSocket and SPDY upgrades without a body, not ${JSON.stringify(upgrade.slice(0, 50))}`);
    const url = new URL(target);
    const host = url.hostname.replace(/^\[|\]$/g, "");
    const port = url.port ? Number(url.port) : 80;
    const to = destination(ctx, host, url.port ? port : undefined, "http");
    let upstream: Duplex;
    let set: Record<string, string> | undefined;
    if (to.kind === "direct") {
      label = "direct";
      upstream = await dialTcp(host, port, connectTimeoutMs).catch((e: Error) => {
        throw new KedgeError("no-connection-to-all-resolved-addresses", 502, e.message);
      });
    } else {
      const { kedge } = to.mapping;
      label = kedge.host;
      const injection = await ctx.injector.inject(to.mapping);
      set = injection.headers;
      const options = ctx.upstreams.tlsOptions(kedge, injection.clientCert);
      upstream = await (kedge.protocol === "https:" ? dialTls(options) : dialTcp(options.host, options.port, connectTimeoutMs)).catch((e: Error) => {
        throw new KedgeError("no-connection-to-all-resolved-addresses", 502, `kedge ${kedge.host}: ${e.message}`);
      });
    }
    upstream.on("error", () => {});
    const head = buildUpstreamHead({
      method: req.method ?? "GET",
      path: `${url.pathname}${url.search}`,
      host: url.host,
      headers: req.headers,
      clientIp: req.socket.remoteAddress ?? "",
      scheme: "http",
      requestId,
      bodyLength: 0,
      set,
      upgrade,
      closeAfter: true,
    });
    upstream.write(Buffer.from(head, "latin1"));
    const answer = await readResponseHead(upstream, "the upgrade").catch((e: Error) => {
      throw new KedgeError("backend-transport-closed", 502, `${label}: ${e.message}`);
    });
    ctx.metrics.httpRequests.inc([label, String(answer.status)]);
    if (client.destroyed) return void upstream.destroy();
    // A refusal ends with the close the request asked for (closeAfter).
    relayAnswer(tunnels, client, upstream, answer, answer.status === 101, early);
  };
  open().catch((e) => refuseRaw(ctx, client, label, requestId, e));
}
