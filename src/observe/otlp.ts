import type { OtlpExportConfig } from "../gen/kedge/config/v1/observability_pb.js";
import { version } from "../version.js";
import { log } from "./log.js";
import type { Counter } from "./prometheus.js";
import { redactUrl } from "../config/scrub.js";
import { durationMs } from "../config/duration.js";

/** An OTLP attribute in the JSON encoding: string values, or integers as decimal strings (int64). */
export type SpanAttribute = { key: string; value: { stringValue: string } | { intValue: string } };

/** One finished span of kedge's, as the request path hands it over: no encoding work yet. */
export interface SpanRecord {
  traceId: string;
  spanId: string;
  /** The caller's span; "" when kedge started the trace. */
  parentSpanId: string;
  name: string;
  /** Unix time in ms (fractional). */
  startMs: number;
  endMs: number;
  attributes: SpanAttribute[];
  error: boolean;
}

export interface ExportCounters {
  readonly spansExported: Counter;
  readonly spansDropped: Counter;
}

const spanKindServer = 2;
const statusUnset = 0;
const statusError = 2;

/** Unix ms (fractional) → nanoseconds as a decimal string, exact to the microsecond (no 2^53 overflow). */
function unixNanos(ms: number): string {
  const whole = Math.floor(ms);
  const nanos = Math.min(999_999, Math.round((ms - whole) * 1e6));
  return `${whole}${String(nanos).padStart(6, "0")}`;
}

/** The traces URL: a URL without a path gets OTLP/HTTP's default /v1/traces. */
export function tracesUrl(endpoint: string): string {
  const url = new URL(endpoint);
  if (url.pathname === "" || url.pathname === "/") url.pathname = "/v1/traces";
  return url.toString();
}

/**
 * Sends kedge's spans to an OTLP/HTTP collector as JSON (POST /v1/traces), batched: spans wait
 * in a bounded queue and are sent every flush interval or when a batch fills. A full queue drops
 * new spans (counted) rather than holding memory for a collector that is down. One export is in
 * flight at a time; a failed batch is dropped and counted, never retried.
 */
export class OtlpExporter {
  private queue: SpanRecord[] = [];
  private sending: Promise<void> | undefined;
  private readonly timer: ReturnType<typeof setInterval>;
  private failing = false;
  readonly url: string;
  /** The URL as logs show it: without a password. */
  private readonly shownUrl: string;
  private readonly headers: Record<string, string>;
  private readonly maxQueue: number;
  private readonly maxBatch: number;
  private readonly timeoutMs: number;
  private readonly resource: unknown;

  constructor(
    readonly config: OtlpExportConfig,
    private readonly counters: ExportCounters,
  ) {
    this.url = tracesUrl(config.endpoint);
    this.shownUrl = redactUrl(this.url);
    this.headers = { ...config.headers, "content-type": "application/json" };
    this.maxQueue = config.maxQueueSize || 2048;
    this.maxBatch = config.maxBatchSize || 512;
    this.timeoutMs = durationMs(config.timeout, 10_000);
    this.resource = {
      attributes: [
        { key: "service.name", value: { stringValue: config.serviceName || "kedge" } },
        { key: "service.version", value: { stringValue: version.kedge } },
      ],
    };
    this.timer = setInterval(() => void this.flush(), durationMs(config.flushInterval, 5_000));
    this.timer.unref();
  }

  add(span: SpanRecord): void {
    if (this.queue.length >= this.maxQueue) {
      this.counters.spansDropped.inc(["queue_full"]);
      return;
    }
    this.queue.push(span);
    if (this.queue.length >= this.maxBatch && !this.sending) void this.flush();
  }

  /** Sends everything queued, a batch at a time; resolves when the queue is empty or a send failed. */
  flush(): Promise<void> {
    if (this.sending) return this.sending;
    if (this.queue.length === 0) return Promise.resolve();
    this.sending = this.drain().finally(() => (this.sending = undefined));
    return this.sending;
  }

  private async drain(): Promise<void> {
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, this.maxBatch);
      if (!(await this.send(batch))) return;
    }
  }

  private async send(batch: SpanRecord[]): Promise<boolean> {
    const body = JSON.stringify({ resourceSpans: [{ resource: this.resource, scopeSpans: [{ scope: { name: "kedge", version: version.kedge }, spans: batch.map(encodeSpan) }] }] });
    try {
      const res = await fetch(this.url, { method: "POST", headers: this.headers, body, signal: AbortSignal.timeout(this.timeoutMs) });
      await res.arrayBuffer();
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      this.counters.spansExported.inc([], batch.length);
      if (this.failing) log.info("trace export recovered", { endpoint: this.shownUrl });
      this.failing = false;
      return true;
    } catch (e) {
      this.counters.spansDropped.inc(["export_failed"], batch.length);
      // Once per outage, not once per flush.
      if (!this.failing) log.warn("trace export failed; spans are dropped until the collector answers", { endpoint: this.shownUrl, error: (e as Error).message.replaceAll(this.url, this.shownUrl) });
      this.failing = true;
      return false;
    }
  }

  /** Stops the timer and sends what is queued (shutdown, or a reload that changed the exporter). */
  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }
}

function encodeSpan(span: SpanRecord): unknown {
  return {
    traceId: span.traceId,
    spanId: span.spanId,
    ...(span.parentSpanId ? { parentSpanId: span.parentSpanId } : {}),
    name: span.name,
    kind: spanKindServer,
    startTimeUnixNano: unixNanos(span.startMs),
    endTimeUnixNano: unixNanos(span.endMs),
    attributes: span.attributes,
    status: { code: span.error ? statusError : statusUnset },
  };
}
