import { describe, expect, it } from "bun:test";
import { Flag, FrameBuffer, FrameType } from "../src/h2/frames.ts";
import { writtenFrames } from "./helpers/h2-wire.ts";
import { addField, currentBlockBytes, currentBlockLength, HpackDecoder, startBlock } from "../src/h2/hpack.ts";

// Frames as FrameBuffer lays them out, read back from its bytes.

interface Frame {
  length: number;
  type: number;
  flags: number;
  id: number;
  payload: Buffer;
}

function frames(bytes: Uint8Array): Frame[] {
  const b = Buffer.from(bytes);
  const out: Frame[] = [];
  for (let at = 0; at < b.length; ) {
    const length = b.readUIntBE(at, 3);
    out.push({ length, type: b[at + 3], flags: b[at + 4], id: b.readUInt32BE(at + 5), payload: b.subarray(at + 9, at + 9 + length) });
    at += 9 + length;
  }
  return out;
}

describe("FrameBuffer", () => {
  it("frames part of a larger array: only that range, with a 31-bit stream id", () => {
    const out = new FrameBuffer();
    out.frame(FrameType.DATA, Flag.END_STREAM, 0x7fff_fffe, Buffer.from("--payload--"), 2, 9);
    const [f] = frames(writtenFrames(out));
    expect(f).toMatchObject({ length: 7, type: FrameType.DATA, flags: Flag.END_STREAM, id: 0x7fff_fffe });
    expect(f.payload.toString()).toBe("payload");
  });

  it("sends the encoder's current block, in place, as HEADERS and CONTINUATIONs of at most maxFrame octets", () => {
    startBlock();
    addField(":status", "200");
    for (let i = 0; i < 20; i++) addField(`x-field-${i}`, "v".repeat(30));
    const length = currentBlockLength();
    const bytes = currentBlockBytes();
    expect(bytes.length).toBeGreaterThan(length); // the shared buffer: only its first `length` octets are the block
    const out = new FrameBuffer();
    out.headerBlock(3, Flag.END_STREAM, bytes, 200, length);
    const sent = frames(writtenFrames(out));
    expect(sent.map((f) => f.type)).toEqual([FrameType.HEADERS, ...Array(sent.length - 1).fill(FrameType.CONTINUATION)]);
    expect(sent.every((f) => f.length <= 200 && f.id === 3)).toBe(true);
    expect(sent[0].flags).toBe(Flag.END_STREAM);
    expect(sent.at(-1)!.flags & Flag.END_HEADERS).toBe(Flag.END_HEADERS);
    const block = Buffer.concat(sent.map((f) => f.payload));
    expect(block.length).toBe(length);
    const decoded = new HpackDecoder().decode(block);
    expect(decoded[":status"]).toBe("200");
    expect(decoded["x-field-19"]).toBe("v".repeat(30));
    expect(Object.keys(decoded)).toHaveLength(21);
  });

  it("sends a block that fits one frame as one HEADERS with END_HEADERS", () => {
    startBlock();
    addField(":status", "204");
    const out = new FrameBuffer();
    out.headerBlock(1, 0, currentBlockBytes(), 16_384, currentBlockLength());
    const sent = frames(writtenFrames(out));
    expect(sent).toHaveLength(1);
    expect(sent[0]).toMatchObject({ type: FrameType.HEADERS, flags: Flag.END_HEADERS, length: 1 });
    expect(new HpackDecoder().decode(sent[0].payload)[":status"]).toBe("204");
  });
});
