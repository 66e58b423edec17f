import type { IncomingHttpHeaders, OutgoingHttpHeaders } from "node:http";
import type { LineDrops } from "./fields.js";
import { headWriter, type HeadWriter } from "./head-writer.js";

// RFC 9110 §7.6.1 connection-specific fields, plus what kedge sets itself and what must not
// leave kedge (Proxy-Authorization is kedge's own credential, never the backend's).
export const notForwardedUpstream = new Set([
  "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
  "proxy-authorization", "proxy-authenticate", "host", "content-length",
  "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-kedge-request-id", "http2-settings",
]);

/**
 * What never crosses an HTTP/2 hop kedge makes, either way: connection-specific fields (RFC 9113
 * §8.2.2) and kedge's own credential (Proxy-Authorization).
 */
export const notForwardedH2 = new Set(["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "host", "proxy-authorization", "http2-settings"]);

const hopByHopDownstream = ["connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "proxy-authenticate"];
/** kedge sets its own tags; winch passes kedge's through to its client. */
const notForwardedDownstream = new Set([...hopByHopDownstream, "x-kedge-backend-name", "x-kedge-request-id"]);
const notForwardedThrough = new Set(hopByHopDownstream);

/**
 * Upgrades passed on to a backend: WebSocket, and SPDY for kubectl exec/attach/port-forward. Any
 * other (h2c above all) is dropped like the hop-by-hop field it is: after a switch the proxy only
 * splices bytes, so a backend speaking h2c could be sent requests no route or policy ever saw.
 */
const switchableProtocols = new Set(["websocket", "spdy/3.1"]);

export function switchable(upgrade: string): boolean {
  return switchableProtocols.has(upgrade.toLowerCase());
}

/**
 * A request id as the two flat strings it is made of: it is idHead + idTail (idTail "" for an id
 * taken whole, a client's). Joined, they make a rope that costs an allocation and a copy the first
 * time it is read, ~1% of a proxied request in a profile: the head writers write the two instead.
 */
export interface RequestIdParts {
  idHead: string;
  idTail: string;
}

export interface UpstreamHeadInput {
  method: string;
  path: string;
  host: string;
  /**
   * Set when the upstream is itself a forward proxy (winch → kedge): the request line is the
   * absolute-form `scheme://host` + path (RFC 9112 §3.2.2), so it learns the port and scheme the
   * client named, which an origin-form line over its TLS listener would hide.
   */
  absoluteScheme?: string;
  headers: IncomingHttpHeaders;
  clientIp: string;
  scheme: string;
  /** x-kedge-request-id, written as its parts. */
  requestId: RequestIdParts;
  /** -1: chunked; 0: no body; n: Content-Length. */
  bodyLength: number;
  /** Lower-case names and values sent in place of the client's (winch's injected credentials). */
  set?: Record<string, string>;
  /** kedge's traceparent (tracing on), sent in place of the client's. */
  traceparent?: string;
  /** The client's field lines, copied through when nothing but the fixed set of fields is replaced. */
  forwardLines?: ForwardLines;
  /** The protocol the client asked to switch to, asked of the backend in turn (Connection and Upgrade are hop-by-hop). */
  upgrade?: string;
  /** server.headers_with_underscores is DROP: the client's lines named with "_" are left out. */
  dropUnderscoreNames?: boolean;
}

/** A client's HTTP/1.1 field lines as received: bytes[fieldsAt..fieldsEnd), each with its CRLF, copied upstream as they are. */
export interface ForwardLines {
  readonly bytes: Uint8Array;
  readonly fieldsAt: number;
  readonly fieldsEnd: number;
  /** The lines whose names are in notForwardedUpstream, and those named with "_", of the kinds in RequestDrop; undefined: none. */
  readonly drops: LineDrops | undefined;
}

/** What kind of line a request head's drop is (see ForwardLines). */
export const enum RequestDrop {
  /** In notForwardedUpstream: never copied. */
  Always = 0,
  /** A name with "_": copied unless server.headers_with_underscores is DROP. */
  UnderscoreName = 1,
}

/** Field names the client listed in its Connection header are hop-by-hop too (RFC 9110 §7.6.1). */
function connectionTokens(headers: IncomingHttpHeaders): Set<string> | undefined {
  const value = headers.connection;
  if (!value) return undefined;
  const tokens = new Set<string>();
  for (const t of String(value).split(",")) {
    const token = t.trim().toLowerCase();
    if (token !== "" && token !== "close" && token !== "keep-alive") tokens.add(token);
  }
  return tokens.size > 0 ? tokens : undefined;
}

/** The whole HTTP/1.1 request head as one latin1 string (tests). */
export function buildUpstreamHead(input: UpstreamHeadInput): string {
  return writeUpstreamHead(headWriter.start(), input).toString();
}

/** The whole HTTP/1.1 request head, laid out by `w` (header bytes pass through unchanged). */
export function writeUpstreamHead(w: HeadWriter, input: UpstreamHeadInput): HeadWriter {
  const { headers } = input;
  const extra = connectionTokens(headers);
  w.text(input.method);
  w.text(" ");
  if (input.absoluteScheme !== undefined) {
    w.text(input.absoluteScheme);
    w.text("://");
    w.text(input.host);
  }
  w.text(input.path);
  w.text(" HTTP/1.1\r\n");
  w.line("host", input.host);
  const pass = input.forwardLines;
  // The client's own lines, unless a field listed in Connection, a credential or a traceparent must go.
  if (pass && !extra && !input.set && (input.traceparent === undefined || headers.traceparent === undefined)) w.bytesWithout(pass.bytes, 0, pass.fieldsAt, pass.fieldsEnd, pass.drops, input.dropUnderscoreNames ? 0 : 1 << RequestDrop.UnderscoreName);
  else for (const name in headers) {
    if (name.charCodeAt(0) === 58 /* ":" */ || notForwardedUpstream.has(name) || extra?.has(name) || (input.set && name in input.set)) continue;
    if (input.traceparent !== undefined && name === "traceparent") continue;
    const value = headers[name];
    if (value === undefined) continue;
    if (typeof value === "string") w.line(name, value);
    else if (name === "cookie") w.line("cookie", value.join("; "));
    else for (const v of value) w.line(name, v);
  }
  const xff = headers["x-forwarded-for"];
  w.text("x-forwarded-for: ");
  if (xff) {
    w.text(String(xff));
    w.text(", ");
  }
  w.text(input.clientIp);
  w.crlf();
  w.line("x-forwarded-proto", input.scheme);
  w.line("x-forwarded-host", input.host);
  requestIdLine(w, input.requestId);
  if (input.set) for (const name in input.set) w.line(name, input.set[name]);
  if (input.traceparent !== undefined) w.line("traceparent", input.traceparent);
  if (input.upgrade !== undefined) {
    w.line("connection", "upgrade");
    w.line("upgrade", input.upgrade);
  }
  if (input.bodyLength > 0) w.line("content-length", String(input.bodyLength));
  else if (input.bodyLength < 0) w.text("transfer-encoding: chunked\r\n");
  w.crlf();
  return w;
}

/** A backend response's fields: as received, and their names in lower case (the response parser's). */
export interface ResponseFields {
  readonly rawHeaders: readonly string[];
  readonly names: readonly string[];
}

/**
 * The backend's response headers for the client. HTTP/2 needs lower-case names and no
 * connection-specific fields (RFC 9113 §8.2.2); HTTP/1.1 keeps the backend's spelling.
 */
export function downstreamHeaders(fields: ResponseFields, lowerCase: boolean, retag = true): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  const dropped = retag ? notForwardedDownstream : notForwardedThrough;
  const { rawHeaders, names } = fields;
  for (let i = 0; i < names.length; i++) {
    const lower = names[i];
    if (dropped.has(lower)) continue;
    const key = lowerCase ? lower : rawHeaders[2 * i];
    const value = rawHeaders[2 * i + 1];
    const prev = out[key];
    if (prev === undefined) out[key] = value;
    else if (Array.isArray(prev)) prev.push(value);
    else out[key] = [String(prev), value];
  }
  return out;
}

/**
 * A response's field lines for an HTTP/1.1 client, as the pieces they are written from (no string
 * is made of them), and what the framing needs to know of them.
 */
export interface HeadLines {
  /** The backend's head: its field lines are passed on in its order and spelling, less its drops whose kind is not in keptKinds. */
  readonly backend: ResponseText | undefined;
  readonly keptKinds: number;
  /** Ready-made lines after the backend's ("Name: value\r\n" each). */
  lines: string;
  /** x-kedge-backend-name, when kedge tags the response. */
  backendName: string | undefined;
  /** x-kedge-request-id, when kedge adds it, as its parts. */
  requestId: RequestIdParts | undefined;
  hasLength: boolean;
  hasDate: boolean;
  /** The backend's lines carry an x-kedge-request-id that is passed on (winch). */
  hasRequestId: boolean;
}

/** "x-kedge-request-id: <id>\r\n", the id from its parts. */
function requestIdLine(w: HeadWriter, id: RequestIdParts): void {
  w.text("x-kedge-request-id: ");
  w.text(id.idHead);
  w.text(id.idTail);
  w.crlf();
}

/** Lays out `head`'s field lines, each with its CRLF. */
export function writeFieldLines(w: HeadWriter, head: HeadLines): void {
  const from = head.backend;
  if (from) w.bytesWithout(from.bytes, from.bytesAt, from.fieldsAt, from.fieldsEnd, from.drops, head.keptKinds);
  if (head.lines) w.text(head.lines);
  if (head.backendName !== undefined) w.line("x-kedge-backend-name", head.backendName);
  if (head.requestId !== undefined) requestIdLine(w, head.requestId);
}

/** What kind of line a response head's drop is (its bit in HeadLines' keptKinds). */
export const enum Drop {
  /** Hop-by-hop: never passed on. */
  Always = 0,
  /** kedge's own tags: replaced where kedge tags the response, passed through by winch. */
  WhenRetagged = 1,
  /** Content-Length: left out only when Transfer-Encoding overrides it (RFC 9112 §6.3). */
  WhenChunked = 2,
}

/** A backend's response head as text, with the lines no client gets marked (the response parser's ResponseHead). */
export interface ResponseText {
  readonly text: string;
  /** Where the field lines start in `text`, and where they end (its length), each with its CRLF. */
  readonly fieldsAt: number;
  readonly fieldsEnd: number;
  /** The lines a client may not get, of the kinds in Drop; undefined: none. */
  readonly drops: LineDrops | undefined;
  /** The bytes `text` is read from (text[i] is bytes[bytesAt + i]), copied to the client as they are. */
  readonly bytes: Uint8Array;
  readonly bytesAt: number;
  readonly chunked: boolean;
  readonly hasLength: boolean;
  readonly hasDate: boolean;
  /** The backend sent x-kedge-request-id (kedge's, when winch is the client). */
  readonly hasRequestId: boolean;
}

/** downstreamHeaders for an HTTP/1.1 client: the backend's lines copied through, no string per field. */
export function downstreamHeadLines(head: ResponseText, retag = true): HeadLines {
  const keptKinds = (retag ? 0 : 1 << Drop.WhenRetagged) | (head.chunked ? 0 : 1 << Drop.WhenChunked);
  return {
    backend: head,
    keptKinds,
    lines: "",
    backendName: undefined,
    requestId: undefined,
    hasLength: head.hasLength,
    hasDate: head.hasDate,
    hasRequestId: head.hasRequestId && !retag,
  };
}
