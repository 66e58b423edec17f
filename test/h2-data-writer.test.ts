import { describe, expect, it } from "bun:test";
import { H2Endpoint } from "../src/h2/endpoint.ts";
import { Setting } from "../src/h2/frames.ts";
import { TestStream as Stream } from "./helpers/h2-stream-state.ts";
import { frame, settings, writtenFrames } from "./helpers/h2-wire.ts";

// The windowed DATA writer both roles share, in process: a minimal role feeds the engine the
// peer's SETTINGS and WINDOW_UPDATEs as wire bytes and reads back the DATA frames it wrote.

interface DataFrame {
  id: number;
  length: number;
  end: boolean;
}

class WriterRole extends H2Endpoint<Stream> {
  readonly events: string[] = [];
  transportFull = false;
  constructor() {
    super({ streamWindow: 65_535, connectionWindow: 65_535, maxHeaderListSize: 16_384, maxBlockBytes: 32_768 });
  }
  open(id: number): Stream {
    const s = new Stream(id, this.peerInitialWindow);
    this.lastStreamId = id;
    this.streams.set(id, s);
    return s;
  }
  write(stream: Stream, bytes: number, end = false): boolean {
    return this.writeData(stream, new Uint8Array(bytes), end);
  }
  /** bytes[from, to) of a larger array, ending the stream. */
  writeRange(stream: Stream, bytes: Uint8Array, from: number, to: number): boolean {
    return this.writeData(stream, bytes, true, from, to);
  }
  /** The payloads of the DATA frames written since the last look. */
  sentPayloads(): string[] {
    const bytes = writtenFrames(this.out);
    const payloads: string[] = [];
    for (let at = 0; at + 9 <= bytes.length; at += 9 + bytes.readUIntBE(at, 3)) {
      if (bytes[at + 3] === 0) payloads.push(bytes.subarray(at + 9, at + 9 + bytes.readUIntBE(at, 3)).toString());
    }
    return payloads;
  }
  writeEnd(stream: Stream): void {
    this.writeData(stream, new Uint8Array(0), true);
  }
  drainTransport(): void {
    this.transportFull = false;
    this.transportDrained(this.streams.values());
  }
  /** DATA frames written since the last look. */
  sentData(): DataFrame[] {
    const bytes = writtenFrames(this.out);
    const frames: DataFrame[] = [];
    for (let at = 0; at + 9 <= bytes.length; at += 9 + bytes.readUIntBE(at, 3)) {
      if (bytes[at + 3] === 0) frames.push({ id: bytes.readUInt32BE(at + 5), length: bytes.readUIntBE(at, 3), end: (bytes[at + 4] & 1) === 1 });
    }
    return frames;
  }
  protected get congested(): boolean {
    return this.transportFull;
  }
  protected dataEnded(stream: Stream): void {
    this.events.push(`ended ${stream.id}`);
  }
  protected notifyDrain(stream: Stream): void {
    this.events.push(`drain ${stream.id}`);
  }
  protected schedule(): void {}
  protected connectionError(code: number, reason: string): void {
    this.events.push(`connection error ${code}: ${reason}`);
  }
  protected streamError(stream: Stream, code: number): void {
    this.events.push(`stream error ${stream.id} ${code}`);
  }
  protected openStream(): void {}
  protected streamHeaders(): void {}
  protected streamData(): void {}
  protected peerReset(): void {}
  protected peerSettings(): void {}
  protected peerGoaway(): void {}
}

const windowUpdate = (id: number, increment: number) => {
  const p = Buffer.alloc(4);
  p.writeUInt32BE(increment);
  return frame(8, 0, id, p);
};

/** A role that has the peer's SETTINGS (with `pairs`) and a stream 1. */
function writer(pairs: Array<[number, number]> = []): { w: WriterRole; s: Stream } {
  const w = new WriterRole();
  w.onData(settings(pairs));
  w.sentData(); // the SETTINGS ACK
  return { w, s: w.open(1) };
}

const piece = (length: number, end = false): DataFrame => ({ id: 1, length, end });

