import type { IncomingHttpHeaders } from "node:http";
import { KedgeError } from "../../errors.js";
import { decimalIn, fieldValue, hasToken, nameIs } from "../../net/fields.js";
import { valueEnd, valueStart } from "../../net/field-bytes.js";
import { latin1Text } from "../../net/latin1.js";
import { notForwardedUpstream, RequestDrop, switchable, type ForwardLines } from "../../net/hop-headers.js";

/** The request-head limits of the server section, with defaults applied. */
export interface HeadLimits {
  maxHeaderBytes: number;
  maxHeaders: number;
  maxUriBytes: number;
}

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

const bad = (message: string) => new KedgeError("bad-request", 400, message);
const tooLong = (max: number) => new KedgeError("bad-request", 414, `request target longer than ${max} bytes`);

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

/** The lower-case name of the field named by text[at..end), or undefined when it is not a token (RFC 9110 §5.1). */
function fieldName(text: string, at: number, end: number): string | undefined {
  const candidates = commonNames[end - at];
  if (candidates !== undefined) for (const name of candidates) if (nameIs(text, at, name)) return name;
  const raw = text.slice(at, end);
  const known = knownNames.get(raw);
  if (known !== undefined) return known;
  if (!token.test(raw)) return undefined;
  const lower = raw.toLowerCase();
  if (knownNames.size < 1000) knownNames.set(raw, lower);
  return lower;
}

/**
 * What findHeadEnd saw of the head it found: lineEnds[k] is where line k's CRLF starts (line 0 is
 * the request line), colons[k] where its first colon is (-1: none). Read by parseScanned right
 * after, so the lines are not searched again (a native indexOf per search, in a profile).
 */
let lineEnds = new Int32Array(64);
let colons = new Int32Array(64);
let lineCount = 0;

function grownTable(): void {
  const ends = new Int32Array(lineEnds.length * 2);
  ends.set(lineEnds);
  lineEnds = ends;
  const cs = new Int32Array(colons.length * 2);
  cs.set(colons);
  colons = cs;
}

/**
 * The last Host value read, as bytes and as the string handed out. Clients send the same Host on
 * request after request; handing out the same string lets the maps keyed by it (the authority and
 * route caches) find it by the hash it already has, where a new string is read and hashed anew.
 */
const lastHostBytes = new Uint8Array(256);
let lastHostLength = -1;
let lastHost = "";

/** The Host field's value in bytes[from..eol) (text[i] is bytes[i]), trimmed. */
function hostValue(text: string, bytes: Uint8Array, from: number, eol: number): string {
  from = valueStart(bytes, from, eol);
  const to = valueEnd(bytes, from, eol);
  const n = to - from;
  if (n === lastHostLength) {
    let i = 0;
    while (i < n && bytes[from + i] === lastHostBytes[i]) i++;
    if (i === n) return lastHost;
  }
  const value = text.slice(from, to);
  if (n <= lastHostBytes.length) {
    for (let i = 0; i < n; i++) lastHostBytes[i] = bytes[from + i];
    lastHostLength = n;
    lastHost = value;
  }
  return value;
}

const invalidByte = () => bad("invalid byte in the request head");

/**
 * Where the head in buf[0..end) ends (the index after its blank line), -1 when more bytes are
 * needed, or an error. One pass over its bytes: every line must end in CRLF (RFC 9112 §2.2: a bare
 * LF or CR is how one hop's framing differs from the next one's), field values may hold HTAB, SP,
 * VCHAR and obs-text only (RFC 9110 §5.5), and the head must fit the limits.
 */
export function findHeadEnd(buf: Uint8Array, end: number, limits: HeadLimits): number | KedgeError {
  const max = end < limits.maxHeaderBytes ? end : limits.maxHeaderBytes;
  let lines = 0;
  let lineStart = 0;
  let colon = -1;
  for (let i = 0; i < max; i++) {
    const c = buf[i];
    if (c > 58) {
      if (c === 127) return invalidByte();
    } else if (c === 58) {
      if (colon < 0) colon = i;
    } else if (c < 32) {
      if (c === 13) {
        if (i + 1 >= max) break;
        if (buf[i + 1] !== 10) return invalidByte();
        if (lines === 0 && i > limits.maxUriBytes + 16) return tooLong(limits.maxUriBytes);
        if (i === lineStart && lines > 0) {
          lineCount = lines;
          return i + 2;
        }
        if (lines === lineEnds.length) grownTable();
        lineEnds[lines] = i;
        colons[lines] = colon;
        lines++;
        colon = -1;
        lineStart = ++i + 1;
      } else if (c === 10) return bad("bare LF in the request head");
      else if (c !== 9) return invalidByte();
    }
  }
  if (lines === 0 && max > limits.maxUriBytes + 16) return tooLong(limits.maxUriBytes);
  if (end < limits.maxHeaderBytes) return -1;
  // Over the limit: blame the request line when it alone is longer than a target may be.
  if (lines === 0 || lineEnds[0] > limits.maxUriBytes) return tooLong(limits.maxUriBytes);
  return new KedgeError("bad-request", 431, `request head larger than ${limits.maxHeaderBytes} bytes`);
}

