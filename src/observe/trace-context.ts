/** W3C Trace Context (https://www.w3.org/TR/trace-context/): the traceparent header. */

export interface TraceParent {
  /** 32 lower-case hex digits, not all zero. */
  readonly traceId: string;
  /** The caller's span: 16 lower-case hex digits, not all zero. */
  readonly parentId: string;
  /** trace-flags, two hex digits; bit 0 is "sampled". */
  readonly flags: string;
  readonly sampled: boolean;
}

// version-traceid-parentid-flags; versions above 00 may append "-…" fields, which are ignored (§3.2.4).
const traceparentPattern = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;
const zeroTraceId = "0".repeat(32);
const zeroSpanId = "0".repeat(16);

/**
 * The caller's traceparent, or undefined when it is absent or invalid (upper-case hex, all-zero
 * ids, version ff, extra fields on version 00, or the header sent twice): kedge then starts a new trace.
 */
export function parseTraceparent(value: string | string[] | undefined): TraceParent | undefined {
  if (typeof value !== "string") return undefined;
  const m = traceparentPattern.exec(value.trim());
  if (!m) return undefined;
  const [, version, traceId, parentId, flags, rest] = m;
  if (version === "ff" || (version === "00" && rest !== undefined)) return undefined;
  if (traceId === zeroTraceId || parentId === zeroSpanId) return undefined;
  return { traceId, parentId, flags, sampled: (parseInt(flags, 16) & 1) === 1 };
}

export function formatTraceparent(traceId: string, spanId: string, sampled: boolean): string {
  return `00-${traceId}-${spanId}-${sampled ? "01" : "00"}`;
}

// Random ids come from one buffer refilled 4 KiB at a time: one crypto call per ~170 spans.
const pool = Buffer.allocUnsafe(4096);
let offset = pool.length;

function randomHex(bytes: number): string {
  if (offset + bytes > pool.length) {
    crypto.getRandomValues(pool);
    offset = 0;
  }
  const hex = pool.toString("hex", offset, offset + bytes);
  offset += bytes;
  return hex;
}

export function newTraceId(): string {
  let id = randomHex(16);
  while (id === zeroTraceId) id = randomHex(16);
  return id;
}

export function newSpanId(): string {
  let id = randomHex(8);
  while (id === zeroSpanId) id = randomHex(8);
  return id;
}
