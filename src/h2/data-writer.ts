import { defaultMaxFrameSize, defaultWindow, Flag, FrameBuffer, FrameType } from "./frames.js";

/**
 * A stream's pendingOut while nothing waits: most answers leave at once, so a stream gets its own
 * array only when bytes must wait. Frozen: a push onto it is a bug, and throws.
 */
export const noPendingOut: Uint8Array[] = Object.freeze([]) as unknown as Uint8Array[];

/** What the writer reads and updates on a stream of either role. */
export interface H2SendingStream {
  readonly id: number;
  /** Window the peer granted for this stream; negative after the peer shrank INITIAL_WINDOW_SIZE. */
  sendWindow: number;
  /** DATA waiting for window, in order; noPendingOut until something waits. */
  pendingOut: Uint8Array[];
  pendingOutBytes: number;
  /** END_STREAM goes with the last of pendingOut. */
  pendingEnd: boolean;
  /** performance.now() since which pendingOut has waited for window without any of it going out. */
  blockedSince: number;
  /** A write was told to wait: the writer is owed a drain notice. */
  wantsDrain: boolean;
  closed: boolean;
}

/**
 * Windowed DATA writing for both roles (RFC 9113 §6.9): a stream's bytes go out as far as its
 * window, the connection's and the peer's max frame size allow, END_STREAM on the last piece; the
 * rest waits in the stream and goes when the peer grants window (WINDOW_UPDATE, a larger
 * INITIAL_WINDOW_SIZE). Frames collect in `out`, which a role writes to its transport once per
 * turn; a role whose transport holds too much says so through `congested`, and writers then wait
 * for `transportDrained`.
 */
export abstract class H2DataWriter<S extends H2SendingStream> {
  protected readonly out = new FrameBuffer();
  protected connSend = defaultWindow;
  protected peerMaxFrame = defaultMaxFrameSize;
  /** Streams with DATA waiting for window. */
  protected readonly blocked = new Set<S>();
  /** performance.now() of the last read, for idle sweeps, keepalives and blocked streams' clocks. */
  lastActivity = performance.now();

  /** Writes the turn's frames soon (once per turn, however many frames). */
  protected abstract schedule(): void;
  /** The transport holds more than it should: writers wait for its drain. */
  protected abstract get congested(): boolean;
  /** END_STREAM went out on the stream's last DATA frame. */
  protected abstract dataEnded(stream: S): void;
  /** A writer told to wait may write again. */
  protected abstract notifyDrain(stream: S): void;

  /** A stream's queue is empty again and its END_STREAM was not asked for: a role with trailers to send sends them here. */
  protected pendingSent(stream: S): void {
    if (stream.wantsDrain && !this.congested) {
      stream.wantsDrain = false;
      this.notifyDrain(stream);
    }
  }

  /**
   * Sends chunk[from, to) as far as the windows allow, with END_STREAM on its last frame when
   * `end`, and queues the rest behind any bytes already waiting. False when bytes wait (for window
   * or the transport): a drain notice follows, unless this was the end. An empty END_STREAM needs
   * no window and waits only behind queued bytes. A range, not a view: the first view of a socket
   * read costs more than the rest of its relaying (bytesIn), and one is made only for bytes that wait.
   */
  protected writeData(stream: S, chunk: Uint8Array, end: boolean, from = 0, to = chunk.length): boolean {
    if (stream.pendingOutBytes > 0 || stream.pendingOut.length > 0) this.hold(stream, chunk, from, to, end);
    else {
      const sent = this.dataFrames(stream, chunk, from, to, end);
      if (from + sent < to) this.hold(stream, chunk, from + sent, to, end);
      else if (end) this.dataEnded(stream);
    }
    const ok = stream.pendingOutBytes === 0 && !this.congested;
    if (!ok && !end) stream.wantsDrain = true;
    return ok;
  }

  /** Queues chunk[from, to) on a stream that cannot send yet (one still waiting for its id); sendPending sends them. */
  protected queueData(stream: S, chunk: Uint8Array, from: number, to: number, end: boolean): void {
    if (to > from) {
      if (stream.pendingOut === noPendingOut) stream.pendingOut = [];
      stream.pendingOut.push(from > 0 || to < chunk.length ? chunk.subarray(from, to) : chunk);
      stream.pendingOutBytes += to - from;
    }
    if (end) stream.pendingEnd = true;
  }

  private hold(stream: S, chunk: Uint8Array, from: number, to: number, end: boolean): void {
    this.queueData(stream, chunk, from, to, end);
    if (this.blocked.has(stream)) return;
    this.blocked.add(stream);
    stream.blockedSince = performance.now();
  }

  /**
   * Frames chunk[from, to) as far as the windows allow, split at the peer's max frame size,
   * END_STREAM on the last frame when `end` and all of it went; returns the bytes sent.
   */
  private dataFrames(stream: S, chunk: Uint8Array, from: number, to: number, end: boolean): number {
    const rest = to - from;
    const n = Math.min(rest, stream.sendWindow, this.connSend);
    if (n <= 0 && !(end && rest === 0)) return 0;
    const stop = from + Math.max(n, 0);
    const max = this.peerMaxFrame;
    const endFlag = end && stop === to ? Flag.END_STREAM : 0;
    let at = from;
    do {
      const next = Math.min(stop, at + max);
      this.out.frame(FrameType.DATA, next === stop ? endFlag : 0, stream.id, chunk, at, next);
      at = next;
    } while (at < stop);
    if (n > 0) {
      stream.sendWindow -= n;
      this.connSend -= n;
    }
    this.schedule();
    return Math.max(n, 0);
  }

  /** Sends a stream's queued bytes as far as the windows allow; then its END_STREAM, or the role's pendingSent. */
  protected sendPending(stream: S): void {
    const pending = stream.pendingOut;
    while (pending.length > 0) {
      const chunk = pending[0];
      const last = stream.pendingEnd && pending.length === 1;
      const sent = this.dataFrames(stream, chunk, 0, chunk.length, last);
      stream.pendingOutBytes -= sent;
      if (sent < chunk.length) {
        pending[0] = chunk.subarray(sent);
        // Called on a read (WINDOW_UPDATE, SETTINGS): lastActivity is now.
        if (sent > 0) stream.blockedSince = this.lastActivity;
        if (!this.blocked.has(stream)) {
          this.blocked.add(stream);
          stream.blockedSince = performance.now();
        }
        return;
      }
      pending.shift();
      if (last) {
        stream.pendingEnd = false;
        this.blocked.delete(stream);
        return this.dataEnded(stream);
      }
    }
    this.blocked.delete(stream);
    if (stream.pendingEnd) {
      stream.pendingEnd = false;
      this.dataFrames(stream, emptyChunk, 0, 0, true);
      return this.dataEnded(stream);
    }
    this.pendingSent(stream);
  }

  /** The connection's window, or every stream's, grew: blocked streams send what they can. */
  protected sendBlocked(): void {
    if (this.blocked.size === 0) return;
    for (const s of [...this.blocked]) {
      if (this.connSend <= 0) return;
      if (s.closed) this.blocked.delete(s);
      else this.sendPending(s);
    }
  }

  /** The transport took everything queued: writers waiting on it may go on. */
  protected transportDrained(streams: Iterable<S>): void {
    for (const s of streams) {
      if (s.wantsDrain && s.pendingOutBytes === 0) {
        s.wantsDrain = false;
        this.notifyDrain(s);
      }
    }
  }
}

const emptyChunk = new Uint8Array(0);
