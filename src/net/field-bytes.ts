/**
 * fields.ts's readers for a head still in the bytes it arrived as. A backend's response head is
 * parsed from its bytes: making it a string first (latin1Slice) and searching that string cost more
 * than the parse itself in a profile (bench/README.md, "Response heads read as bytes").
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
