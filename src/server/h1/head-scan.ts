import { KedgeError } from "../../errors.js";

/** The request-head limits of the server section, with defaults applied. */
export interface HeadLimits {
  maxHeaderBytes: number;
  maxHeaders: number;
  maxUriBytes: number;
}

export const bad = (message: string) => new KedgeError("bad-request", 400, message);
export const tooLong = (max: number) => new KedgeError("bad-request", 414, `request target longer than ${max} bytes`);

/**
 * What findHeadEnd saw of the head it found: lineEnds[k] is where line k's CRLF starts (line 0 is
 * the request line), colons[k] where its first colon is (-1: none). Read by request-head's parse right
 * after, so the lines are not searched again (a native indexOf per search, in a profile).
 */
export const scanned = { lineEnds: new Int32Array(64), colons: new Int32Array(64), lineCount: 0 };

function grownTable(): void {
  const ends = new Int32Array(scanned.lineEnds.length * 2);
  ends.set(scanned.lineEnds);
  scanned.lineEnds = ends;
  const colons = new Int32Array(scanned.colons.length * 2);
  colons.set(scanned.colons);
  scanned.colons = colons;
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
          scanned.lineCount = lines;
          return i + 2;
        }
        if (lines === scanned.lineEnds.length) grownTable();
        scanned.lineEnds[lines] = i;
        scanned.colons[lines] = colon;
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
  if (lines === 0 || scanned.lineEnds[0] > limits.maxUriBytes) return tooLong(limits.maxUriBytes);
  return new KedgeError("bad-request", 431, `request head larger than ${limits.maxHeaderBytes} bytes`);
}
