import type { OutgoingHttpHeaders } from "node:http";
import type { Endpoint } from "../backend/endpoint.js";
import { defaults } from "../config/backend-defaults.js";
import type { HttpBackend } from "../backend/http-backend.js";
import { asKedgeError, KedgeError } from "../errors.js";
import type { ProxyMetrics } from "../observe/metrics.js";
import type { Observation } from "../observe/observer.js";
import type { H1Connection, UpstreamError } from "../upstream/h1-connection.js";
import type { ResponseHead } from "../upstream/response-head.js";
import { headWriter } from "../net/head-writer.js";
import { downstreamHeadLines, downstreamHeaders, writeUpstreamHead, type UpstreamHeadInput } from "../net/hop-headers.js";
import type { IngressRequest, IngressResponse } from "./ingress.js";
import { requestFacts, requestIdFrom, type ParsedRequest } from "./request.js";
import { countTunnelEnd, type TunnelEnd, type Tunnels } from "./tunnel.js";

/** Where one request goes. kedge fills it from its routes; winch from its mapper. */
export interface Routing {
  backend: HttpBackend | undefined;
  /** The backend's name for metrics and x-kedge-backend-name. */
  label: string;
  /** Settles when the request may go (access decision, credentials); may fill in backend and setHeaders. */
  ready: Promise<unknown> | undefined;
  /** No route matched: answered once `ready` settles, so unauthenticated callers learn nothing of the routes. */
  unrouted: KedgeError | undefined;
  /** Headers sent upstream in place of the client's (winch's injected credentials). */
  setHeaders: Record<string, string> | undefined;
  /** Request bodies beyond this many bytes get 413; 0: no limit. */
  maxBodyBytes: number;
  /** server.headers_with_underscores is DROP and the request had such fields (gone from its headers already). */
  dropUnderscoreNames?: boolean;
  /** The matched route for metrics and access logs (its index, "adhoc" or "none"); winch has none. */
  route?: string;
}

/** What differs between kedge's reverse proxy and winch's forward proxy; the exchange itself is shared. */
export interface HttpProxy {
  readonly metrics: ProxyMetrics;
  /** Throws a KedgeError for a request it must refuse outright. */
  dispatch(req: IngressRequest, facts: ParsedRequest): Routing;
  /** Prefix of the error headers this proxy writes: x-kedge-error or x-winch-error. */
  readonly errorHeader: "x-kedge" | "x-winch";
  /** kedge names its backend on responses; winch passes kedge's answer through as it is. */
  readonly tagsResponses: boolean;
  newRequestId(): string;
  /** Where connections that switched protocols (101) are spliced; without it no upgrade is asked for. */
  readonly tunnels?: Tunnels;
  /** The backend that replaced one a reload retired (kedge looks it up by name; winch has none). */
  successor?(retired: HttpBackend): HttpBackend | undefined;
}

const maxEndpointAttempts = 3;
const crlf = Buffer.from("\r\n");
const lastChunk = Buffer.from("0\r\n\r\n");

const bodyTooLarge = (max: number) => new KedgeError("bad-request", 413, `request body larger than ${max} bytes`);

const statusLabels: string[] = [];
/** A status code as a metric label, made once per code. */
function statusLabel(status: number): string {
  return (statusLabels[status] ??= String(status));
}

/** Requests in flight, for graceful shutdown. */
export const inflight = { count: 0 };

/** Writes the error contract: status, x-kedge-error(-type) (winch: x-winch-…) headers and a short text body. */
export function sendError(res: IngressResponse, err: KedgeError, requestId: string, prefix: "x-kedge" | "x-winch" = "x-kedge"): void {
  if (res.headersSent) {
    res.abort();
    return;
  }
  const body = Buffer.from(`${err.message}\n`);
  res.writeHead(err.status, {
    "content-type": "text/plain; charset=utf-8",
    "content-length": body.length,
    [`${prefix}-error`]: err.message.replace(/[\r\n]/g, " "),
    [`${prefix}-error-type`]: err.type,
    "x-kedge-request-id": requestId,
  });
  res.write(body);
  res.end();
}

