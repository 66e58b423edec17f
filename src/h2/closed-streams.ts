/**
 * How a stream that is no longer open came to close, which decides what a late frame on it means
 * (RFC 9113 §5.1): frames in flight when this side reset a stream are dropped; DATA or HEADERS
 * after the peer reset it are a stream error, after both sides ended it a connection error.
 */
export const ClosedHow = {
  /** An id at or below the highest used that never carried a stream: the peer skipped it. */
  NEVER_OPENED: 0,
  /** Both sides sent END_STREAM. */
  ENDED: 1,
  /** The peer sent RST_STREAM. */
  RESET_BY_PEER: 2,
  /** This side sent RST_STREAM (or refused the stream). */
  RESET_LOCALLY: 3,
  /** Closed too long ago to remember: treated as reset locally, its late frames dropped. */
  FORGOTTEN: 4,
} as const;
export type ClosedHow = (typeof ClosedHow)[keyof typeof ClosedHow];

/** Closed streams remembered: late frames come within a round trip, long before this many more streams close. */
const remembered = 256;

/**
 * The most recently closed streams of one connection and how each closed, in a fixed ring: a
 * close costs two array stores; only a frame on a closed stream (rare) scans it.
 */
export class ClosedStreams {
  private readonly ids = new Int32Array(remembered);
  private readonly hows = new Uint8Array(remembered);
  /** Each stream's send window when it closed, so a late WINDOW_UPDATE can still overflow it (RFC 9113 §6.9.1). */
  private readonly windows = new Float64Array(remembered);
  private next = 0;
  /** The highest id pushed out of the ring: ids at or below it may have been open once. */
  private forgottenUpTo = 0;

  add(id: number, how: ClosedHow, sendWindow: number): void {
    const at = this.next;
    const old = this.ids[at];
    if (old > this.forgottenUpTo) this.forgottenUpTo = old;
    this.ids[at] = id;
    this.hows[at] = how;
    this.windows[at] = sendWindow;
    this.next = at + 1 === remembered ? 0 : at + 1;
  }

  /** Records that the peer, too, reset stream `id`, which this side had reset: its frames from now on are its own violation. */
  peerResetToo(id: number): void {
    const ids = this.ids;
    for (let i = 0; i < remembered; i++) if (ids[i] === id && this.hows[i] === ClosedHow.RESET_LOCALLY) this.hows[i] = ClosedHow.RESET_BY_PEER;
  }

  /** Adds a late WINDOW_UPDATE's increment to closed stream `id`'s window; true when that takes it above 2^31-1. */
  overflows(id: number, increment: number): boolean {
    const ids = this.ids;
    for (let i = 0; i < remembered; i++) if (ids[i] === id) return (this.windows[i] += increment) > 0x7fffffff;
    return false;
  }

  /** How stream `id`, known not to be open and not idle, closed. */
  how(id: number): ClosedHow {
    const ids = this.ids;
    for (let i = 0; i < remembered; i++) if (ids[i] === id) return this.hows[i] as ClosedHow;
    return id <= this.forgottenUpTo ? ClosedHow.FORGOTTEN : ClosedHow.NEVER_OPENED;
  }
}
