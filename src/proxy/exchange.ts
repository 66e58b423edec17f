import type { OutgoingHttpHeaders } from "node:http";
import { Attempts } from "../backend/attempts.js";
import type { HttpBackend } from "../backend/http-backend.js";
import { hopsHeader } from "../backend/kedge-tier.js";
import { isIdempotent, type RetryPolicy, type RetryReason } from "../backend/retry-policy.js";
import { asKedgeError, KedgeError } from "../errors.js";
import type { Observation } from "../observe/observer.js";
import type { H1Connection, UpstreamError } from "../upstream/h1-connection.js";
import type { ResponseHead } from "../upstream/response-head.js";
import { headWriter } from "../net/head-writer.js";
import { downstreamHeadLines, downstreamHeaders, writeUpstreamHead, type RequestIdParts, type UpstreamHeadInput } from "../net/hop-headers.js";
import { sendError } from "./error-response.js";
import { forwardChunk, forwardEnd, keepBody, sendBody } from "./forwarded-body.js";
import type { HttpProxy, Routing } from "./http-proxy.js";
import { retryAnswer, upstreamFailed, type RetryingExchange } from "./http-retry.js";
import type { IngressRequest, IngressResponse } from "./ingress.js";
import { recordError, recordFinished, recordRetry, recordStarted, type RecordedHttp } from "./record.js";
import { incomingRequestId, requestFacts, type ParsedRequest } from "./request.js";
import { httpAnswerReason } from "./retry-reasons.js";
import { switchProtocols, type SwitchingExchange } from "./upgrade.js";

const bodyTooLarge = (max: number) => new KedgeError("bad-request", 413, `request body larger than ${max} bytes`);

/** One proxied request: its attempts at the backend (the policy it extends), streaming both ways. */
class HttpExchange extends Attempts<HttpBackend> implements RecordedHttp, RetryingExchange, SwitchingExchange, RequestIdParts {
  readonly protocol = "http";
  recorded = false;
  readonly startedAt = performance.now();
  // The request id, as the head writers take it.
  idHead = "";
  idTail = "";
  private routing: Routing | undefined;
  private facts: ParsedRequest | undefined;
  /** What the upstream request head is made of, kept for a retry on another connection. */
  private head: UpstreamHeadInput | undefined;
  /** The protocol asked of the backend (the client's Upgrade), when this proxy and response can switch. */
  upgrade: string | undefined;
  // ForwardedBody: the request body's way upstream (forwarded-body.ts).
  bodyLength = 0;
  conn: H1Connection | undefined;
  bodyTo: H1Connection | undefined;
  bodyStarted = false;
  bodyDone = false;
  kept: Buffer[] | undefined = undefined;
  keptBytes = 0;
  /** Body bytes so far, against the route's limit. */
  private bodyBytes = 0;
  /** The method is idempotent and the route has a retry policy: an answer may be retried. */
  idempotent = false;
  /** The status of the answer passed on; 0 before one. */
  status = 0;
  obs: Observation | undefined;

  constructor(
    readonly proxy: HttpProxy,
    readonly req: IngressRequest,
    readonly res: IngressResponse,
  ) {
    super();
  }

  get requestId(): string {
    return this.idTail === "" ? this.idHead : this.idHead + this.idTail;
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
    const incoming = incomingRequestId(this.req.headers);
    if (incoming !== undefined) this.idHead = incoming;
    else this.proxy.newRequestId(this);
    this.obs = this.proxy.metrics.observer.start(this.req.headers);
    try {
      this.facts = requestFacts(this.req);
      this.routing = this.proxy.dispatch(this.req, this.facts, this.obs, this.requestId);
    } catch (e) {
      this.fail(asKedgeError(e));
      return;
    }
    this.res.onGone(this);
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
      headers: facts.headers, // the request's, less what routing dropped
      clientIp: this.req.remoteAddress,
      scheme: this.req.scheme,
      requestId: this,
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
    if (this.idempotent) keepBody(this);
  }

  attempt(): void {
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
    upstreamFailed(this, err);
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
    if (!bodyless) sendBody(this, conn);
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
    forwardChunk(this, chunk);
  }

  bodyEnd(): void {
    forwardEnd(this);
  }

  // ExchangeHandlers, called by the connection.
  onHead(head: ResponseHead): void {
    if (head.status === 101) return switchProtocols(this, head);
    if (this.retryPolicy !== undefined) {
      const reason = httpAnswerReason(head.status);
      if (reason !== undefined && retryAnswer(this, reason)) return;
      this.kept = undefined; // the answer goes to the client: nothing is sent again now
    }
    this.status = head.status;
    if (head.status >= 500) this.answered(true);
    if (this.obs) this.obs.firstByteAt = performance.now();
    const tags = this.proxy.tagsResponses;
    if (this.res.writeHeadLines) {
      const fields = downstreamHeadLines(head, tags);
      if (tags) fields.backendName = this.backendName;
      if (!fields.hasRequestId) fields.requestId = this;
      return this.res.writeHeadLines(head.status, fields);
    }
    const headers: OutgoingHttpHeaders = downstreamHeaders(head, this.req.protocol === "h2", tags);
    if (tags) headers["x-kedge-backend-name"] = this.backendName;
    headers["x-kedge-request-id"] ??= this.requestId;
    this.res.writeHead(head.status, headers);
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
    upstreamFailed(this, err);
  }

  protected override retryCounted(reason: RetryReason, made: boolean): void {
    recordRetry(this.proxy.metrics, this, reason, made);
  }

  /** The client went before its response was complete (GoneListener): the backend's request is dropped, counted as 499. */
  clientGone(): void {
    if (this.recorded) return;
    this.conn?.abort();
    this.conn = undefined;
    this.done(499);
  }

  fail(err: KedgeError): void {
    if (this.recorded) return;
    // The rest of a refused body is not worth reading: close once the answer is out.
    if (err.status === 413) this.res.lastOnConnection();
    recordError(this.proxy.metrics, this, err.type);
    sendError(this.res, err, this.requestId, this.proxy.errorHeader);
    if (this.req.hasBody) this.req.body.resume();
    this.done(err.status);
  }

  done(status: number): void {
    recordFinished(this.proxy.metrics, this, status);
  }
}

/** Proxies one HTTP request the way `proxy` routes it. */
export function exchange(proxy: HttpProxy, req: IngressRequest, res: IngressResponse): void {
  new HttpExchange(proxy, req, res).run();
}
