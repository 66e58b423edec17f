import { bytesDecimal, bytesNameIs, valueEnd, valueStart } from "../net/field-bytes.js";
import { fieldValue, hasToken, lowerFieldName, type LineDrops } from "../net/fields.js";
import { Drop, type ResponseFields, type ResponseText } from "../net/hop-headers.js";
import { latin1Text } from "../net/latin1.js";

export class ParseError extends Error {}

/** What the framing and the header rewrite need to know of a field, told by its name alone. */
export const enum Field { Other, ContentLength, TransferEncoding, Connection, Date, HopByHop, KedgeTag, RequestId }

/**
 * The field named by bytes[at..at+length), without cutting the name out: a switch on its length,
 * then a compare against the few names that length can be. Hop-by-hop fields are RFC 9110 §7.6.1's;
 * the kedge tags are replaced by kedge's own.
 */
export function classifyField(bytes: Uint8Array, at: number, length: number): Field {
  switch (length) {
    case 2:
      return bytesNameIs(bytes, at, "te") ? Field.HopByHop : Field.Other;
    case 4:
      return bytesNameIs(bytes, at, "date") ? Field.Date : Field.Other;
    case 7:
      return bytesNameIs(bytes, at, "trailer") || bytesNameIs(bytes, at, "upgrade") ? Field.HopByHop : Field.Other;
    case 10:
      if (bytesNameIs(bytes, at, "connection")) return Field.Connection;
      return bytesNameIs(bytes, at, "keep-alive") ? Field.HopByHop : Field.Other;
    case 14:
      return bytesNameIs(bytes, at, "content-length") ? Field.ContentLength : Field.Other;
    case 16:
      return bytesNameIs(bytes, at, "proxy-connection") ? Field.HopByHop : Field.Other;
    case 17:
      return bytesNameIs(bytes, at, "transfer-encoding") ? Field.TransferEncoding : Field.Other;
    case 18:
      if (bytesNameIs(bytes, at, "x-kedge-request-id")) return Field.RequestId;
      return bytesNameIs(bytes, at, "proxy-authenticate") ? Field.HopByHop : Field.Other;
    case 20:
      return bytesNameIs(bytes, at, "x-kedge-backend-name") ? Field.KedgeTag : Field.Other;
  }
  return Field.Other;
}

/**
 * A backend's response head, kept as the bytes it arrived as. HTTP/1.1 clients get its field lines
 * copied through minus the `drops` (no string per field, and no string of the head); the head as
 * text, and the fields as name/value pairs, are made only when asked for (HTTP/2 clients, winch).
 * The bytes are a socket read's own buffer (a fresh one per read), which nothing else writes to.
 */
export class ResponseHead implements ResponseText, ResponseFields {
  /** The connection must close after this response (Connection: close, HTTP/1.0, close-delimited body). */
  close = false;
  /** Content-Length when the body is length-framed, else -1. */
  contentLength = -1;
  chunked = false;
  hasDate = false;
  hasLength = false;
  hasRequestId = false;
  /** Lines a client may not get, of the kinds in Drop, at offsets from bytesAt; undefined: none. */
  drops: LineDrops | undefined;
  private fields: { rawHeaders: string[]; names: string[] } | undefined;
  private asText: string | undefined;

  /**
   * @param bytes what the head was read from: it starts at `bytesAt`
   * @param fieldsAt where the first field line starts, from bytesAt
   * @param fieldsEnd where the blank line ending the head starts, from bytesAt
   */
  constructor(
    readonly bytes: Uint8Array,
    readonly bytesAt: number,
    readonly fieldsAt: number,
    readonly fieldsEnd: number,
    readonly status: number,
  ) {}

  /** The head from the status line to the last field's CRLF (the blank line excluded). */
  get text(): string {
    return (this.asText ??= latin1Text(this.bytes, this.bytesAt, this.bytesAt + this.fieldsEnd));
  }

