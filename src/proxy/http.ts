import type { OutgoingHttpHeaders } from "node:http";
import type { Endpoint } from "../backend/endpoint.js";
import { defaults, type HttpBackend } from "../backend/http-backend.js";
import { asKedgeError, KedgeError, noRoute } from "../errors.js";
import type { Metrics } from "../observe/metrics.js";
import type { Runtime } from "../runtime.js";
import type { H1Connection, UpstreamError } from "../upstream/h1-connection.js";
import type { ResponseHead } from "../upstream/response-parser.js";
import { buildUpstreamHead, downstreamHeaders } from "./headers.js";
import type { IngressRequest, IngressResponse } from "./ingress.js";
import { newRequestId, requestFacts } from "./request.js";
import type { RoutePolicy } from "../auth/policy.js";

export interface ProxyContext {
  /** The live runtime; a request keeps the one it started with. */
  runtime(): Runtime;
  readonly metrics: Metrics;
}

const maxEndpointAttempts = 3;
const crlf = Buffer.from("\r\n");
const lastChunk = Buffer.from("0\r\n\r\n");

/** Requests in flight, for graceful shutdown. */
export const inflight = { count: 0 };

/** Writes kedge's error contract: status, x-kedge-error(-type) headers and a short text body. */
export function sendError(res: IngressResponse, err: KedgeError, requestId: string): void {
  if (res.headersSent) {
    res.abort();
    return;
  }
  const body = Buffer.from(`${err.message}\n`);
  res.writeHead(err.status, {
    "content-type": "text/plain; charset=utf-8",
    "content-length": body.length,
    "x-kedge-error": err.message.replace(/[\r\n]/g, " "),
    "x-kedge-error-type": err.type,
    "x-kedge-request-id": requestId,
  });
  res.write(body);
  res.end();
}

/** One proxied request: picks endpoints, retries what is safe to retry, streams both ways. */
class HttpExchange {
  private readonly started = performance.now();
  private requestId = "";
  private backend: HttpBackend | undefined;
  private backendLabel = "none";
  private head: Uint8Array | undefined;
  private bodyLength = 0;
  private endpoint: Endpoint | undefined;
  private conn: H1Connection | undefined;
  private failedOn: Set<Endpoint> | undefined;
  private attempts = 0;
  private staleRetried = false;
  private bodyStarted = false;
  private finished = false;
  private status = 0;
  /** No route matched: answered once authentication has passed. */
  private unrouted: KedgeError | undefined;

  constructor(
    private readonly ctx: ProxyContext,
    private readonly req: IngressRequest,
    private readonly res: IngressResponse,
  ) {}

  run(): void {
    inflight.count++;
    const incomingId = this.req.headers["x-kedge-request-id"];
    this.requestId = typeof incomingId === "string" && incomingId.length <= 128 ? incomingId : newRequestId();
    let decision: Promise<unknown> | undefined;
    try {
      const runtime = this.ctx.runtime();
      const policy = this.route(runtime);
      // Authentication comes before a no-route answer: unauthenticated callers learn nothing of the routes.
      decision = runtime.access.check(policy, this.req.headers["proxy-authorization"], this.req.socket);
    } catch (e) {
      this.fail(asKedgeError(e));
      return;
    }
    this.res.onGone(() => this.clientGone());
    if (decision) {
      decision.then(
        () => this.proceed(),
        (e) => this.fail(asKedgeError(e)),
      );
    } else this.proceed();
  }

  private proceed(): void {
    if (this.finished) return;
    if (this.unrouted) return this.fail(this.unrouted);
    const pending = this.backend!.pendingResolution;
    if (!pending) return this.attempt();
    let waited = false;
    const go = () => {
      if (waited) return;
      waited = true;
      clearTimeout(timer);
      this.attempt();
    };
    const timer = setTimeout(go, this.backend!.poolOptions.connectTimeoutMs);
    void pending.then(go);
  }

