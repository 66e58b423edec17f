import type { OutgoingHttpHeaders } from "node:http";
import { Attempts, type AttemptFailure } from "../backend/attempts.js";
import type { HttpBackend } from "../backend/http-backend.js";
import { hopsHeader } from "../backend/kedge-tier.js";
import { isIdempotent, resendLimitBytes, type RetryPolicy, type RetryReason } from "../backend/retry-policy.js";
import { asKedgeError, KedgeError } from "../errors.js";
import type { ProxyMetrics } from "../observe/metrics.js";
import type { Observation } from "../observe/observer.js";
import type { H1Connection, UpstreamError } from "../upstream/h1-connection.js";
import type { ResponseHead } from "../upstream/response-head.js";
import { headWriter } from "../net/head-writer.js";
import { downstreamHeadLines, downstreamHeaders, writeUpstreamHead, type UpstreamHeadInput } from "../net/hop-headers.js";
import type { BodyReader, IngressRequest, IngressResponse } from "./ingress.js";
import { requestFacts, requestIdFrom, type ParsedRequest } from "./request.js";
import { recordError, recordFinished, recordRetry, recordStarted, recordTunnelClosed, type RecordedHttp } from "./record.js";
import type { TunnelEnd, Tunnels } from "./tunnel.js";

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
  /** The matched route for metrics and access logs (its index, "adhoc" or "none"). */
  route?: string;
  /** The backend is a forward proxy (winch's kedge): send it the client's absolute URI, not origin-form. */
  absoluteForm?: boolean;
  /** The route's retry policy: when a request the backend saw is sent again. */
  retry?: RetryPolicy;
}

/** What differs between kedge's reverse proxy and winch's forward proxy; the exchange itself is shared. */
export interface HttpProxy {
  readonly metrics: ProxyMetrics;
  /** Throws a KedgeError for a request it must refuse outright. `obs`: its access record, if it has one. */
  dispatch(req: IngressRequest, facts: ParsedRequest, obs: Observation | undefined, requestId: string): Routing;
  /** Prefix of the error headers this proxy writes: x-kedge-error or x-winch-error. */
  readonly errorHeader: "x-kedge" | "x-winch";
  /** kedge names its backend on responses; winch passes kedge's answer through as it is. */
  readonly tagsResponses: boolean;
  newRequestId(): string;
  /** Where connections that switched protocols (101) are spliced; without it no upgrade is asked for. */
  readonly tunnels?: Tunnels;
}

const crlf = Buffer.from("\r\n");
const lastChunk = Buffer.from("0\r\n\r\n");
/** The retry reason of a 502, 503 or 504 answer, by status - 502. */
const statusReasons: readonly RetryReason[] = ["502", "503", "504"];

const bodyTooLarge = (max: number) => new KedgeError("bad-request", 413, `request body larger than ${max} bytes`);

/** Writes the error contract: status, x-kedge-error(-type) (winch: x-winch-…) headers and a short text body. */
export function sendError(res: IngressResponse, err: KedgeError, requestId: string, prefix: "x-kedge" | "x-winch" = "x-kedge"): void {
  if (res.headersSent) {
    res.abort();
    return;
  }
  const body = Buffer.from(`${err.message}\n`);
  const headers: OutgoingHttpHeaders = {
    "content-type": "text/plain; charset=utf-8",
    "content-length": body.length,
    [`${prefix}-error`]: err.message.replace(/[\r\n]/g, " "),
    [`${prefix}-error-type`]: err.type,
    "x-kedge-request-id": requestId,
  };
  if (err.retryAfter !== undefined) headers["retry-after"] = String(err.retryAfter);
  res.writeHead(err.status, headers);
  res.write(body);
  res.end();
}

/** What an HTTP/1.1 backend failure means to the attempt policy; undefined: the request may have been processed. */
function attemptFailure(err: UpstreamError): AttemptFailure | undefined {
  switch (err.failure) {
    case "connect":
    case "connect-timeout":
      return "dial";
    case "pool-timeout":
      return "busy";
    case "stale":
      return "unprocessed";
    default:
      return undefined;
  }
}

