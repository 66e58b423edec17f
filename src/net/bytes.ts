/** Buffer's copy, applied to any Uint8Array: one native call, no view. */
const copyBytes = Buffer.prototype.copy as (this: Uint8Array, target: Uint8Array, targetStart: number, sourceStart: number, sourceEnd: number) => number;
/** Above this many bytes a view is cheaper than a copy (measured on Bun 1.4: 1 KB copies in ~0.3 µs). */
const copyLimit = 1024;

/**
 * data[start..end) for a consumer that keeps or writes it. The first view (subarray) of a Buffer
 * Bun handed to a socket's data handler moves its bytes out of the GC heap into an ArrayBuffer of
 * its own: ~0.3–0.5 µs, once per read, the largest native cost of a small proxied response in a
 * perf profile (bench/README.md). A short range is copied instead and the whole array passed as it is.
 */
export function bytesIn(data: Uint8Array, start: number, end: number): Uint8Array {
  if (start === 0 && end === data.length) return data;
  const n = end - start;
  if (n > copyLimit) return data.subarray(start, end);
  const out = Buffer.allocUnsafe(n);
  if (n <= 64) for (let i = 0; i < n; i++) out[i] = data[start + i];
  else copyBytes.call(data, out, 0, start, end);
  return out;
}

/** Copies source[start, end) into target at targetStart, without making a view of either (a native call and an object each). */
export function copyRange(source: Uint8Array, start: number, end: number, target: Uint8Array, targetStart: number): void {
  copyBytes.call(source, target, targetStart, start, end);
}

/** bytes[start, end) as an array of its own, whatever the array: Buffer's own slice() is a view. */
export function copyOf(bytes: Uint8Array, start = 0, end = bytes.length): Uint8Array {
  return Uint8Array.prototype.slice.call(bytes, start, end);
}
