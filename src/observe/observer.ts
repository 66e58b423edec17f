import type { IncomingHttpHeaders } from "node:http";
import type { ObservabilityConfig } from "../gen/kedge/config/v1/observability_pb.js";
import { messageKey } from "../config/message-key.js";
import { AccessLogWriter, grpcLineLevel, httpLineLevel, identityOf, levelRank, loggedHost, loggedPath, millis, parseLineLevel, type LineLevel } from "./access-log.js";
import { OtlpExporter, type ExportCounters, type SpanAttribute } from "./otlp.js";
import { formatTraceparent, newSpanId, newTraceId, parseTraceparent } from "./trace-context.js";

/**
 * What one request or call records for its access line and span. Only made when access logging
 * samples the request or tracing is on: otherwise the request path allocates nothing for it.
 */
export class Observation {
  readonly startedAt = performance.now();
  /** What the access decision resolved with (the verified identity), if it was asynchronous. */
  identity: unknown = undefined;
  /** host:port of the endpoint the request went to last. */
  endpoint = "";
  /** That endpoint's tier in its backend: 0 its own resolver, 1… its failover tiers. */
  tier = 0;
  /** kedge's error type when kedge answered instead of the backend. */
  errorType = "";
  /** performance.now() when the request went upstream, and when the response head came back. */
  upstreamAt = 0;
  firstByteAt = 0;
  /** Request and response body bytes: a gRPC call counts them in its RequestReplay and GrpcRelay, an HTTP exchange in its own data path. */
  bytesIn = 0;
  bytesOut = 0;
  /** Why each attempt after the first was made (kedge_retries_total's reasons), in order; undefined: one attempt. */
  retryReasons: string[] | undefined = undefined;
  /**
   * Fields a forward proxy (winch) adds to the line, after kedge's so they may fill one kedge
   * leaves open (the host the client asked for, a request id winch made): its route's match, the
   * kedge it went to, auth sources by name. Names only, never a credential.
   */
  fields: Readonly<Record<string, string | undefined>> | undefined = undefined;

  constructor(
    /** An access line is wanted (sampled, or forced by x-kedge-info-logs). */
    readonly logged: boolean,
    readonly forced: boolean,
    /** The trace this request belongs to; "" when unknown (tracing off, no valid traceparent). */
    readonly traceId: string,
    /** kedge's span; "" when tracing is off. */
    readonly spanId: string,
    /** The caller's span (from its traceparent); "" when kedge started the trace. */
    readonly parentSpanId: string,
    /** The span goes to the OTLP exporter. */
    readonly exported: boolean,
    /** What the backend gets as traceparent; undefined: the client's passes through untouched. */
    readonly traceparent: string | undefined,
  ) {}

  sentUpstream(endpoint: string, tier = 0): void {
    this.endpoint = endpoint;
    this.tier = tier;
    this.upstreamAt = performance.now();
  }

  retried(reason: string): void {
    (this.retryReasons ??= []).push(reason);
  }
}

/** The request as an access line names it (IngressRequest fits). */
export interface ObservedRequest {
  readonly protocol: string;
  readonly method: string;
  readonly authority: string;
  readonly remoteAddress: string;
  readonly socket: object | undefined;
}

interface AccessLogSettings {
  sampleRate: number;
  minLevel: number;
}

const forcedHeader = "x-kedge-info-logs";

function isForced(value: string | string[] | undefined): boolean {
  return typeof value === "string" && (value === "true" || value.toLowerCase() === "true");
}

/**
 * Access logs and tracing for every request one proxy handles. Configured (and reconfigured on
 * reload) from the observability config; until then `start` returns undefined at once.
 */
export class RequestObserver {
  private active = false;
  private accessLog: AccessLogSettings | undefined;
  private traceSampleRate: number | undefined;
  private exporter: OtlpExporter | undefined;
  private readonly writer = new AccessLogWriter();

  constructor(
    private readonly counters: ExportCounters,
    /** winch's lines name their protocol as its users think of it: http, connect or grpc. */
    private readonly forwardProxy = false,
  ) {}