/** One proxied request: picks endpoints, retries what is safe to retry, streams both ways. */
class HttpExchange {
  private readonly started = performance.now();
  private requestId = "";
  private routing: Routing | undefined;
  private facts: ParsedRequest | undefined;
  /** What the upstream request head is made of, kept for a retry on another connection. */
  private head: UpstreamHeadInput | undefined;
  /** The protocol asked of the backend (the client's Upgrade), when this proxy and response can switch. */
  private upgrade: string | undefined;
  private bodyLength = 0;
  private endpoint: Endpoint | undefined;
  private conn: H1Connection | undefined;
  private failedOn: Set<Endpoint> | undefined;
  private attempts = 0;
  private staleRetried = false;
  private bodyStarted = false;
  private bodyBytes = 0;
  private finished = false;
  private status = 0;
  /** Access log and trace record; undefined unless logging samples this request or tracing is on. */
  private obs: Observation | undefined;

  constructor(
    private readonly proxy: HttpProxy,
    private readonly req: IngressRequest,
    private readonly res: IngressResponse,
  ) {}

  private get label(): string {
    return this.routing?.label ?? "none";
  }

  private get backend(): HttpBackend {
    return this.routing!.backend!;
  }

  run(): void {
    inflight.count++;
    this.proxy.metrics.inflight.http++;
    this.requestId = requestIdFrom(this.req.headers, this.proxy.newRequestId);
    this.obs = this.proxy.metrics.observer.start(this.req.headers);
    try {
      this.facts = requestFacts(this.req);
      this.routing = this.proxy.dispatch(this.req, this.facts);
    } catch (e) {
      this.fail(asKedgeError(e));
      return;
    }
    this.res.onGone(() => this.clientGone());
    const ready = this.routing.ready;
    if (ready) {
      ready.then(
        (identity) => {
          if (this.obs) this.obs.identity = identity;
          this.proceed();
        },
        (e) => this.fail(asKedgeError(e)),
      );
    } else this.proceed();
  }

  private proceed(): void {
    if (this.finished) return;
    const routing = this.routing!;
    if (routing.unrouted) return this.fail(routing.unrouted);
    if (!routing.backend) return this.fail(new KedgeError("no-backend", 502, "no backend for this request"));
    if (routing.maxBodyBytes > 0 && this.req.contentLength > routing.maxBodyBytes) return this.fail(bodyTooLarge(routing.maxBodyBytes));
    this.res.sendContinue?.();
    this.buildHead(routing);
    const pending = routing.backend.pendingResolution;
    if (!pending) return this.attempt();
    let waited = false;
    const go = () => {
      if (waited) return;
      waited = true;
      clearTimeout(timer);
      this.attempt();
    };
    const timer = setTimeout(go, routing.backend.poolOptions.connectTimeoutMs);
    void pending.then(go);
  }

  private buildHead(routing: Routing): void {
    const facts = this.facts!;
    this.bodyLength = this.req.hasBody ? this.req.contentLength : 0;
    if (this.req.upgrade !== undefined && this.proxy.tunnels && this.res.switchProtocols) this.upgrade = this.req.upgrade;
    this.head = {
      method: this.req.method,
      path: facts.origin,
      host: facts.authority,
      headers: this.req.headers,
      clientIp: this.req.remoteAddress,
      scheme: this.req.scheme,
      requestId: this.requestId,
      bodyLength: this.bodyLength,
      set: routing.setHeaders,
      traceparent: this.obs?.traceparent,
      forwardLines: this.req.forwardLines,
      dropUnderscoreNames: routing.dropUnderscoreNames,
      upgrade: this.upgrade,
    };
  }

  private attempt(): void {
    if (this.finished) return;
    // A reload retired the backend while this request waited (for auth, or the first resolution).
    const routing = this.routing!;
    if (routing.backend!.isClosed && this.attempts === 0 && routing.route !== "adhoc") {
      const next = this.proxy.successor?.(routing.backend!);
      if (next && next !== routing.backend) routing.backend = next;
    }
    let picked;
    try {
      picked = this.backend.pick(this.failedOn);
    } catch (e) {
      this.fail(e as KedgeError);
      return;
    }
    this.attempts++;
    this.endpoint = picked.endpoint;
    this.endpoint.outstanding++;
    picked.pool.acquire(this);
  }

