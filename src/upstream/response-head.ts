import { decimalIn, fieldValue, hasToken, lowerFieldName, nameIs, type LineDrops } from "../net/fields.js";
import { Drop, type ResponseFields, type ResponseText } from "../net/hop-headers.js";

export class ParseError extends Error {}

/** What the framing and the header rewrite need to know of a field, told by its name alone. */
export const enum Field { Other, ContentLength, TransferEncoding, Connection, Date, HopByHop, KedgeTag, RequestId }

/**
 * The field named by text[at..at+length), without cutting the name out: a switch on its length,
 * then a compare against the few names that length can be. Hop-by-hop fields are RFC 9110 §7.6.1's;
 * the kedge tags are replaced by kedge's own.
 */
export function classifyField(text: string, at: number, length: number): Field {
  switch (length) {
    case 2:
      return nameIs(text, at, "te") ? Field.HopByHop : Field.Other;
    case 4:
      return nameIs(text, at, "date") ? Field.Date : Field.Other;
    case 7:
      return nameIs(text, at, "trailer") || nameIs(text, at, "upgrade") ? Field.HopByHop : Field.Other;
    case 10:
      if (nameIs(text, at, "connection")) return Field.Connection;
      return nameIs(text, at, "keep-alive") ? Field.HopByHop : Field.Other;
    case 14:
      return nameIs(text, at, "content-length") ? Field.ContentLength : Field.Other;
    case 16:
      return nameIs(text, at, "proxy-connection") ? Field.HopByHop : Field.Other;
    case 17:
      return nameIs(text, at, "transfer-encoding") ? Field.TransferEncoding : Field.Other;
    case 18:
      if (nameIs(text, at, "x-kedge-request-id")) return Field.RequestId;
      return nameIs(text, at, "proxy-authenticate") ? Field.HopByHop : Field.Other;
    case 20:
      return nameIs(text, at, "x-kedge-backend-name") ? Field.KedgeTag : Field.Other;
  }
  return Field.Other;
}

/**
 * A backend's response head, kept as the text it arrived as. HTTP/1.1 clients get its field lines
 * copied through minus the `drops` (no string per field); the fields as name/value pairs are cut
 * out only when asked for (HTTP/2 clients, winch).
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
  /** Lines a client may not get, of the kinds in Drop; undefined: none. */
  drops: LineDrops | undefined;
  private fields: { rawHeaders: string[]; names: string[] } | undefined;

  /**
   * @param text the head from the status line to the last field's CRLF (the blank line excluded)
   * @param fieldsAt where the first field line starts in `text`
   * @param bytes what `text` was read from, at `bytesAt`: the field lines are copied from there
   */
  constructor(
    readonly text: string,
    readonly fieldsAt: number,
    readonly status: number,
    readonly bytes: Uint8Array | undefined = undefined,
    readonly bytesAt = 0,
  ) {}

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

/** "HTTP/1.x NNN[ reason]" at the start of text → [minor version, status], or undefined; read by char codes. */
export function parseStatusLine(text: string, lineEnd: number): [minor: number, status: number] | undefined {
  if (lineEnd < 12 || !text.startsWith("HTTP/1.") || text.charCodeAt(8) !== 32) return undefined;
  const minor = text.charCodeAt(7) - 48;
  if (minor !== 0 && minor !== 1) return undefined;
  let status = 0;
  for (let i = 9; i < 12; i++) {
    const d = text.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return undefined;
    status = status * 10 + d;
  }
  if (lineEnd > 12 && text.charCodeAt(12) !== 32) return undefined;
  return [minor, status];
}

/**
 * Reads a head (text, and the bytes it was read from, as ResponseHead takes them). Field lines must end in CRLF with no bare CR or LF
 * inside (what a client would split differently), and name a field before their colon.
 */
export function parseResponseHead(text: string, bytes?: Uint8Array, bytesAt = 0): ResponseHead {
  const firstLf = text.indexOf("\n");
  if (firstLf < 1 || text.charCodeAt(firstLf - 1) !== 13) throw new ParseError("malformed status line");
  const parsed = parseStatusLine(text, firstLf - 1);
  if (!parsed) throw new ParseError(`malformed status line ${JSON.stringify(text.slice(0, Math.min(firstLf - 1, 64)))}`);
  const [minor, status] = parsed;
  const head = new ResponseHead(text, firstLf + 1, status, bytes, bytesAt);
  head.close = minor === 0;
  let contentLength = -1;
  let drops: number[] | undefined;
  for (let at = firstLf + 1; at < text.length; ) {
    const lf = text.indexOf("\n", at);
    const eol = lf - 1;
    const colon = text.indexOf(":", at);
    const first = text.charCodeAt(at);
    if (lf < 0 || text.charCodeAt(eol) !== 13 || text.indexOf("\r", at) !== eol) throw new ParseError("malformed response header line (bare CR or LF)");
    if (colon <= at || colon > eol || first === 32 || first === 9) throw new ParseError("malformed response header line");
    const field = classifyField(text, at, colon - at);
    if (field !== Field.Other) {
      let drop: Drop | -1 = Drop.Always;
      switch (field) {
        case Field.ContentLength: {
          const value = decimalIn(text, colon + 1, eol);
          if (value < 0 || (contentLength >= 0 && contentLength !== value)) throw new ParseError("invalid content-length from backend");
          contentLength = value;
          head.hasLength = true;
          drop = Drop.WhenChunked;
          break;
        }
        case Field.TransferEncoding: {
          const codings = fieldValue(text, colon + 1, eol).toLowerCase().split(",");
          head.chunked = codings[codings.length - 1].trim() === "chunked";
          if (!head.chunked) head.close = true; // a non-chunked transfer coding is delimited by close
          break;
        }
        case Field.Connection: {
          const value = fieldValue(text, colon + 1, eol);
          if (hasToken(value, "close")) head.close = true;
          else if (minor === 0 && hasToken(value, "keep-alive")) head.close = false;
          break;
        }
        case Field.Date:
          head.hasDate = true;
          drop = -1;
          break;
        case Field.RequestId:
          head.hasRequestId = true;
          drop = Drop.WhenRetagged;
          break;
        case Field.KedgeTag:
          drop = Drop.WhenRetagged;
          break;
      }
      if (drop >= 0) (drops ??= []).push(at, lf + 1, drop);
    }
    at = lf + 1;
  }
  // RFC 9112 §6.3: Transfer-Encoding overrides Content-Length, whose lines then do not travel on.
  if (head.chunked) head.hasLength = false;
  head.contentLength = head.chunked ? -1 : contentLength;
  head.drops = drops;
  return head;
}