  get reason(): string {
    return this.fieldsAt - 2 > 13 ? this.text.slice(13, this.fieldsAt - 2) : "";
  }

  /** Flat [name, value, name, value, …] as received; names keep their case. */
  get rawHeaders(): string[] {
    return (this.fields ??= this.split()).rawHeaders;
  }

  /** The field names in lower case: names[i] is rawHeaders[2 * i]'s. */
  get names(): string[] {
    return (this.fields ??= this.split()).names;
  }

  private split(): { rawHeaders: string[]; names: string[] } {
    const { text } = this;
    const rawHeaders: string[] = [];
    const names: string[] = [];
    for (let at = this.fieldsAt; at < text.length; ) {
      const eol = text.indexOf("\r\n", at);
      const colon = text.indexOf(":", at);
      const name = text.slice(at, colon);
      rawHeaders.push(name, fieldValue(text, colon + 1, eol));
      names.push(lowerFieldName(name));
      at = eol + 2;
    }
    return { rawHeaders, names };
  }
}

/** What scanResponseHead returns when it has no head. */
export const enum NoHead {
  /** More bytes are needed (or the head is larger than the limit given). */
  Incomplete = -1,
  /** A line ends in a bare LF, which RFC 9112 §2.2 lets a recipient take as CRLF: see response-parser's crlfHead. */
  BareLf = -2,
}

const CR = 13;
const LF = 10;
const COLON = 58;

/** "HTTP/1." at bytes[at..]: the protocol name is case-sensitive (RFC 9112 §2.3). */
function startsWithHttp1(bytes: Uint8Array, at: number): boolean {
  return bytes[at] === 72 && bytes[at + 1] === 84 && bytes[at + 2] === 84 && bytes[at + 3] === 80 && bytes[at + 4] === 47 && bytes[at + 5] === 49 && bytes[at + 6] === 46;
}

function badStatusLine(bytes: Uint8Array, start: number, end: number): ParseError {
  return new ParseError(`malformed status line ${JSON.stringify(latin1Text(bytes, start, Math.min(end, start + 64)))}`);
}

/**
 * Reads a response head from bytes[start..limit) in one pass over its bytes: the status line, then
 * field lines up to the blank line; the head ends at `bytesAt + fieldsEnd + 2`. Lines must end in
 * CRLF with no bare CR inside (what a client would split differently), and field lines name a field
 * before their colon and do not fold. Throws ParseError.
 */
