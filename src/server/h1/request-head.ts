import type { IncomingHttpHeaders } from "node:http";
import { KedgeError } from "../../errors.js";
import { bytesNameIs, LastValue, valueEnd, valueStart } from "../../net/field-bytes.js";
import { decimalIn, fieldValue, hasToken } from "../../net/fields.js";
import { latin1Text } from "../../net/latin1.js";
import { notForwardedUpstream, RequestDrop, switchable, type ForwardLines } from "../../net/hop-headers.js";
import { bad, findHeadEnd, scanned, tooLong, type HeadLimits } from "./head-scan.js";

export { findHeadEnd, type HeadLimits };

/** One parsed HTTP/1.x request head. */
export interface RequestHead {
  method: string;
  target: string;
  versionMinor: number;
  /** Lower-case names, repeated fields combined the way node:http combines them. */
  headers: IncomingHttpHeaders;
  /** Content-Length; -1 for a chunked body. */
  contentLength: number;
  /** The client allows another request on this connection after this one. */
  keepAlive: boolean;
  /** `Expect: 100-continue`: the client waits for an interim answer before sending its body. */
  expectContinue: boolean;
  /** Bytes the head took, its blank line included. */
  length: number;
  /** The field lines as sent, for the upstream head; undefined when a field was repeated (then rebuilt from `headers`). */
  forwardLines: ForwardLines | undefined;
  /** The protocol the client asks to switch to (its Upgrade value), when kedge lets it through (see `switchable`). */
  upgrade: string | undefined;
}

/** RFC 9110 §7.8: an HTTP/1.1 request naming `upgrade` in Connection, without a body (kedge's rule: nothing is left to frame). */
function requestedUpgrade(headers: IncomingHttpHeaders, versionMinor: number, contentLength: number): string | undefined {
  const { upgrade, connection } = headers;
  if (versionMinor !== 1 || contentLength !== 0 || typeof upgrade !== "string" || !connection || !hasToken(connection, "upgrade")) return undefined;
  return switchable(upgrade) ? upgrade : undefined;
}

// RFC 9110 §5.6.2 token characters. Field values may hold HTAB, SP, VCHAR and obs-text (RFC 9110
// §5.5): any other control byte, and a CR or LF outside a line end, anywhere in a head is refused.
const token = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

// node:http keeps the first of these when repeated; kedge refuses the framing ones outright.
const singleValued = new Set([
  "age", "authorization", "content-type", "etag", "expires", "from", "if-modified-since",
  "if-unmodified-since", "last-modified", "location", "max-forwards", "proxy-authorization",
  "referer", "retry-after", "server", "user-agent",
]);

/**
 * Names clients send on nearly every request, by length: recognised by their char codes, without
 * cutting the name out of the head (a substring, then hashed for a Map lookup, per field line).
 */
const commonNames: string[][] = [];
for (const name of [
  "te", "host", "accept", "cookie", "expect", "origin", "pragma", "referer", "upgrade", "connection", "user-agent",
  "traceparent", "content-type", "x-request-id", "authorization", "cache-control", "content-length", "accept-encoding",
  "accept-language", "x-forwarded-for", "transfer-encoding", "x-kedge-request-id",
]) (commonNames[name.length] ??= []).push(name);

/** Other request field names as sent → lower case, for names already checked to be tokens. */
const knownNames = new Map<string, string>();

/** The lower-case name of the field named by bytes[at..end), or undefined when it is not a token (RFC 9110 §5.1). */
function fieldName(head: HeadText, at: number, end: number): string | undefined {
  const candidates = commonNames[end - at];
  if (candidates !== undefined) for (const name of candidates) if (bytesNameIs(head.bytes, at, name)) return name;
  const raw = head.text().slice(at, end);
  const known = knownNames.get(raw);
  if (known !== undefined) return known;
  if (!token.test(raw)) return undefined;
  const lower = raw.toLowerCase();
  if (knownNames.size < 1000) knownNames.set(raw, lower);
  return lower;
}

/**
 * A head's bytes, and its text made only when a value is cut out of it: a request whose only field
 * is a Host seen before (and whose target was seen before) makes no string at all.
 */
class HeadText {
  private asText: string | undefined;

  constructor(
    readonly bytes: Uint8Array,
    readonly end: number,
    given?: string,
  ) {
    this.asText = given;
  }

