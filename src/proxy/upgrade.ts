import type { Attempts } from "../backend/attempts.js";
import type { HttpBackend } from "../backend/http-backend.js";
import { KedgeError } from "../errors.js";
import { downstreamHeadLines, type RequestIdParts } from "../net/hop-headers.js";
import type { H1Connection } from "../upstream/h1-connection.js";
import type { ResponseHead } from "../upstream/response-head.js";
import type { HttpProxy } from "./http-proxy.js";
import type { IngressResponse } from "./ingress.js";
import { recordFinished, recordTunnelClosed, type RecordedHttp } from "./record.js";
import type { TunnelEnd } from "./tunnel.js";

/** What a protocol switch reads and drives of its exchange (HttpExchange). */
export interface SwitchingExchange extends Attempts<HttpBackend>, RecordedHttp, RequestIdParts {
  readonly proxy: HttpProxy;
  readonly res: IngressResponse;
  /** The current attempt's upstream connection. */
  conn: H1Connection | undefined;
  /** The protocol asked of the backend (the client's Upgrade). */
  readonly upgrade: string | undefined;
  /** The status of the answer passed on. */
  status: number;
  /** Answers the client with this error, once. */
  fail(err: KedgeError): void;
  /** Counts the request finished with this status. */
  done(status: number): void;
}

/**
 * The backend agreed to switch (WebSocket, SPDY): the client gets the 101 and from then on the two
 * connections are spliced byte for byte, like a CONNECT tunnel. The request counts as done now
 * (graceful shutdown does not wait for a WebSocket); its access log line waits for the close.
 */
export function switchProtocols(exchange: SwitchingExchange, head: ResponseHead): void {
  const conn = exchange.conn!;
  exchange.conn = undefined;
  const i = head.names.indexOf("upgrade");
  const offered = i >= 0 ? head.rawHeaders[2 * i + 1] : "";
  if (offered.toLowerCase() !== exchange.upgrade!.toLowerCase()) {
    conn.abort();
    return exchange.fail(new KedgeError("backend-transport-closed", 502, `backend ${exchange.backendName} switched to ${JSON.stringify(offered.slice(0, 50))}, not the ${exchange.upgrade} asked for`));
  }
  exchange.succeeded();
  exchange.answered(false);
  exchange.status = 101;
  if (exchange.obs) exchange.obs.firstByteAt = performance.now();
  const proxy = exchange.proxy;
  const fields = downstreamHeadLines(head, proxy.tagsResponses);
  fields.lines = `connection: upgrade\r\nupgrade: ${offered}\r\n`;
  if (proxy.tagsResponses) fields.backendName = exchange.backendName;
  fields.requestId = exchange;
  const client = exchange.res.switchProtocols!(fields);
  if (!client) {
    conn.abort();
    return exchange.done(499);
  }
  const obs = exchange.obs;
  recordFinished(proxy.metrics, exchange, 101, true); // its access line waits for the splice to close, with its bytes
  const upstream = conn.switchProtocols();
  const closed = (end: TunnelEnd) => recordTunnelClosed(proxy.metrics, exchange, obs, 101, end);
  proxy.tunnels!.splice(client.socket, upstream, { head: client.rest, counts: obs, closed, idleMs: exchange.backend.tunnelIdleMs });
}
