import type { IncomingMessage } from "node:http";
import { KedgeError } from "../errors.js";

/** The request-head limits of the server section, with defaults applied. */
export interface HeadLimits {
  maxHeaderBytes: number;
  maxHeaders: number;
  maxUriBytes: number;
}

const tooManyHeaders = (max: number) => new KedgeError("bad-request", 431, `more than ${max} request header fields`);

/**
 * What the HTTP/1.1 parser lets through but a proxy must not forward: framing a backend could read
 * differently from kedge (request smuggling), and heads beyond the configured limits.
 * Bun's parser already refuses CL+TE, differing Content-Lengths, bad chunk sizes, obs-fold,
 * bare LF and invalid header names (tested); this adds the rest of RFC 9112's rules.
 */
export function refuseH1Head(req: IncomingMessage, limits: HeadLimits): KedgeError | undefined {
  const raw = req.rawHeaders;
  if (raw.length > limits.maxHeaders * 2) return tooManyHeaders(limits.maxHeaders);
  if ((req.url ?? "").length > limits.maxUriBytes) return new KedgeError("bad-request", 414, `request target longer than ${limits.maxUriBytes} bytes`);
  let hosts = 0;
  let lengths = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i];
    if (name.length === 4 && name.toLowerCase() === "host") hosts++;
    else if (name.length === 14 && name.toLowerCase() === "content-length") lengths++;
  }
  // RFC 9112 §3.2: more than one Host is a 400; repeated Content-Length is refused even when equal.
  if (hosts > 1) return new KedgeError("bad-request", 400, "more than one Host header");
  if (lengths > 1) return new KedgeError("bad-request", 400, "more than one Content-Length header");
  const te = req.headers["transfer-encoding"];
  if (te !== undefined) {
    // RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 means the framing cannot be trusted.
    if (req.httpVersionMinor === 0) return new KedgeError("bad-request", 400, "Transfer-Encoding in an HTTP/1.0 request");
    // kedge re-frames bodies as chunked; another coding (gzip, chunked) would reach the backend undecoded.
    if (te.trim().toLowerCase() !== "chunked") return new KedgeError("bad-request", 501, `Transfer-Encoding ${JSON.stringify(te.slice(0, 50))} is not supported`);
  }
  return undefined;
}

/**
 * The answer to a head the parser refused: 414 when the request line alone overflowed the limit,
 * 431 for too large a head, 400 otherwise. Bun hands over the bytes read so far as rawPacket.
 */
export function parserRefusal(err: Error & { code?: string; rawPacket?: Buffer }, limits: HeadLimits): KedgeError {
  if (err.code === "HPE_HEADER_OVERFLOW") {
    const packet = err.rawPacket;
    const lineEnd = packet ? packet.indexOf("\r\n") : -1;
    if (packet && (lineEnd < 0 || lineEnd > limits.maxUriBytes)) return new KedgeError("bad-request", 414, `request target longer than ${limits.maxUriBytes} bytes`);
    return new KedgeError("bad-request", 431, `request head larger than ${limits.maxHeaderBytes} bytes`);
  }
  return new KedgeError("bad-request", 400, `malformed request (${err.code ?? "parse error"})`);
}
