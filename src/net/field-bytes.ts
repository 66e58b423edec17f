/**
 * fields.ts's readers for a head still in the bytes it arrived as. A backend's response head is
 * parsed from its bytes: making it a string first (latin1Slice) and searching that string cost more
 * than the parse itself in a profile (bench/README.md, "HTTP/1.1 CPU per request with 2 workers").
 */

/** `bytes[at..at+lower.length)` spells `lower` (a lower-case name) in any case; only letters fold. */
export function bytesNameIs(bytes: Uint8Array, at: number, lower: string): boolean {
  for (let i = 0; i < lower.length; i++) {
    const c = bytes[at + i];
    const l = lower.charCodeAt(i);
    if (c !== l && !(l >= 97 && l <= 122 && c === l - 32)) return false;
  }
  return true;
}

/** Where bytes[start..end)'s value starts once the optional whitespace before it (SP, HTAB) is skipped. */
export function valueStart(bytes: Uint8Array, start: number, end: number): number {
  while (start < end && (bytes[start] === 32 || bytes[start] === 9)) start++;
  return start;
}

/** Where bytes[start..end)'s value ends once the optional whitespace after it is dropped. */
export function valueEnd(bytes: Uint8Array, start: number, end: number): number {
  while (end > start && (bytes[end - 1] === 32 || bytes[end - 1] === 9)) end--;
  return end;
}

/** The decimal number in bytes[start..end) between optional whitespace (see fields.ts' decimalIn); -1 when it is anything else. */
export function bytesDecimal(bytes: Uint8Array, start: number, end: number): number {
  start = valueStart(bytes, start, end);
  end = valueEnd(bytes, start, end);
  if (start === end || end - start > 15) return -1;
  let value = 0;
  for (let i = start; i < end; i++) {
    const d = bytes[i] - 48;
    if (d < 0 || d > 9) return -1;
    value = value * 10 + d;
  }
  return value;
}

/** Where a LastValue cuts a value out when it is not the last one: a string of the bytes it was read from. */
export interface TextSource {
  text(): string;
}

/**
 * The last value read from a run of bytes, and the string handed out for it: peers send the same
 * Host (or target) again and again, and the same string is not cut out, read or hashed anew.
 */
export class LastValue {
  private readonly last = new Uint8Array(256);
  private length = -1;
  private value = "";

  /** bytes[from..to) as latin1: the last string handed out when the bytes are the same, else `source`'s text[from..to). */
  read(bytes: Uint8Array, from: number, to: number, source: TextSource): string {
    const n = to - from;
    const last = this.last;
    if (n === this.length) {
      let i = 0;
      while (i < n && bytes[from + i] === last[i]) i++;
      if (i === n) return this.value;
    }
    const value = source.text().slice(from, to);
    if (n <= last.length) {
      for (let i = 0; i < n; i++) last[i] = bytes[from + i];
      this.length = n;
      this.value = value;
    }
    return value;
  }
}