  // PoolClient: the pool's answer to acquire() or dial().
  granted(conn: H1Connection): void {
    this.send(conn);
  }

  failed(err: UpstreamError): void {
    this.upstreamFailed(err, this.endpoint!);
  }

  private send(conn: H1Connection): void {
    if (this.finished) {
      conn.pool.release(conn);
      return;
    }
    this.conn = conn;
    if (this.obs) this.obs.sentUpstream(this.endpoint!.address);
    const bodyless = this.bodyLength === 0;
    conn.begin(writeUpstreamHead(headWriter.start(), this.head!), this.req.method === "HEAD", this, bodyless, this.upgrade !== undefined);
    if (!bodyless) this.pipeBody(conn);
  }

  private pipeBody(conn: H1Connection): void {
    const body = this.req.body;
    const chunked = this.bodyLength < 0;
    const max = this.routing!.maxBodyBytes;
    const onData = (chunk: Buffer) => {
      if (this.conn !== conn) return;
      this.bodyStarted = true;
      if (this.obs) this.obs.bytesIn += chunk.length;
      // A body of unknown length (chunked, HTTP/2) is counted as it streams.
      if (max > 0 && (this.bodyBytes += chunk.length) > max) {
        conn.abort();
        this.conn = undefined;
        this.endpoint!.outstanding--;
        return this.fail(bodyTooLarge(max));
      }
      if (chunked) conn.write(Buffer.from(`${chunk.length.toString(16)}\r\n`));
      let ok = conn.write(chunk);
      if (chunked) ok = conn.write(crlf) && ok;
      if (!ok) {
        body.pause();
        conn.onWritable(() => body.resume());
      }
    };
    const onEnd = () => {
      if (this.conn !== conn) return;
      if (chunked) conn.write(lastChunk);
      conn.endRequest();
    };
    body.on("data", onData);
    body.once("end", onEnd);
    body.resume();
  }

  // ExchangeHandlers, called by the connection.
  onHead(head: ResponseHead): void {
    if (head.status === 101) return this.switchProtocols(head);
    this.status = head.status;
    if (this.obs) this.obs.firstByteAt = performance.now();
    const tags = this.proxy.tagsResponses;
    if (this.res.writeHeadLines) {
      const fields = downstreamHeadLines(head, tags);
      if (tags) fields.backendName = this.label;
      if (!fields.hasRequestId) fields.requestId = this.requestId;
      return this.res.writeHeadLines(head.status, fields);
    }
    const headers: OutgoingHttpHeaders = downstreamHeaders(head, this.req.protocol === "h2", tags);
    if (tags) headers["x-kedge-backend-name"] = this.label;
    headers["x-kedge-request-id"] ??= this.requestId;
    this.res.writeHead(head.status, headers);
  }

  /**
   * The backend agreed to switch (WebSocket, SPDY): the client gets the 101 and from then on the two
   * connections are spliced byte for byte, like a CONNECT tunnel. The request counts as done now
   * (graceful shutdown does not wait for a WebSocket); its access log line waits for the close.
   */
  private switchProtocols(head: ResponseHead): void {
    const conn = this.conn!;
    const endpoint = this.endpoint!;
    this.conn = undefined;
    endpoint.outstanding--;
    const i = head.names.indexOf("upgrade");
    const offered = i >= 0 ? head.rawHeaders[2 * i + 1] : "";
    if (offered.toLowerCase() !== this.upgrade!.toLowerCase()) {
      conn.abort();
      return this.fail(new KedgeError("backend-transport-closed", 502, `backend ${this.label} switched to ${JSON.stringify(offered.slice(0, 50))}, not the ${this.upgrade} asked for`));
    }
    endpoint.markHealthy();
    this.status = 101;
    if (this.obs) this.obs.firstByteAt = performance.now();
    const fields = downstreamHeadLines(head, this.proxy.tagsResponses);
    fields.lines = `connection: upgrade\r\nupgrade: ${offered}\r\n`;
    if (this.proxy.tagsResponses) fields.backendName = this.label;
    fields.requestId = this.requestId;
    const client = this.res.switchProtocols!(fields);
    if (!client) {
      conn.abort();
      return this.done(499);
    }
    const obs = this.obs;
    this.obs = undefined; // logged when the splice closes, with its bytes
    this.done(101);
    const upstream = conn.switchProtocols();
    const closed = (end: TunnelEnd) => {
      countTunnelEnd(end, this.proxy.metrics.proxyErrors, this.label, obs);
      if (obs) this.log(obs, 101);
    };
    this.proxy.tunnels!.splice(client.socket, upstream, { head: client.rest, counts: obs, closed, idleMs: this.backend.tunnelIdleMs });
  }