  /** The head as latin1 (text[i] is bytes[i]). */
  text(): string {
    return (this.asText ??= latin1Text(this.bytes, 0, this.end));
  }
}

/**
 * The last Host and target read, and the strings handed out for them. Clients send the same ones
 * request after request; the same string lets the maps keyed by it (the authority and route
 * caches) find it by the hash it already has, and is not cut out of the head or read again.
 */
const hostValues = new LastValue();
const targetValues = new LastValue();

/** Reads the head at the start of buf[0..end) (findHeadEnd, then parseScanned); -1 when more bytes are needed. */
export function readRequestHead(buf: Uint8Array, end: number, limits: HeadLimits): RequestHead | KedgeError | -1 {
  const headEnd = findHeadEnd(buf, end, limits);
  if (typeof headEnd !== "number") return headEnd;
  if (headEnd < 0) return -1;
  return parseScanned(new HeadText(buf, headEnd), limits);
}

/** Methods clients send on nearly every request, by length: recognised by their char codes, not cut out of the head. */
const commonMethods: string[][] = [];
for (const m of ["GET", "PUT", "HEAD", "POST", "PATCH", "DELETE", "OPTIONS"]) (commonMethods[m.length] ??= []).push(m);

/** The method bytes[0..end) when it is a common one (case-sensitive, RFC 9110 §9.1), else undefined. */
function knownMethod(bytes: Uint8Array, end: number): string | undefined {
  const candidates = commonMethods[end];
  if (candidates !== undefined) for (const m of candidates) if (spells(bytes, 0, m)) return m;
  return undefined;
}

/** bytes[at..at+word.length) is `word`, exactly. */
function spells(bytes: Uint8Array, at: number, word: string): boolean {
  for (let i = 0; i < word.length; i++) if (bytes[at + i] !== word.charCodeAt(i)) return false;
  return true;
}

/** The minor version of "HTTP/1.x" at bytes[at..end): 1 or 0; -1 for anything else. */
function httpVersionMinor(bytes: Uint8Array, at: number, end: number): number {
  if (end - at !== 8 || !spells(bytes, at, "HTTP/1.")) return -1;
  const minor = bytes[at + 7];
  return minor === 49 ? 1 : minor === 48 ? 0 : -1;
}

/** A complete head given as text (tests, and heads not read from a socket): checked and parsed as readRequestHead does. */
export function parseRequestHead(text: string, limits: HeadLimits): RequestHead | KedgeError {
  const bytes = Buffer.from(text, "latin1");
  const end = findHeadEnd(bytes, bytes.length, limits);
  if (typeof end !== "number") return end;
  if (end !== bytes.length) return bad(end < 0 ? "incomplete request head" : "bytes after the request head");
  return parseScanned(new HeadText(bytes, end, text), limits);
}

/**
 * Parses the head findHeadEnd just found, by RFC 9112's rules, strictly: anything a backend could
 * frame differently from kedge (request smuggling) is refused, never repaired. The bytes are kept
 * for copying the field lines upstream.
 */