/** Reads the head at the start of buf[0..end) (findHeadEnd, then parseScanned); -1 when more bytes are needed. */
export function readRequestHead(buf: Uint8Array, end: number, limits: HeadLimits): RequestHead | KedgeError | -1 {
  const headEnd = findHeadEnd(buf, end, limits);
  if (typeof headEnd !== "number") return headEnd;
  if (headEnd < 0) return -1;
  return parseScanned(latin1Text(buf, 0, headEnd), limits, buf);
}

/** Methods clients send on nearly every request, by length: recognised by their char codes, not cut out of the head. */
const commonMethods: string[][] = [];
for (const m of ["GET", "PUT", "HEAD", "POST", "PATCH", "DELETE", "OPTIONS"]) (commonMethods[m.length] ??= []).push(m);

/** The method text[0..end) when it is a common one (case-sensitive, RFC 9110 §9.1), else undefined. */
function knownMethod(text: string, end: number): string | undefined {
  const candidates = commonMethods[end];
  if (candidates !== undefined) for (const m of candidates) if (spells(text, 0, m)) return m;
  return undefined;
}

/** text[at..at+word.length) is `word`, exactly. */
function spells(text: string, at: number, word: string): boolean {
  for (let i = 0; i < word.length; i++) if (text.charCodeAt(at + i) !== word.charCodeAt(i)) return false;
  return true;
}

/** The minor version of "HTTP/1.x" at text[at..end): 1 or 0; -1 for anything else. */
function httpVersionMinor(text: string, at: number, end: number): number {
  if (end - at !== 8 || !spells(text, at, "HTTP/1.")) return -1;
  const minor = text.charCodeAt(at + 7);
  return minor === 49 ? 1 : minor === 48 ? 0 : -1;
}

/** A complete head given as text (tests, and heads not read from a socket): checked and parsed as readRequestHead does. */
export function parseRequestHead(text: string, limits: HeadLimits): RequestHead | KedgeError {
  const bytes = Buffer.from(text, "latin1");
  const end = findHeadEnd(bytes, bytes.length, limits);
  if (typeof end !== "number") return end;
  if (end !== bytes.length) return bad(end < 0 ? "incomplete request head" : "bytes after the request head");
  return parseScanned(text, limits, bytes);
}

/**
 * Parses the head findHeadEnd just found, by RFC 9112's rules, strictly: anything a backend could
 * frame differently from kedge (request smuggling) is refused, never repaired. `text` is the head
 * as latin1 (text[i] is bytes[i]); the bytes are kept for copying the field lines upstream.
 */
function parseScanned(text: string, limits: HeadLimits, bytes: Uint8Array): RequestHead | KedgeError {
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
  let method = knownMethod(text, firstSpace);
  if (method === undefined) {
    method = text.slice(0, firstSpace);
    if (!token.test(method)) return bad("malformed request method");
  }
  const target = text.slice(firstSpace + 1, lastSpace);
  if (target.length === 0 || spaces > 2 || (tabs && target.includes("\t"))) return bad("malformed request target");
  if (target.length > limits.maxUriBytes) return tooLong(limits.maxUriBytes);
  const versionMinor = httpVersionMinor(text, lastSpace + 1, lineEnd);
  if (versionMinor < 0) {
    const version = text.slice(lastSpace + 1, lineEnd);
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
  const last = text.length - 2; // the blank line's CRLF
  for (let line = 1, at = lineEnd + 2; line < lineCount; line++) {
    const eol = lineEnds[line];
    if (++fields > limits.maxHeaders) return new KedgeError("bad-request", 431, `more than ${limits.maxHeaders} request header fields`);
    const colon = colons[line];
    // A line starting with whitespace is obs-fold; a name with whitespace before the colon is refused (RFC 9112 §5.1).
    if (colon <= at) {
      const first = text.charCodeAt(at);
      return bad(first === 32 || first === 9 ? "obsolete line folding in the request head" : "malformed header line");
    }
    const name = fieldName(text, at, colon);
    if (name === undefined) return bad(`invalid header name ${JSON.stringify(text.slice(at, Math.min(colon, at + 50)))}`);
    const value = name === "host" ? hostValue(text, bytes, colon + 1, eol) : fieldValue(text, colon + 1, eol);
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
  const forwardLines = repeated ? undefined : { text, fieldsAt: lineEnd + 2, fieldsEnd: last, drops, bytes };
  const upgrade = connection === undefined ? undefined : requestedUpgrade(headers, versionMinor, contentLength);
  return { method, target, versionMinor, headers, contentLength, keepAlive, expectContinue, length: text.length, forwardLines, upgrade };
}