  /** Finds the backend; returns the route's access policy (undefined: the global one). */
  private route(runtime: Runtime): RoutePolicy | undefined {
    const facts = requestFacts(this.req);
    const route = runtime.httpRoutes.match(facts);
    if (route) {
      this.backend = runtime.httpBackends.get(route.backendName);
      if (!this.backend) throw new KedgeError("no-backend", 502, `unknown backend ${route.backendName}`);
      this.backendLabel = route.backendName;
    } else {
      const target = runtime.httpAdhoc.match(facts.host, facts.explicitPort ? facts.port : undefined);
      if (!target) {
        this.unrouted = noRoute(`${facts.host}:${facts.port}${facts.path}`);
        return undefined;
      }
      this.backend = runtime.adhoc.http.get(target.host, target.port);
      this.backendLabel = "adhoc";
    }
    this.bodyLength = this.req.hasBody ? this.req.contentLength : 0;
    this.head = Buffer.from(
      buildUpstreamHead({
        method: this.req.method,
        path: facts.origin,
        host: facts.authority,
        headers: this.req.headers,
        clientIp: this.req.remoteAddress,
        scheme: this.req.scheme,
        requestId: this.requestId,
        bodyLength: this.bodyLength,
      }),
      "latin1",
    );
    return route?.policy;
  }

  private attempt(): void {
    if (this.finished) return;
    let picked;
    try {
      picked = this.backend!.pick(this.failedOn);
    } catch (e) {
      this.fail(e as KedgeError);
      return;
    }
    this.attempts++;
    this.endpoint = picked.endpoint;
    this.endpoint.outstanding++;
    const endpoint = this.endpoint;
    picked.pool.acquire(
      (conn) => this.send(conn),
      (err) => this.upstreamFailed(err, endpoint),
    );
  }

  private send(conn: H1Connection): void {
    if (this.finished) {
      conn.pool.release(conn);
      return;
    }
    this.conn = conn;
    const bodyless = this.bodyLength === 0;
    conn.begin(this.head!, this.req.method === "HEAD", this, bodyless);
    if (!bodyless) this.pipeBody(conn);
  }

  private pipeBody(conn: H1Connection): void {
    const body = this.req.body;
    const chunked = this.bodyLength < 0;
    const onData = (chunk: Buffer) => {
      if (this.conn !== conn) return;
      this.bodyStarted = true;
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
    this.status = head.status;
    const headers: OutgoingHttpHeaders = downstreamHeaders(head.rawHeaders, this.req.protocol === "h2");
    headers["x-kedge-backend-name"] = this.backendLabel;
    headers["x-kedge-request-id"] = this.requestId;
    this.res.writeHead(head.status, headers);
  }

  onBody(chunk: Uint8Array): boolean {
    if (this.res.write(chunk)) return true;
    const conn = this.conn;
    this.res.onceDrain(() => conn?.resume());
    return false;
  }

  onEnd(last?: Uint8Array): void {
    this.endpoint!.outstanding--;
    this.endpoint!.markHealthy();
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
      if (err.failure !== "pool-timeout") endpoint.markFailed(this.backend!.failureBackoffMs, defaults.maxFailureBackoffMs);
      (this.failedOn ??= new Set()).add(endpoint);
      if (this.attempts < Math.min(maxEndpointAttempts, this.backend!.endpointCount)) return this.attempt();
      return this.fail(new KedgeError("no-connection-to-all-resolved-addresses", 502, `backend ${this.backendLabel}: ${err.message}`));
    }
    if (err.failure === "stale" && !this.bodyStarted && !this.staleRetried) {
      // A pooled keep-alive connection the backend had closed: resend on a fresh one.
      this.staleRetried = true;
      const pool = this.backend!.poolFor(endpoint);
      if (pool) {
        endpoint.outstanding++;
        return pool.dial((c) => this.send(c), (e) => this.upstreamFailed(e, endpoint));
      }
    }
    if (err.failure === "response-timeout") return this.fail(new KedgeError("backend-timeout", 504, `backend ${this.backendLabel}: ${err.message}`));
    this.fail(new KedgeError("backend-transport-closed", 502, `backend ${this.backendLabel}: ${err.message}`));
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
    this.ctx.metrics.proxyErrors.inc([this.backendLabel, err.type]);
    sendError(this.res, err, this.requestId);
    if (this.req.hasBody) this.req.body.resume();
    this.done(err.status);
  }

  private done(status: number): void {
    if (this.finished) return;
    this.finished = true;
    inflight.count--;
    const code = String(status);
    this.ctx.metrics.httpRequests.inc([this.backendLabel, code]);
    this.ctx.metrics.httpLatency.observe([this.backendLabel, code], (performance.now() - this.started) / 1000);
  }
}

export function proxyHttp(ctx: ProxyContext, req: IngressRequest, res: IngressResponse): void {
  new HttpExchange(ctx, req, res).run();
}