/** One proxied request: its attempts at the backend (the policy it extends), streaming both ways. */
class HttpExchange extends Attempts<HttpBackend> implements RecordedHttp, BodyReader {
  readonly protocol = "http";
  recorded = false;
  readonly startedAt = performance.now();
  requestId = "";
  private routing: Routing | undefined;
  private facts: ParsedRequest | undefined;
  /** What the upstream request head is made of, kept for a retry on another connection. */
  private head: UpstreamHeadInput | undefined;
  /** The protocol asked of the backend (the client's Upgrade), when this proxy and response can switch. */
  private upgrade: string | undefined;
  private bodyLength = 0;
  private conn: H1Connection | undefined;
  /** The connection the request body goes to; bytes for an attempt given up on (conn no longer it) are not sent. */
  private bodyTo: H1Connection | undefined;
  private bodyStarted = false;
  private bodyBytes = 0;
  /** The client's body has all arrived. */
  private bodyDone = false;
  /**
   * The body so far, kept while a policy retry could send it again (an idempotent request, the
   * body within resendLimitBytes); undefined when it is not kept.
   */
  private kept: Buffer[] | undefined = undefined;
  private keptBytes = 0;
  /** The method is idempotent and the route has a retry policy: an answer may be retried. */
  private idempotent = false;
  private status = 0;
  obs: Observation | undefined;

  constructor(
    private readonly proxy: HttpProxy,
    private readonly req: IngressRequest,
    private readonly res: IngressResponse,
  ) {
    super();
  }

  get backendName(): string {
    return this.routing?.label ?? "none";
  }

  get route(): string {
    return this.routing?.route ?? "none";
  }

  get request(): IngressRequest {
    return this.req;
  }

  get path(): string {
    return this.facts?.path ?? "";
  }

  get attempts(): this {
    return this;
  }