describe("HTTP/2 DATA writer", () => {
  it("sends a range of a larger array as far as the window allows, then the rest of that range only, with END_STREAM", () => {
    const { w, s } = writer([[Setting.INITIAL_WINDOW_SIZE, 4]]);
    const read = Buffer.from("<<abcdefgh>>");
    expect(w.writeRange(s, read, 2, 10)).toBe(false);
    expect(w.sentPayloads()).toEqual(["abcd"]);
    expect(s.pendingOutBytes).toBe(4);
    w.onData(windowUpdate(1, 100));
    expect(w.sentPayloads()).toEqual(["efgh"]);
    expect(w.events).toEqual(["ended 1"]);
    const open = writer();
    expect(open.w.writeRange(open.s, read, 2, 10)).toBe(true);
    expect(open.w.sentPayloads()).toEqual(["abcdefgh"]);
  });


  it("sends what the stream window allows, queues the rest, and sends it as WINDOW_UPDATEs grant more", () => {
    const { w, s } = writer([[Setting.INITIAL_WINDOW_SIZE, 100]]);
    expect(w.write(s, 250)).toBe(false);
    expect(w.sentData()).toEqual([piece(100)]);
    expect(s.pendingOutBytes).toBe(150);
    w.onData(windowUpdate(1, 100));
    expect(w.sentData()).toEqual([piece(100)]);
    expect(w.events).toEqual([]);
    w.onData(windowUpdate(1, 1000));
    expect(w.sentData()).toEqual([piece(50)]);
    expect(w.events).toEqual(["drain 1"]);
    expect(w.write(s, 10)).toBe(true);
    expect(w.sentData()).toEqual([piece(10)]);
  });

  it("stops at the connection window, queues later writes behind the waiting bytes, and resumes on the connection's WINDOW_UPDATE", () => {
    const { w, s } = writer([[Setting.INITIAL_WINDOW_SIZE, 1 << 20]]);
    expect(w.write(s, 70_000)).toBe(false);
    expect(w.sentData()).toEqual([piece(16_384), piece(16_384), piece(16_384), piece(16_383)]);
    expect(w.write(s, 5)).toBe(false); // behind the 4465 bytes waiting, though its stream window is open
    expect(w.sentData()).toEqual([]);
    w.onData(windowUpdate(0, 10_000));
    expect(w.sentData()).toEqual([piece(4465), piece(5)]);
    expect(w.events).toEqual(["drain 1"]);
  });

  it("splits DATA at the peer's max frame size, and at a larger one once the peer's SETTINGS raise it", () => {
    const { w, s } = writer([[Setting.INITIAL_WINDOW_SIZE, 1 << 20]]);
    w.onData(windowUpdate(0, 1 << 20));
    w.write(s, 40_000);
    expect(w.sentData()).toEqual([piece(16_384), piece(16_384), piece(7232)]);
    w.onData(settings([[Setting.MAX_FRAME_SIZE, 30_000]]));
    w.sentData();
    w.write(s, 40_000);
    expect(w.sentData()).toEqual([piece(30_000), piece(10_000)]);
  });

  it("puts END_STREAM on the last frame only: of a write that fits, of queued bytes once they go, or alone when end() brings no bytes", () => {
    const fits = writer();
    fits.w.write(fits.s, 20_000, true);
    expect(fits.w.sentData()).toEqual([piece(16_384), piece(3616, true)]);
    expect(fits.w.events).toEqual(["ended 1"]);

    const queued = writer([[Setting.INITIAL_WINDOW_SIZE, 10]]);
    queued.w.write(queued.s, 30);
    queued.w.writeEnd(queued.s);
    expect(queued.w.sentData()).toEqual([piece(10)]);
    expect(queued.w.events).toEqual([]);
    queued.w.onData(windowUpdate(1, 10));
    expect(queued.w.sentData()).toEqual([piece(10)]);
    queued.w.onData(windowUpdate(1, 10));
    expect(queued.w.sentData()).toEqual([piece(10, true)]);
    expect(queued.w.events).toEqual(["ended 1"]);

    const empty = writer([[Setting.INITIAL_WINDOW_SIZE, 0]]);
    expect(empty.w.write(empty.s, 0, true)).toBe(true); // an empty END_STREAM needs no window
    expect(empty.w.sentData()).toEqual([piece(0, true)]);
    expect(empty.w.events).toEqual(["ended 1"]);
  });

  it("holds DATA while a smaller SETTINGS_INITIAL_WINDOW_SIZE leaves the window negative, and sends once a larger one makes it positive", () => {
    const { w, s } = writer([[Setting.INITIAL_WINDOW_SIZE, 100]]);
    w.write(s, 100);
    w.sentData();
    w.onData(settings([[Setting.INITIAL_WINDOW_SIZE, 50]]));
    expect(s.sendWindow).toBe(-50);
    expect(w.write(s, 10, true)).toBe(false);
    w.onData(windowUpdate(1, 40));
    expect(s.sendWindow).toBe(-10);
    expect(w.sentData()).toEqual([]);
    w.onData(settings([[Setting.INITIAL_WINDOW_SIZE, 200]]));
    expect(w.sentData()).toEqual([piece(10, true)]);
    expect(s.sendWindow).toBe(130);
    expect(w.events).toEqual(["ended 1"]);
  });

  it("tells a writer to wait while the transport is full, and lets it go on once the transport drains", () => {
    const { w, s } = writer();
    w.transportFull = true;
    expect(w.write(s, 10)).toBe(false);
    expect(w.sentData()).toEqual([piece(10)]);
    w.drainTransport();
    expect(w.events).toEqual(["drain 1"]);
    expect(w.write(s, 10)).toBe(true);
  });
});