export function scanResponseHead(bytes: Uint8Array, start: number, limit: number): ResponseHead | NoHead {
  let i = start;
  let c = 0;
  while (i < limit && (c = bytes[i]) !== CR && c !== LF) i++;
  if (i >= limit) return NoHead.Incomplete;
  if (c === LF) return NoHead.BareLf;
  if (i + 1 >= limit) return NoHead.Incomplete;
  if (bytes[i + 1] !== LF) throw badStatusLine(bytes, start, i);
  // "HTTP/1.x NNN[ reason]"
  const lineLength = i - start;
  if (lineLength < 12 || !startsWithHttp1(bytes, start) || bytes[start + 8] !== 32 || (lineLength > 12 && bytes[start + 12] !== 32)) throw badStatusLine(bytes, start, i);
  const minor = bytes[start + 7] - 48;
  if (minor !== 0 && minor !== 1) throw badStatusLine(bytes, start, i);
  let status = 0;
  for (let d = start + 9; d < start + 12; d++) {
    const digit = bytes[d] - 48;
    if (digit < 0 || digit > 9) throw badStatusLine(bytes, start, i);
    status = status * 10 + digit;
  }
  let at = i + 2;
  let close = minor === 0;
  let contentLength = -1;
  let hasLength = false;
  let chunked = false;
  let hasDate = false;
  let hasRequestId = false;
  let drops: number[] | undefined;
  for (;;) {
    if (at >= limit) return NoHead.Incomplete;
    c = bytes[at];
    if (c === CR) {
      if (at + 1 >= limit) return NoHead.Incomplete;
      if (bytes[at + 1] !== LF) throw new ParseError("malformed response header line (bare CR or LF)");
      break;
    }
    // The name up to its colon, then the value up to the line's end: a compare or two a byte.
    let eol = at;
    while (eol < limit && ((c = bytes[eol]) > COLON || (c !== COLON && c !== CR && c !== LF))) eol++;
    let colon = -1;
    if (eol < limit && c === COLON) {
      colon = eol;
      while (++eol < limit && ((c = bytes[eol]) > CR || (c !== CR && c !== LF)));
    }
    if (eol >= limit) return NoHead.Incomplete;
    if (c === LF) return NoHead.BareLf;
    if (eol + 1 >= limit) return NoHead.Incomplete;
    if (bytes[eol + 1] !== LF) throw new ParseError("malformed response header line (bare CR or LF)");
    const first = bytes[at];
    if (colon <= at || first === 32 || first === 9) throw new ParseError("malformed response header line");
    const field = classifyField(bytes, at, colon - at);
    if (field !== Field.Other) {
      let drop: Drop | -1 = Drop.Always;
      switch (field) {
        case Field.ContentLength: {
          const value = bytesDecimal(bytes, colon + 1, eol);
          if (value < 0 || (contentLength >= 0 && contentLength !== value)) throw new ParseError("invalid content-length from backend");
          contentLength = value;
          hasLength = true;
          drop = Drop.WhenChunked;
          break;
        }
        case Field.TransferEncoding: {
          const codings = fieldValue(latin1Text(bytes, colon + 1, eol), 0, eol - colon - 1).toLowerCase().split(",");
          chunked = codings[codings.length - 1].trim() === "chunked";
          if (!chunked) close = true; // a non-chunked transfer coding is delimited by close
          break;
        }
        case Field.Connection: {
          const from = valueStart(bytes, colon + 1, eol);
          const to = valueEnd(bytes, from, eol);
          // One token nearly always: no string for it.
          if (to - from === 5 && bytesNameIs(bytes, from, "close")) close = true;
          else if (to - from === 10 && bytesNameIs(bytes, from, "keep-alive")) {
            if (minor === 0) close = false;
          } else {
            const value = latin1Text(bytes, from, to);
            if (hasToken(value, "close")) close = true;
            else if (minor === 0 && hasToken(value, "keep-alive")) close = false;
          }
          break;
        }
        case Field.Date:
          hasDate = true;
          drop = -1;
          break;
        case Field.RequestId:
          hasRequestId = true;
          drop = Drop.WhenRetagged;
          break;
        case Field.KedgeTag:
          drop = Drop.WhenRetagged;
          break;
      }
      if (drop >= 0) (drops ??= []).push(at - start, eol + 2 - start, drop);
    }
    at = eol + 2;
  }
  const head = new ResponseHead(bytes, start, i + 2 - start, at - start, status);
  // RFC 9112 §6.3: Transfer-Encoding overrides Content-Length, whose lines then do not travel on.
  head.close = close;
  head.chunked = chunked;
  head.hasLength = hasLength && !chunked;
  head.contentLength = chunked ? -1 : contentLength;
  head.hasDate = hasDate;
  head.hasRequestId = hasRequestId;
  head.drops = drops;
  return head;
}

/** A head given as text, from the status line to the last field's CRLF (the blank line excluded), read as scanResponseHead reads bytes. */
export function parseResponseHead(text: string): ResponseHead {
  const bytes = Buffer.from(`${text}\r\n`, "latin1");
  const head = scanResponseHead(bytes, 0, bytes.length);
  if (head === NoHead.BareLf) throw new ParseError("malformed response header line (bare CR or LF)");
  if (head === NoHead.Incomplete) throw new ParseError("incomplete response head");
  return head;
}
