import type { IncomingHttpHeaders } from "node:http";

/**
 * A header field's value: text[start..end) without the optional whitespace around it (SP and HTAB,
 * RFC 9110 §5.6.3). One substring, where slice().trim() makes two.
 */
export function fieldValue(text: string, start: number, end: number): string {
  let c = text.charCodeAt(start);
  while (start < end && (c === 32 || c === 9)) c = text.charCodeAt(++start);
  c = text.charCodeAt(end - 1);
  while (end > start && (c === 32 || c === 9)) c = text.charCodeAt(--end - 1);
  return text.slice(start, end);
}

/**
 * The decimal number in text[start..end) between optional whitespace, as Content-Length allows it
 * (RFC 9110 §8.6: 1*DIGIT); -1 when it is anything else or longer than 15 digits (beyond exact
 * integers). Read by char codes: a regex test and Number() per head show in a profile (bench/README.md).
 */
export function decimalIn(text: string, start: number, end: number): number {
  let c = text.charCodeAt(start);
  while (start < end && (c === 32 || c === 9)) c = text.charCodeAt(++start);
  c = text.charCodeAt(end - 1);
  while (end > start && (c === 32 || c === 9)) c = text.charCodeAt(--end - 1);
  if (start === end || end - start > 15) return -1;
  let value = 0;
  for (let i = start; i < end; i++) {
    const d = text.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return -1;
    value = value * 10 + d;
  }
  return value;
}

/** `text[at..at+lower.length)` spells `lower` (a lower-case name) in any case; only letters fold. */
export function nameIs(text: string, at: number, lower: string): boolean {
  for (let i = 0; i < lower.length; i++) {
    const c = text.charCodeAt(at + i);
    const l = lower.charCodeAt(i);
    if (c !== l && !(l >= 97 && l <= 122 && c === l - 32)) return false;
  }
  return true;
}

/** Field names as peers spell them → lower case. Clients and backends send the same few names again and again. */
const lowerNames = new Map<string, string>();
const maxCachedNames = 1000;

export function lowerFieldName(name: string): string {
  let lower = lowerNames.get(name);
  if (lower === undefined) {
    lower = name.toLowerCase();
    if (lowerNames.size < maxCachedNames) lowerNames.set(name, lower);
  }
  return lower;
}

/** The comma-separated `value` (already trimmed) holds `wanted` (lower case), in any case (RFC 9110 §5.6.1). */
export function hasToken(value: string, wanted: string): boolean {
  // Peers send one token ("keep-alive", "close") nearly always: no split for those.
  if (value.length === wanted.length && value.toLowerCase() === wanted) return true;
  if (!value.includes(",")) return false;
  for (const t of value.split(",")) if (t.trim().toLowerCase() === wanted) return true;
  return false;
}

/**
 * Lines marked to leave out of a head's text: [start, end, kind] triples, in order. A line is left
 * out unless its kind's bit is set in `keptKinds`.
 */
export type LineDrops = readonly number[];

/** A request's fields as an object of kedge's own, to change; no prototype, as the HTTP/2 decoder's (a field may be named "__proto__"). */
export function copyFields(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const copy: IncomingHttpHeaders = Object.create(null);
  for (const name in headers) {
    const v = headers[name];
    copy[name] = Array.isArray(v) ? [...v] : v;
  }
  return copy;
}