  /** `accessLogPath`: lines are appended to this file instead of stdout (winch's server.access_log.path). */
  configure(config: ObservabilityConfig | undefined, accessLogPath = ""): void {
    this.writer.to(accessLogPath);
    const log = config?.accessLog;
    this.accessLog = log?.enabled ? { sampleRate: log.sampleRate ?? 1, minLevel: levelRank[parseLineLevel(log.level) ?? "info"] } : undefined;
    const tracing = config?.tracing;
    this.traceSampleRate = tracing?.enabled ? (tracing.sampleRate ?? 1) : undefined;
    const otlp = tracing?.enabled && tracing.otlp?.endpoint ? tracing.otlp : undefined;
    const current = this.exporter?.config;
    const same = current && otlp ? messageKey(current) === messageKey(otlp) : current === otlp;
    if (!same) {
      void this.exporter?.close();
      this.exporter = otlp ? new OtlpExporter(otlp, this.counters) : undefined;
    }
    this.active = this.accessLog !== undefined || this.traceSampleRate !== undefined;
  }

  /** The traces URL spans go to, if any (tests, the admin view). */
  get exportUrl(): string | undefined {
    return this.exporter?.url;
  }

  /** Sends the spans waiting for export. */
  flush(): Promise<void> {
    return this.exporter?.flush() ?? Promise.resolve();
  }

  async close(): Promise<void> {
    const exporter = this.exporter;
    this.exporter = undefined;
    this.active = false;
    this.writer.close();
    await exporter?.close();
  }

  /** Decides, from the request's headers, whether it is logged and how it is traced. */
  start(headers: IncomingHttpHeaders): Observation | undefined {
    if (!this.active) return undefined;
    const log = this.accessLog;
    let logged = false;
    let forced = false;
    if (log) {
      forced = isForced(headers[forcedHeader]);
      logged = forced || log.sampleRate >= 1 || (log.sampleRate > 0 && Math.random() < log.sampleRate);
    }
    const rate = this.traceSampleRate;
    if (!logged && rate === undefined) return undefined;
    const incoming = parseTraceparent(headers.traceparent);
    if (rate === undefined) return new Observation(logged, forced, incoming?.traceId ?? "", "", incoming?.parentId ?? "", false, undefined);
    const spanId = newSpanId();
    const traceId = incoming?.traceId ?? newTraceId();
    const sampled = incoming ? incoming.sampled : rate >= 1 || (rate > 0 && Math.random() < rate);
    // The caller's other flag bits are kept; only the parent id changes (W3C Trace Context §3.2.2.3).
    const traceparent = incoming ? `00-${traceId}-${spanId}-${incoming.flags}` : formatTraceparent(traceId, spanId, sampled);
    return new Observation(logged, forced, traceId, spanId, incoming?.parentId ?? "", sampled && this.exporter !== undefined, traceparent);
  }

  private wants(o: Observation, level: LineLevel): boolean {
    if (!o.logged) return false;
    if (o.forced) return true;
    const log = this.accessLog;
    return log !== undefined && levelRank[level] >= log.minLevel;
  }

  /** An HTTP request ended (answered, failed, or its client went away: 499). */
  finishHttp(o: Observation, requestId: string, req: ObservedRequest, path: string, status: number, route: string, backend: string): void {
    const endedAt = performance.now();
    const level = httpLineLevel(status);
    if (this.wants(o, level)) {
      const who = identityOf(o.identity, req.socket);
      this.writer.write(
        JSON.stringify({
          time: new Date().toISOString(),
          level,
          msg: "access",
          request_id: requestId,
          trace_id: o.traceId || undefined,
          span_id: o.spanId || undefined,
          client: req.remoteAddress,
          protocol: this.forwardProxy ? (req.method === "CONNECT" ? "connect" : "http") : req.protocol,
          method: req.method,
          host: loggedHost(req.authority),
          path: loggedPath(path),
          route,
          backend,
          endpoint: o.endpoint || undefined,
          tier: o.tier || undefined,
          ...o.fields,
          status,
          ...outcomeFields(o, who, endedAt),
        }),
      );
    }
    if (o.exported) {
      const attributes: SpanAttribute[] = [
        { key: "http.method", value: { stringValue: req.method } },
        { key: "http.route", value: { stringValue: route } },
        { key: "http.status_code", value: { intValue: String(status) } },
        { key: "kedge.backend", value: { stringValue: backend } },
      ];
      if (o.endpoint) attributes.push({ key: "kedge.endpoint", value: { stringValue: o.endpoint } });
      if (o.tier) attributes.push({ key: "kedge.tier", value: { intValue: String(o.tier) } });
      if (o.errorType) attributes.push({ key: "kedge.error_type", value: { stringValue: o.errorType } });
      if (o.retryReasons) attributes.push(attemptsAttribute(o.retryReasons));
      attributes.push({ key: "kedge.request_id", value: { stringValue: requestId } });
      this.export(o, `${req.method} ${backend}`, endedAt, attributes, status >= 500);
    }
  }

