/**
 * Buffer's latin1Slice/latin1Write, which node and Bun both have but @types/node does not declare.
 * One native call each, without toString/write's encoding lookup, which cost ~20% more per head.
 * True ISO-8859-1: one char per byte, so header bytes survive the round trip to the client
 * (TextDecoder("latin1") is windows-1252 per the Encoding Standard and remaps 0x80–0x9F).
 */
interface Latin1Methods {
  latin1Slice(start: number, end: number): string;
  latin1Write(text: string, offset: number): number;
}

const methods = Buffer.prototype as unknown as Latin1Methods;

/** bytes[start..end) as a latin1 string. */
export function latin1Text(bytes: Uint8Array, start: number, end: number): string {
  return methods.latin1Slice.call(bytes, start, end);
}

/** Writes `text` as latin1 bytes at `offset`; returns how many bytes it wrote. */
export function writeLatin1(into: Uint8Array, text: string, offset: number): number {
  return methods.latin1Write.call(into, text, offset);
}