  run(): void {
    recordStarted(this.proxy.metrics, this);
    this.requestId = requestIdFrom(this.req.headers, this.proxy.newRequestId);
    this.obs = this.proxy.metrics.observer.start(this.req.headers);
    try {
      this.facts = requestFacts(this.req);
      this.routing = this.proxy.dispatch(this.req, this.facts, this.obs, this.requestId);
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
    if (this.recorded) return;
    const routing = this.routing!;
    if (routing.unrouted) return this.fail(routing.unrouted);
    if (!routing.backend) return this.fail(new KedgeError("no-backend", 502, "no backend for this request"));
    if (routing.maxBodyBytes > 0 && this.req.contentLength > routing.maxBodyBytes) return this.fail(bodyTooLarge(routing.maxBodyBytes));
    this.res.sendContinue?.();
    this.buildHead(routing);
    this.backend = routing.backend;
    if (routing.retry !== undefined) this.applyRetryPolicy(routing.retry);
    const pending = this.pendingResolution;
    if (!pending) return this.attempt();
    let waited = false;
    const go = () => {
      if (waited) return;
      waited = true;
      clearTimeout(timer);
      this.attempt();
    };
    const timer = setTimeout(go, this.backend.poolOptions.connectTimeoutMs);
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
      absoluteScheme: routing.absoluteForm ? facts.uriScheme : undefined,
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

  private applyRetryPolicy(policy: RetryPolicy): void {
    this.retryPolicy = policy;
    this.idempotent = isIdempotent(this.req.method);
    // bodyLength < 0: a length not known yet, kept until it outgrows the limit.
    if (this.idempotent && this.bodyLength !== 0 && this.bodyLength <= resendLimitBytes) this.kept = [];
  }

  private attempt(): void {
    if (this.recorded) return;
    let picked;
    try {
      picked = this.next();
    } catch (e) {
      this.fail(e as KedgeError);
      return;
    }
    picked.pool.acquire(this);
  }

  // PoolClient: the pool's answer to acquire() or dial().
  granted(conn: H1Connection): void {
    this.send(conn);
  }

  failed(err: UpstreamError): void {
    this.upstreamFailed(err);
  }

  private send(conn: H1Connection): void {
    if (this.recorded) {
      conn.pool.release(conn);
      return;
    }
    this.conn = conn;
    const endpoint = this.endpoint!;
    if (this.obs) this.obs.sentUpstream(endpoint.address, endpoint.tier);
    const head = this.head!;
    // Another cluster's kedge gets the hop count and kedge's credential there; an attempt elsewhere does not.
    const set = this.routing!.setHeaders;
    head.set = endpoint.hop === undefined ? set : endpoint.hop.fields(this.req.headers[hopsHeader], set);
    const bodyless = this.bodyLength === 0;
    conn.begin(writeUpstreamHead(headWriter.start(), head), this.req.method === "HEAD", this, bodyless, this.upgrade !== undefined, this.retryPolicy?.perTryTimeoutMs);
    if (!bodyless) this.sendBody(conn);
  }

  /** The body to this attempt: what an earlier attempt sent (kept), then the rest as it arrives. */
  private sendBody(conn: H1Connection): void {
    const kept = this.kept;
    if (kept !== undefined && kept.length > 0) {
      this.bodyStarted = true;
      for (const chunk of kept) this.writeChunk(conn, chunk);
    }
    if (this.bodyDone) return this.endBody(conn);
    this.pipeBody(conn);
  }

  private pipeBody(conn: H1Connection): void {
    const first = this.bodyTo === undefined;
    this.bodyTo = conn;
    if (first) this.req.body.read(this);
    else this.req.body.resume();
  }

  /** Between attempts the client's body waits, so none of it arrives with nowhere to go. */
  private pauseBody(): void {
    if (this.bodyTo !== undefined && !this.bodyDone) this.req.body.pause();
  }

  // BodyReader, called by the request body.
  bodyData(chunk: Buffer): void {
    if (this.recorded) return;
    if (this.obs) this.obs.bytesIn += chunk.length;
    // A body of unknown length (chunked, HTTP/2) is counted as it streams.
    const max = this.routing!.maxBodyBytes;
    if (max > 0 && (this.bodyBytes += chunk.length) > max) {
      this.conn?.abort();
      this.conn = undefined;
      return this.fail(bodyTooLarge(max));
    }
    const kept = this.kept;
    if (kept !== undefined) {
      if ((this.keptBytes += chunk.length) <= resendLimitBytes) kept.push(chunk);
      else this.kept = undefined;
    }
    const conn = this.conn;
    if (conn === undefined || conn !== this.bodyTo) return;
    this.bodyStarted = true;
    if (!this.writeChunk(conn, chunk)) {
      const body = this.req.body;
      body.pause();
      conn.onWritable(() => body.resume());
    }
  }

  bodyEnd(): void {
    this.bodyDone = true;
    const conn = this.conn;
    if (conn === undefined || conn !== this.bodyTo) return;
    this.endBody(conn);
  }

  /** Writes one piece of the body, framed as a chunk when its length is not known; false: wait for onWritable. */
  private writeChunk(conn: H1Connection, chunk: Buffer): boolean {
    if (this.bodyLength >= 0) return conn.write(chunk);
    conn.write(Buffer.from(`${chunk.length.toString(16)}\r\n`));
    const ok = conn.write(chunk);
    return conn.write(crlf) && ok;
  }

  private endBody(conn: H1Connection): void {
    if (this.bodyLength < 0) conn.write(lastChunk);
    conn.endRequest();
  }

  // ExchangeHandlers, called by the connection.
  onHead(head: ResponseHead): void {
    if (head.status === 101) return this.switchProtocols(head);
    if (this.retryPolicy !== undefined) {
      if (head.status >= 502 && head.status <= 504 && this.retryAnswer(statusReasons[head.status - 502])) return;
      this.kept = undefined; // the answer goes to the client: nothing is sent again now
    }
    this.status = head.status;
    if (head.status >= 500) this.answered(true);
    if (this.obs) this.obs.firstByteAt = performance.now();
    const tags = this.proxy.tagsResponses;
    if (this.res.writeHeadLines) {
      const fields = downstreamHeadLines(head, tags);
      if (tags) fields.backendName = this.backendName;
      if (!fields.hasRequestId) fields.requestId = this.requestId;
      return this.res.writeHeadLines(head.status, fields);
    }
    const headers: OutgoingHttpHeaders = downstreamHeaders(head, this.req.protocol === "h2", tags);
    if (tags) headers["x-kedge-backend-name"] = this.backendName;
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
    this.conn = undefined;
    const i = head.names.indexOf("upgrade");
    const offered = i >= 0 ? head.rawHeaders[2 * i + 1] : "";
    if (offered.toLowerCase() !== this.upgrade!.toLowerCase()) {
      conn.abort();
      return this.fail(new KedgeError("backend-transport-closed", 502, `backend ${this.backendName} switched to ${JSON.stringify(offered.slice(0, 50))}, not the ${this.upgrade} asked for`));
    }
    this.succeeded();
    this.answered(false);
    this.status = 101;
    if (this.obs) this.obs.firstByteAt = performance.now();
    const fields = downstreamHeadLines(head, this.proxy.tagsResponses);
    fields.lines = `connection: upgrade\r\nupgrade: ${offered}\r\n`;
    if (this.proxy.tagsResponses) fields.backendName = this.backendName;
    fields.requestId = this.requestId;
    const client = this.res.switchProtocols!(fields);
    if (!client) {
      conn.abort();
      return this.done(499);
    }
    const obs = this.obs;
    recordFinished(this.proxy.metrics, this, 101, true); // its access line waits for the splice to close, with its bytes
    const upstream = conn.switchProtocols();
    const closed = (end: TunnelEnd) => recordTunnelClosed(this.proxy.metrics, this, obs, 101, end);
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
    this.succeeded();
    if (this.status < 500) this.answered(false);
    if (this.obs && last) this.obs.bytesOut += last.length;
    this.res.end(last);
    // The backend may answer before reading the whole request body: discard the rest.
    this.conn = undefined;
    if (this.req.hasBody) this.req.body.resume();
    this.done(this.status);
  }

  onError(err: UpstreamError): void {
    this.upstreamFailed(err);
  }

  private upstreamFailed(err: UpstreamError): void {
    this.conn = undefined;
    if (this.recorded) return;
    const failure = attemptFailure(err);
    // Reset, timed out or garbled after the request went (a 5xx head was counted already).
    if (failure === undefined && this.status < 500) this.answered(true);
    if (failure !== undefined) {
      if (this.retry(failure, !this.bodyStarted || this.kept !== undefined)) {
        this.pauseBody();
        if (failure !== "unprocessed") return this.attempt();
        const pool = this.sameEndpoint();
        if (pool) return pool.dial(this);
      } else if (failure !== "unprocessed") {
        return this.fail(new KedgeError("no-connection-to-all-resolved-addresses", 502, `backend ${this.backendName}: ${err.message}`));
      }
    } else if (this.retryPolicy !== undefined && !err.responseStarted) {
      const reason = err.failure === "closed" ? "reset" : err.failure === "response-timeout" ? "timeout" : undefined;
      if (reason !== undefined && this.retryAnswer(reason)) return;
    }
    if (err.failure === "response-timeout") return this.fail(new KedgeError("backend-timeout", 504, `backend ${this.backendName}: ${err.message}`));
    this.fail(new KedgeError("backend-transport-closed", 502, `backend ${this.backendName}: ${err.message}`));
  }

  /** The backend saw the request and this attempt failed: true when the route's policy sent it again. */
  private retryAnswer(reason: RetryReason): boolean {
    if (!this.retryAnswered(reason, this.idempotent && (this.bodyLength === 0 || this.kept !== undefined))) return false;
    // What is left of a failed answer is not worth reading: its connection goes.
    this.conn?.abort();
    this.conn = undefined;
    this.pauseBody();
    this.attempt();
    return true;
  }

  protected override retryCounted(reason: RetryReason, made: boolean): void {
    recordRetry(this.proxy.metrics, this, reason, made);
  }

  private clientGone(): void {
    if (this.recorded) return;
    this.conn?.abort();
    this.conn = undefined;
    this.done(499);
  }

  private fail(err: KedgeError): void {
    if (this.recorded) return;
    // The rest of a refused body is not worth reading: close once the answer is out.
    if (err.status === 413) this.res.lastOnConnection();
    recordError(this.proxy.metrics, this, err.type);
    sendError(this.res, err, this.requestId, this.proxy.errorHeader);
    if (this.req.hasBody) this.req.body.resume();
    this.done(err.status);
  }

  private done(status: number): void {
    recordFinished(this.proxy.metrics, this, status);
  }
}

/** Proxies one HTTP request the way `proxy` routes it. */
export function exchange(proxy: HttpProxy, req: IngressRequest, res: IngressResponse): void {
  new HttpExchange(proxy, req, res).run();
}