  onBody(chunk: Uint8Array): boolean {
    if (this.obs) this.obs.bytesOut += chunk.length;
    if (this.res.write(chunk)) return true;
    const conn = this.conn;
    this.res.onceDrain(() => conn?.resume());
    return false;
  }

  onEnd(last?: Uint8Array): void {
    this.endpoint!.outstanding--;
    this.endpoint!.markHealthy();
    if (this.obs && last) this.obs.bytesOut += last.length;
    this.res.end(last);
    // The backend may answer before reading the whole request body: discard the rest.
    this.conn = undefined;
    if (this.req.hasBody) this.req.body.resume();
    this.done(this.status);
  }

  onError(err: UpstreamError): void {
    this.upstreamFailed(err, this.endpoint!);
  }

  private upstreamFailed(err: UpstreamError, endpoint: Endpoint): void {
    endpoint.outstanding--;
    this.conn = undefined;
    if (this.finished) return;
    const nothingSent = err.failure === "connect" || err.failure === "connect-timeout" || err.failure === "pool-timeout";
    if (nothingSent) {
      if (err.failure !== "pool-timeout") endpoint.markFailed(this.backend.failureBackoffMs, defaults.maxFailureBackoffMs);
      (this.failedOn ??= new Set()).add(endpoint);
      if (this.attempts < Math.min(maxEndpointAttempts, this.backend.endpointCount)) return this.attempt();
      return this.fail(new KedgeError("no-connection-to-all-resolved-addresses", 502, `backend ${this.label}: ${err.message}`));
    }
    if (err.failure === "stale" && !this.bodyStarted && !this.staleRetried) {
      // A pooled keep-alive connection the backend had closed: resend on a fresh one.
      this.staleRetried = true;
      const pool = this.backend.poolFor(endpoint);
      if (pool) {
        endpoint.outstanding++;
        return pool.dial(this);
      }
    }
    if (err.failure === "response-timeout") return this.fail(new KedgeError("backend-timeout", 504, `backend ${this.label}: ${err.message}`));
    this.fail(new KedgeError("backend-transport-closed", 502, `backend ${this.label}: ${err.message}`));
  }

  private clientGone(): void {
    if (this.finished) return;
    this.conn?.abort();
    if (this.conn) this.endpoint!.outstanding--;
    this.conn = undefined;
    this.done(499);
  }

  private fail(err: KedgeError): void {
    if (this.finished) return;
    // The rest of a refused body is not worth reading: close once the answer is out.
    if (err.status === 413) this.res.lastOnConnection();
    this.proxy.metrics.proxyErrors.inc([this.label, err.type]);
    if (this.obs) this.obs.errorType = err.type;
    sendError(this.res, err, this.requestId, this.proxy.errorHeader);
    if (this.req.hasBody) this.req.body.resume();
    this.done(err.status);
  }

  private done(status: number): void {
    if (this.finished) return;
    this.finished = true;
    inflight.count--;
    const metrics = this.proxy.metrics;
    metrics.inflight.http--;
    const route = this.routing?.route ?? "none";
    const labels = [this.label, statusLabel(status), route];
    metrics.httpRequests.inc(labels);
    metrics.httpLatency.observe(labels, (performance.now() - this.started) / 1000);
    if (this.obs) this.log(this.obs, status);
  }

  /** The access log line and span of this request. */
  private log(obs: Observation, status: number): void {
    this.proxy.metrics.observer.finishHttp(obs, this.requestId, this.req, this.facts?.path ?? "", status, this.routing?.route ?? "none", this.label);
  }
}

/** Proxies one HTTP request the way `proxy` routes it. */
export function exchange(proxy: HttpProxy, req: IngressRequest, res: IngressResponse): void {
  new HttpExchange(proxy, req, res).run();
}
