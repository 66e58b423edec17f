import type { Duplex } from "node:stream";
import { preface } from "../h2/frames.js";

/**
 * What a tunnel's client sent first: the HTTP/2 client preface (h2c with prior knowledge, as
 * grpc-js and grpc-go speak inside a grpc_proxy tunnel), anything else (a TLS ClientHello, an
 * HTTP/1.1 request), or nothing before it closed or fell silent. `bytes` is everything read so
 * far, to be handed on first.
 */
export type Sniffed = { kind: "h2"; bytes: Buffer } | { kind: "other"; bytes: Buffer } | { kind: "closed" } | { kind: "idle"; bytes: Buffer };

/** "h2" once the whole preface is in, "other" at the first byte that differs, undefined while a prefix of it. */
export function prefaceVerdict(bytes: Uint8Array): "h2" | "other" | undefined {
  const n = Math.min(bytes.length, preface.length);
  for (let i = 0; i < n; i++) if (bytes[i] !== preface[i]) return "other";
  return n === preface.length ? "h2" : undefined;
}

/**
 * Reads the tunnel's first bytes until they tell HTTP/2 from the rest: at most the preface's 24
 * bytes, and for at most `idleMs` (a client that says nothing is not held open for ever). The
 * tunnel is left paused with nothing taken off it but `bytes`: whoever serves it next resumes it.
 */
export function sniffTunnel(tunnel: Duplex, early: Buffer, idleMs: number): Promise<Sniffed> {
  const known = prefaceVerdict(early);
  if (known !== undefined) {
    tunnel.pause();
    return Promise.resolve(known === "h2" ? { kind: "h2", bytes: early } : { kind: "other", bytes: early });
  }
  return new Promise((resolve) => {
    let bytes = early;
    const done = (result: Sniffed) => {
      clearTimeout(timer);
      tunnel.pause();
      tunnel.off("data", onData);
      tunnel.off("end", onClosed);
      tunnel.off("close", onClosed);
      resolve(result);
    };
    const onData = (chunk: Buffer) => {
      bytes = bytes.length === 0 ? chunk : Buffer.concat([bytes, chunk]);
      const verdict = prefaceVerdict(bytes);
      if (verdict !== undefined) done(verdict === "h2" ? { kind: "h2", bytes } : { kind: "other", bytes });
    };
    const onClosed = () => done({ kind: "closed" });
    const timer = setTimeout(() => done({ kind: "idle", bytes }), idleMs);
    tunnel.on("data", onData);
    tunnel.once("end", onClosed);
    tunnel.once("close", onClosed);
  });
}