  /** A gRPC call ended with `code` (a grpc-status, or "cancelled" when the client went away). */
  finishGrpc(o: Observation, headers: IncomingHttpHeaders, socket: { remoteAddress?: string } | null | undefined, method: string, code: string, route: string, backend: string): void {
    const endedAt = performance.now();
    const level = grpcLineLevel(code);
    const numeric = /^\d+$/.test(code);
    if (this.wants(o, level)) {
      const who = identityOf(o.identity, socket);
      const requestId = headers["x-kedge-request-id"];
      this.writer.write(
        JSON.stringify({
          time: new Date().toISOString(),
          level,
          msg: "access",
          request_id: typeof requestId === "string" ? requestId.slice(0, 128) : undefined,
          trace_id: o.traceId || undefined,
          span_id: o.spanId || undefined,
          client: socket?.remoteAddress,
          protocol: "grpc",
          host: loggedHost(headers[":authority"] as string | undefined),
          grpc_method: loggedPath(method),
          route,
          backend,
          endpoint: o.endpoint || undefined,
          tier: o.tier || undefined,
          ...o.fields,
          grpc_status: numeric ? Number(code) : code,
          ...outcomeFields(o, who, endedAt),
        }),
      );
    }
    if (o.exported) {
      const slash = method.indexOf("/", 1);
      const attributes: SpanAttribute[] = [
        { key: "rpc.system", value: { stringValue: "grpc" } },
        { key: "rpc.service", value: { stringValue: slash > 0 ? method.slice(1, slash) : method.slice(1) } },
        { key: "rpc.method", value: { stringValue: slash > 0 ? method.slice(slash + 1) : "" } },
        // A call the client abandoned is CANCELLED (1) to the tracing backend.
        { key: "rpc.grpc.status_code", value: { intValue: numeric ? code : "1" } },
        { key: "kedge.route", value: { stringValue: route } },
        { key: "kedge.backend", value: { stringValue: backend } },
      ];
      if (o.endpoint) attributes.push({ key: "kedge.endpoint", value: { stringValue: o.endpoint } });
      if (o.tier) attributes.push({ key: "kedge.tier", value: { intValue: String(o.tier) } });
      if (o.retryReasons) attributes.push(attemptsAttribute(o.retryReasons));
      this.export(o, method.slice(1), endedAt, attributes, level === "error");
    }
  }

  private export(o: Observation, name: string, endedAt: number, attributes: SpanAttribute[], error: boolean): void {
    const origin = performance.timeOrigin;
    this.exporter?.add({ traceId: o.traceId, spanId: o.spanId, parentSpanId: o.parentSpanId, name, startMs: origin + o.startedAt, endMs: origin + endedAt, attributes, error });
  }
}

function attemptsAttribute(retryReasons: readonly string[]): SpanAttribute {
  return { key: "kedge.attempts", value: { intValue: String(retryReasons.length + 1) } };
}

/** The fields every access line ends with: error, who, bytes and durations. */
function outcomeFields(o: Observation, who: { cert?: string; token?: string }, endedAt: number) {
  return {
    error_type: o.errorType || undefined,
    cert_subject: who.cert,
    token_subject: who.token,
    bytes_in: o.bytesIn,
    bytes_out: o.bytesOut,
    duration_ms: millis(endedAt - o.startedAt),
    upstream_ttfb_ms: o.firstByteAt > 0 ? millis(o.firstByteAt - o.upstreamAt) : undefined,
    attempts: o.retryReasons ? o.retryReasons.length + 1 : undefined,
    retry_reasons: o.retryReasons,
    forced: o.forced || undefined,
  };
}
