import type { OutgoingHttpHeaders } from "node:http2";
import { addFieldValues, finishBlock, startBlock } from "../../h2/hpack.js";
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
 * A response's or trailers' header block, :status first; a view of the encoder's shared buffer,
 * valid until the next block. Throws, as node:http2 does, on what HTTP/2 forbids in an answer
 * (connection-specific fields, a single-value field given twice): nothing is sent then.
 */
export function responseBlock(headers: OutgoingHttpHeaders): Uint8Array {
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
  return finishBlock();
}

/** node:http2 lowercases the names it is given; kedge's own are lowercase, so this rarely copies. */
function lowerCase(name: string): string {
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c >= 65 && c <= 90) return name.toLowerCase();
  }
  return name;
}
