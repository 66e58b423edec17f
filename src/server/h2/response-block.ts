import type { OutgoingHttpHeaders } from "node:http2";
import { addField, addFieldLine, addFieldValues, currentBlockLength, startBlock, type H2Headers } from "../../h2/hpack.js";
import { lowerFieldName, type LineDrops } from "../../net/fields.js";
import { notForwardedH2, type HeadLines } from "../../net/hop-headers.js";
import { connectionSpecific } from "./request-check.js";

/** Fields that take one value (node:http2's list): two of them in an answer is an error, not something to pass on. */
const singleValue = new Set([
  "access-control-allow-credentials", "access-control-max-age", "access-control-request-method", "age", "authorization",
  "content-encoding", "content-language", "content-length", "content-location", "content-md5", "content-range", "content-type",
  "date", "dnt", "etag", "expires", "from", "host", "if-match", "if-modified-since", "if-none-match", "if-range",
  "if-unmodified-since", "last-modified", "location", "max-forwards", "proxy-authorization", "range", "referer", "retry-after",
  "tk", "upgrade-insecure-requests", "user-agent", "x-content-type-options",
]);

/**
 * Encodes a response's or trailers' header block, :status first, as the encoder's current block
 * (currentBlockBytes); returns its length. Throws, as node:http2 does, on what HTTP/2 forbids in an answer
 * (connection-specific fields, a single-value field given twice): nothing is sent then.
 */
export function responseBlock(headers: OutgoingHttpHeaders): number {
  startBlock();
  const status = headers[":status"];
  if (status !== undefined) addFieldValues(":status", status as number);
  for (const key in headers) {
    if (key.charCodeAt(0) === 58 /* ":" */) continue;
    const v = headers[key];
    if (v === undefined || v === null) continue;
    const name = lowerCase(key);
    if (connectionSpecific.has(name)) throw new Error(`HTTP/2 forbids the connection-specific field ${name}`);
    if (typeof v === "object" && singleValue.has(name)) throw new Error(`${name} given more than one value`);
    addFieldValues(name, v as string | number | string[]);
  }
  return currentBlockLength();
}

/**
 * responseBlock for a backend's answer passed on as its HPACK decoder gave it (read-only: the same
 * fields may serve many calls, see RecentBlocks): without the pseudo-headers but a response's
 * :status (`keepStatus`), what never crosses an HTTP/2 hop, and "te" (a request field that
 * node:http2 clients reject in an answer); with x-kedge-backend-name, when given, in place of any
 * the backend sent. Throws as responseBlock does on a single-value field given twice.
 */
export function forwardedBlock(headers: H2Headers, keepStatus: boolean, backendName: string | undefined): number {
  startBlock();
  if (keepStatus) {
    const status = headers[":status"];
    if (status !== undefined) addFieldValues(":status", status);
  }
  for (const name in headers) {
    if (name.charCodeAt(0) === 58 /* ":" */ || notForwardedH2.has(name) || name === "te") continue;
    if (backendName !== undefined && name === "x-kedge-backend-name") continue;
    const v = headers[name];
    if (typeof v === "object" && singleValue.has(name)) throw new Error(`${name} given more than one value`);
    addFieldValues(name, v);
  }
  if (backendName !== undefined) addField("x-kedge-backend-name", backendName);
  return currentBlockLength();
}

/** node:http2 lowercases the names it is given; kedge's own are lowercase, so this rarely copies. */
function lowerCase(name: string): string {
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c >= 65 && c <= 90) return name.toLowerCase();
  }
  return name;
}

/**
 * responseBlock for a head made of field lines (an HTTP/1.1 backend's, less its drops: the same
 * fields downstreamHeaders would give, in the order they came): encoded straight from the lines'
 * text, without the strings, the headers object and the walk over it responseBlock needs.
 */
export function headLinesBlock(status: number, head: HeadLines): number {
  startBlock();
  addFieldValues(":status", status);
  const from = head.backend;
  if (from) addLines(from.text, from.fieldsAt, from.drops, head.keptKinds);
  if (head.lines) addLines(head.lines, 0, undefined, 0);
  if (head.backendName !== undefined) addField("x-kedge-backend-name", head.backendName);
  if (head.requestId !== undefined) addField("x-kedge-request-id", head.requestId.idHead + head.requestId.idTail);
  return currentBlockLength();
}

/** The hashes of the names addLines added, and where each line starts: to find a single-value field given twice. */
let seenHashes = new Int32Array(32);
let seenAt = new Int32Array(32);

/** text's field lines from `at` to its end, each with its CRLF, less the drops whose kind is not kept. */
function addLines(text: string, at: number, drops: LineDrops | undefined, keptKinds: number): void {
  let seen = 0;
  let d = 0;
  while (at < text.length) {
    if (drops !== undefined && d < drops.length && drops[d] === at) {
      const kept = (keptKinds & (1 << drops[d + 2])) !== 0;
      const end = drops[d + 1];
      d += 3;
      if (!kept) {
        at = end;
        continue;
      }
    }
    const eol = text.indexOf("\r\n", at);
    const colon = text.indexOf(":", at);
    const hash = addFieldLine(text, at, colon, eol);
    for (let i = 0; i < seen; i++) if (seenHashes[i] === hash) repeated(text, seenAt[i], at);
    if (seen === seenHashes.length) {
      seenHashes = grown(seenHashes);
      seenAt = grown(seenAt);
    }
    seenHashes[seen] = hash;
    seenAt[seen++] = at;
    at = eol + 2;
  }
}

function grown(a: Int32Array<ArrayBuffer>): Int32Array<ArrayBuffer> {
  const bigger = new Int32Array(a.length * 2);
  bigger.set(a);
  return bigger;
}

/** Two lines whose names hash alike: an error, as in responseBlock, when they name the same single-value field. */
function repeated(text: string, first: number, second: number): void {
  const name = lowerFieldName(text.slice(second, text.indexOf(":", second)));
  if (singleValue.has(name) && lowerFieldName(text.slice(first, text.indexOf(":", first))) === name) throw new Error(`${name} given more than one value`);
}
