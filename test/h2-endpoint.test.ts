import { describe, expect, it } from "bun:test";
import { ClosedHow, ClosedStreams } from "../src/h2/closed-streams.ts";
import { H2Endpoint } from "../src/h2/endpoint.ts";
import { ErrorCode } from "../src/h2/frames.ts";
import { encodeHeaders, type H2Headers } from "../src/h2/hpack.ts";
import { data, frame, rstStream, settings, writtenFrames } from "./helpers/h2-wire.ts";
import { TestStream as Stream } from "./helpers/h2-stream-state.ts";

// The shared HTTP/2 engine's stream-state machine, in process: a minimal role records what the
// engine decides for each frame, so each transition of RFC 9113 §5.1 is checked on its own.

/** A server-like role that answers nothing: it records errors and closes streams as told. */
class RecordingRole extends H2Endpoint<Stream> {
  readonly events: string[] = [];
  constructor() {
    super({ streamWindow: 65_535, connectionWindow: 65_535, maxHeaderListSize: 16_384, maxBlockBytes: 32_768 });
  }
  protected schedule(): void {}
  protected connectionError(code: number, reason: string): void {
    this.events.push(`connection error ${code}: ${reason}`);
    this.closed = true;
  }
  protected streamError(stream: Stream, code: number): void {
    this.events.push(`stream error ${stream.id} ${code}`);
    this.close(stream, ClosedHow.RESET_LOCALLY);
  }
  protected openStream(id: number, _headers: H2Headers, endStream: boolean, fault: string | undefined): void {
    this.lastStreamId = id;
    if (fault) return void this.events.push(`refused ${id}: ${fault}`);
    const s = new Stream(id);
    s.remoteEnded = endStream;
    this.streams.set(id, s);
    this.events.push(`open ${id}`);
  }
  protected streamHeaders(stream: Stream): void {
    this.events.push(`trailers ${stream.id}`);
  }
  protected streamData(stream: Stream, flags: number, _buf: Uint8Array, start: number, end: number): void {
    this.events.push(`data ${stream.id} ${end - start}`);
    if (flags & 1) stream.remoteEnded = true;
  }
  protected peerReset(stream: Stream): void {
    this.close(stream, ClosedHow.RESET_BY_PEER);
  }
  protected peerSettings(): void {}
  protected peerGoaway(): void {}
  protected get congested(): boolean {
    return false;
  }
  protected dataEnded(): void {}
  protected notifyDrain(): void {}

  /** The role answered the stream in full (END_STREAM), or reset it. */
  finish(id: number, how: ClosedHow): void {
    this.close(this.streams.get(id)!, how);
  }
  private close(stream: Stream, how: ClosedHow): void {
    stream.closed = true;
    this.streams.delete(stream.id);
    this.closedStreams.add(stream.id, how, stream.sendWindow);
  }
  /** RST_STREAM codes the engine wrote on its own. */
  resets(): number[] {
    const bytes = writtenFrames(this.out);
    const codes: number[] = [];
    for (let at = 0; at + 9 <= bytes.length; at += 9 + bytes.readUIntBE(at, 3)) if (bytes[at + 3] === 3) codes.push(bytes.readUInt32BE(at + 9));
    return codes;
  }
}

const request = encodeHeaders({ ":method": "GET", ":scheme": "http", ":path": "/", ":authority": "a" });
const headers = (id: number, flags = 0x5) => frame(1, flags, id, request);

function role(...frames: Buffer[]): RecordingRole {
  const r = new RecordingRole();
  r.onData(Buffer.concat([settings(), ...frames]));
  r.resets(); // the SETTINGS ACK
  return r;
}

