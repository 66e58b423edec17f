import { constants, type Http2Session, type ServerHttp2Stream } from "node:http2";

/** Client-reset streams per second one connection may cause before it is cut off. */
const maxResetsPerSecond = 200;

interface ResetWindow {
  start: number;
  count: number;
}

const windows = new WeakMap<Http2Session, ResetWindow>();

/**
 * HTTP/2 rapid reset (CVE-2023-44487): a client opens streams and cancels them at once, so each
 * costs kedge (and a backend) a request without costing the client a concurrent-stream slot.
 * Bun cuts such a connection off after about a thousand resets; kedge does it sooner, with
 * GOAWAY ENHANCE_YOUR_CALM, since every reset stream may already have reached a backend.
 */
function countReset(this: ServerHttp2Stream): void {
  const session = this.session;
  if (!session || session.destroyed) return;
  const now = performance.now();
  let w = windows.get(session);
  if (!w || now - w.start > 1000) windows.set(session, (w = { start: now, count: 0 }));
  if (++w.count <= maxResetsPerSecond) return;
  session.goaway(constants.NGHTTP2_ENHANCE_YOUR_CALM);
  session.destroy();
}

/** Watches one stream for a reset by the client; one listener function shared by every stream. */
export function watchResets(stream: ServerHttp2Stream): void {
  stream.on("aborted", countReset); // fires at most once; `once` would wrap the listener per stream
}