function parseScanned(head: HeadText, limits: HeadLimits): RequestHead | KedgeError {
  const { bytes } = head;
  const { lineEnds, colons, lineCount } = scanned;
  const lineEnd = lineEnds[0];
  // The request line is read in place: no substring for it, its method or its version.
  let firstSpace = -1;
  let lastSpace = -1;
  let spaces = 0;
  let tabs = false;
  for (let i = 0; i < lineEnd; i++) {
    const c = bytes[i];
    if (c === 32) {
      if (firstSpace < 0) firstSpace = i;
      lastSpace = i;
      spaces++;
    } else if (c === 9) tabs = true;
  }
  if (firstSpace <= 0 || lastSpace === firstSpace) return bad("malformed request line");
  let method = knownMethod(bytes, firstSpace);
  if (method === undefined) {
    method = head.text().slice(0, firstSpace);
    if (!token.test(method)) return bad("malformed request method");
  }
  const targetLength = lastSpace - firstSpace - 1;
  if (targetLength === 0 || spaces > 2 || (tabs && head.text().slice(firstSpace + 1, lastSpace).includes("\t"))) return bad("malformed request target");
  if (targetLength > limits.maxUriBytes) return tooLong(limits.maxUriBytes);
  const target = targetValues.read(bytes, firstSpace + 1, lastSpace, head);
  const versionMinor = httpVersionMinor(bytes, lastSpace + 1, lineEnd);
  if (versionMinor < 0) {
    const version = head.text().slice(lastSpace + 1, lineEnd);
    if (/^HTTP\/\d\.\d$/.test(version)) return new KedgeError("bad-request", 505, `${version} is not supported on this port`);
    return bad("malformed HTTP version");
  }

  const headers: IncomingHttpHeaders = {};
  let fields = 0;
  let hosts = 0;
  let lengths = 0;
  let encodings = 0;
  let repeated = false;
  let drops: number[] | undefined;
  const last = head.end - 2; // the blank line's CRLF
  for (let line = 1, at = lineEnd + 2; line < lineCount; line++) {
    const eol = lineEnds[line];
    if (++fields > limits.maxHeaders) return new KedgeError("bad-request", 431, `more than ${limits.maxHeaders} request header fields`);
    const colon = colons[line];
    // A line starting with whitespace is obs-fold; a name with whitespace before the colon is refused (RFC 9112 §5.1).
    if (colon <= at) {
      const first = bytes[at];
      return bad(first === 32 || first === 9 ? "obsolete line folding in the request head" : "malformed header line");
    }
    const name = fieldName(head, at, colon);
    if (name === undefined) return bad(`invalid header name ${JSON.stringify(head.text().slice(at, Math.min(colon, at + 50)))}`);
    let value: string;
    if (name === "host") {
      const from = valueStart(bytes, colon + 1, eol);
      value = hostValues.read(bytes, from, valueEnd(bytes, from, eol), head);
    } else value = fieldValue(head.text(), colon + 1, eol);
    if (notForwardedUpstream.has(name)) (drops ??= []).push(at, eol + 2, RequestDrop.Always);
    else if (name.indexOf("_") >= 0) (drops ??= []).push(at, eol + 2, RequestDrop.UnderscoreName);
    at = eol + 2;
    if (name === "host") hosts++;
    else if (name === "content-length") lengths++;
    else if (name === "transfer-encoding") encodings++;
    const prev = headers[name];
    if (prev === undefined) {
      headers[name] = name === "set-cookie" ? [value] : value;
      continue;
    }
    repeated = true;
    if (name === "set-cookie") (prev as string[]).push(value);
    else if (name === "cookie") headers[name] = `${prev}; ${value}`;
    else if (!singleValued.has(name)) headers[name] = `${prev}, ${value}`;
  }
  // RFC 9112 §3.2 and §6.3: one Host, one Content-Length (even when equal), never both framings.
  if (hosts > 1) return bad("more than one Host header");
  if (hosts === 0 && versionMinor === 1) return bad("missing Host header");
  if (lengths > 1) return bad("more than one Content-Length header");
  let contentLength = 0;
  if (encodings > 0) {
    if (encodings > 1) return bad("more than one Transfer-Encoding header");
    if (lengths > 0) return bad("both Content-Length and Transfer-Encoding");
    // RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 means the framing cannot be trusted.
    if (versionMinor === 0) return bad("Transfer-Encoding in an HTTP/1.0 request");
    const te = headers["transfer-encoding"] as string;
    // kedge re-frames bodies as chunked; another coding (gzip, chunked) would reach the backend undecoded.
    if (te.toLowerCase() !== "chunked") return new KedgeError("bad-request", 501, `Transfer-Encoding ${JSON.stringify(te.slice(0, 50))} is not supported`);
    contentLength = -1;
  } else if (lengths === 1) {
    const cl = headers["content-length"] as string;
    contentLength = decimalIn(cl, 0, cl.length);
    if (contentLength < 0) return bad(`malformed Content-Length ${JSON.stringify(cl.slice(0, 30))}`);
  }
  const connection = headers.connection;
  const keepAlive = versionMinor === 1 ? !(connection && hasToken(connection, "close")) : !!connection && hasToken(connection, "keep-alive");
  const expect = headers.expect;
  const expectContinue = versionMinor === 1 && typeof expect === "string" && expect.toLowerCase() === "100-continue";
  const forwardLines = repeated ? undefined : { bytes, fieldsAt: lineEnd + 2, fieldsEnd: last, drops };
  const upgrade = connection === undefined ? undefined : requestedUpgrade(headers, versionMinor, contentLength);
  return { method, target, versionMinor, headers, contentLength, keepAlive, expectContinue, length: head.end, forwardLines, upgrade };
}
