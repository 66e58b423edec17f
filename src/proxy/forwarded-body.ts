import { resendLimitBytes } from "../backend/retry-policy.js";
import type { H1Connection } from "../upstream/h1-connection.js";
import type { BodyReader, IngressRequest } from "./ingress.js";

const crlf = Buffer.from("\r\n");
const lastChunk = Buffer.from("0\r\n\r\n");

/**
 * An HTTP request's body on its way to the backend: streamed to the current attempt's
 * connection, framed as chunks when its length is not known, and kept while a policy retry could
 * send it again. The exchange itself holds this state (HttpExchange implements it), so a request
 * allocates nothing more for it.
 */
export interface ForwardedBody extends BodyReader {
  readonly req: IngressRequest;
  /** The current attempt's upstream connection. */
  conn: H1Connection | undefined;
  /** The body's length: 0 for none, -1 while not known (chunked, HTTP/2). */
  bodyLength: number;
  /** The connection the request body goes to; bytes for an attempt given up on (conn no longer it) are not sent. */
  bodyTo: H1Connection | undefined;
  /** Some of the body went upstream. */
  bodyStarted: boolean;
  /** The client's body has all arrived. */
  bodyDone: boolean;
  /**
   * The body so far, kept while a policy retry could send it again (an idempotent request, the
   * body within resendLimitBytes); undefined when it is not kept.
   */
  kept: Buffer[] | undefined;
  keptBytes: number;
}

/** Keeps the body from now on for a retry, when it is within the limit or of a length not known yet (kept until it outgrows it). */
export function keepBody(body: ForwardedBody): void {
  if (body.bodyLength !== 0 && body.bodyLength <= resendLimitBytes) body.kept = [];
}

/** The body to this attempt: what an earlier attempt sent (kept), then the rest as it arrives. */
export function sendBody(body: ForwardedBody, conn: H1Connection): void {
  const kept = body.kept;
  if (kept !== undefined && kept.length > 0) {
    body.bodyStarted = true;
    for (const chunk of kept) writeChunk(body, conn, chunk);
  }
  if (body.bodyDone) return endBody(body, conn);
  const first = body.bodyTo === undefined;
  body.bodyTo = conn;
  if (first) body.req.body.read(body);
  else body.req.body.resume();
}

/** Between attempts the client's body waits, so none of it arrives with nowhere to go. */
export function pauseBody(body: ForwardedBody): void {
  if (body.bodyTo !== undefined && !body.bodyDone) body.req.body.pause();
}

/** A piece of the client's body: kept while it may be sent again, and written to the current attempt. */
export function forwardChunk(body: ForwardedBody, chunk: Buffer): void {
  const kept = body.kept;
  if (kept !== undefined) {
    if ((body.keptBytes += chunk.length) <= resendLimitBytes) kept.push(chunk);
    else body.kept = undefined;
  }
  const conn = body.conn;
  if (conn === undefined || conn !== body.bodyTo) return;
  body.bodyStarted = true;
  if (!writeChunk(body, conn, chunk)) {
    const source = body.req.body;
    source.pause();
    conn.onWritable(() => source.resume());
  }
}

/** The client's body has all arrived: the current attempt's request ends. */
export function forwardEnd(body: ForwardedBody): void {
  body.bodyDone = true;
  const conn = body.conn;
  if (conn === undefined || conn !== body.bodyTo) return;
  endBody(body, conn);
}

/** Writes one piece of the body, framed as a chunk when its length is not known; false: wait for onWritable. */
function writeChunk(body: ForwardedBody, conn: H1Connection, chunk: Buffer): boolean {
  if (body.bodyLength >= 0) return conn.write(chunk);
  conn.write(Buffer.from(`${chunk.length.toString(16)}\r\n`));
  const ok = conn.write(chunk);
  return conn.write(crlf) && ok;
}

function endBody(body: ForwardedBody, conn: H1Connection): void {
  if (body.bodyLength < 0) conn.write(lastChunk);
  conn.endRequest();
}
