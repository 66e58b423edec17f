const copyBytes = Buffer.prototype.copy;
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