describe("HTTP/2 engine stream states", () => {
  it("opens a stream on HEADERS for a new odd id and refuses a self-dependent one as malformed", () => {
    const r = role(headers(1), frame(1, 0x25, 3, Buffer.concat([Buffer.from([0, 0, 0, 3, 16]), request])));
    expect(r.events).toEqual(["open 1", "refused 3: a stream depending on itself"]);
  });

  it("drops DATA in flight on a stream this side reset", () => {
    const r = role(headers(1, 0x4));
    r.finish(1, ClosedHow.RESET_LOCALLY);
    r.onData(data(1, 0x1, "late"));
    expect(r.events).toEqual(["open 1"]);
    expect(r.resets()).toEqual([]);
  });

  it("answers DATA after the peer's own RST_STREAM with a stream error STREAM_CLOSED", () => {
    const r = role(headers(1, 0x4), rstStream(1, ErrorCode.CANCEL));
    r.onData(data(1, 0x1, "late"));
    expect(r.resets()).toEqual([ErrorCode.STREAM_CLOSED]);
    expect(r.closed).toBe(false);
  });

  it("ends the connection with STREAM_CLOSED on DATA after both sides ended the stream", () => {
    const r = role(headers(1));
    r.finish(1, ClosedHow.ENDED);
    r.onData(data(1, 0x1, "late"));
    expect(r.events.at(-1)).toStartWith(`connection error ${ErrorCode.STREAM_CLOSED}`);
  });

  it("answers DATA on a half-closed (remote) stream with a stream error STREAM_CLOSED", () => {
    const r = role(headers(1), data(1, 0x1, "late"));
    expect(r.events).toEqual(["open 1", `stream error 1 ${ErrorCode.STREAM_CLOSED}`]);
  });

  it("ends the connection with PROTOCOL_ERROR on HEADERS for an id lower than one opened, or an idle stream's DATA", () => {
    expect(role(headers(5), headers(3)).events.at(-1)).toStartWith(`connection error ${ErrorCode.PROTOCOL_ERROR}`);
    expect(role(data(1, 0x1, "x")).events.at(-1)).toStartWith(`connection error ${ErrorCode.PROTOCOL_ERROR}`);
  });

  it("resets a stream whose PRIORITY frame is not 5 bytes (FRAME_SIZE_ERROR), and a PING of other than 8 bytes ends the connection (FRAME_SIZE_ERROR)", () => {
    const r = role(headers(1, 0x4), frame(2, 0, 1, Buffer.alloc(4)));
    expect(r.events).toEqual(["open 1", `stream error 1 ${ErrorCode.FRAME_SIZE_ERROR}`]);
    expect(role(frame(6, 0, 0, Buffer.alloc(6))).events.at(-1)).toStartWith(`connection error ${ErrorCode.FRAME_SIZE_ERROR}`);
  });
});

describe("closed-stream memory", () => {
  it("remembers how recent streams closed, forgets old ones as reset locally, and tells skipped ids apart", () => {
    const closed = new ClosedStreams();
    closed.add(1, ClosedHow.ENDED, 65_535);
    closed.add(5, ClosedHow.RESET_BY_PEER, 65_535);
    expect(closed.how(1)).toBe(ClosedHow.ENDED);
    expect(closed.how(5)).toBe(ClosedHow.RESET_BY_PEER);
    expect(closed.how(3)).toBe(ClosedHow.NEVER_OPENED);
    for (let id = 7; id < 7 + 2 * 300; id += 2) closed.add(id, ClosedHow.ENDED, 65_535);
    expect(closed.how(1)).toBe(ClosedHow.FORGOTTEN);
    expect(closed.how(3)).toBe(ClosedHow.FORGOTTEN);
    expect(closed.how(7 + 2 * 299)).toBe(ClosedHow.ENDED);
  });

  it("turns a stream this side reset into one the peer reset too, and keeps its window for late WINDOW_UPDATEs", () => {
    const closed = new ClosedStreams();
    closed.add(1, ClosedHow.RESET_LOCALLY, 0x7fffffff - 10);
    closed.add(3, ClosedHow.ENDED, 100);
    closed.peerResetToo(1);
    closed.peerResetToo(3); // ended by both: a later RST_STREAM changes nothing
    expect(closed.how(1)).toBe(ClosedHow.RESET_BY_PEER);
    expect(closed.how(3)).toBe(ClosedHow.ENDED);
    expect(closed.overflows(1, 10)).toBe(false);
    expect(closed.overflows(1, 1)).toBe(true);
    expect(closed.overflows(3, 0x7fffffff - 100)).toBe(false);
    expect(closed.overflows(9, 0x7fffffff)).toBe(false); // never seen: nothing to overflow
  });
});
