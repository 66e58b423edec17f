import { describe, expect, it } from "bun:test";
import { HeldRanges } from "../src/proxy/held-ranges.ts";
import type { ClientStream } from "../src/proxy/client-stream.ts";

// The backend's body bytes a gRPC relay holds until its next flush, written to a client stream
// that records what it is given.

function recordingClient(acceptWrites = true) {
  // What the stream was given: the array, and the range of it to send (all of it unless one is named).
  const calls: { op: "write" | "end"; bytes: Uint8Array | undefined; source: Uint8Array | undefined }[] = [];
  const client = {
    write(chunk: Uint8Array, from = 0, to = chunk.length) {
      calls.push({ op: "write", bytes: chunk.subarray(from, to), source: chunk });
      return acceptWrites;
    },
    end(chunk?: Uint8Array, from = 0, to = chunk?.length ?? 0) {
      calls.push({ op: "end", bytes: chunk?.subarray(from, to), source: chunk });
    },
  } as unknown as ClientStream;
  return { client, calls };
}

const text = (b: Uint8Array | undefined) => (b === undefined ? undefined : Buffer.from(b).toString("latin1"));

describe("HeldRanges", () => {
  it("writes one held range as a range of its read, with no view or copy, with the end when ending", () => {
    const read = Buffer.from("xxhello worldyy");
    const held = new HeldRanges();
    held.add(read, 2, 13);
    expect(held.count).toBe(1);
    const { client, calls } = recordingClient();
    expect(held.writeTo(client, true)).toBe(true);
    expect(calls).toHaveLength(1);
    expect(calls[0].op).toBe("end");
    expect(text(calls[0].bytes)).toBe("hello world");
    expect(calls[0].source).toBe(read); // the read itself, not a view or a copy
    expect(held.count).toBe(0);
  });

  it("joins ranges of several reads, short and long, in order into one write", () => {
    const long = Buffer.alloc(100, "L");
    const held = new HeldRanges();
    held.add(Buffer.from("..ab.."), 2, 4);
    held.add(long, 0, 100);
    held.add(Buffer.from("cd"), 0, 2);
    expect(held.count).toBe(3);
    const { client, calls } = recordingClient();
    expect(held.writeTo(client, false)).toBe(true);
    expect(calls.map((c) => c.op)).toEqual(["write"]);
    expect(text(calls[0].bytes)).toBe(`ab${"L".repeat(100)}cd`);
  });

  it("forgets what it wrote: the next flush writes only what was added since", () => {
    const held = new HeldRanges();
    held.add(Buffer.from("one"), 0, 3);
    held.add(Buffer.from("two"), 0, 3);
    held.writeTo(recordingClient().client, false);
    const three = Buffer.from("three");
    held.add(three, 0, 5);
    expect(held.count).toBe(1);
    const { client, calls } = recordingClient();
    held.writeTo(client, false);
    expect(calls.map((c) => text(c.bytes))).toEqual(["three"]);
    expect(calls[0].source).toBe(three); // one range again: the read itself, not a join
  });

  it("writes ranges above the coalescing limit one by one, and says when the client asks to wait", () => {
    const big = Buffer.alloc(40 * 1024, "B");
    const held = new HeldRanges();
    held.add(big, 0, big.length);
    held.add(big, 0, big.length);
    const { client, calls } = recordingClient(false);
    expect(held.writeTo(client, false)).toBe(false);
    expect(calls.map((c) => [c.op, c.bytes!.length])).toEqual([
      ["write", big.length],
      ["write", big.length],
    ]);
    expect(held.count).toBe(0);
  });

  it("ends an answer with nothing held with an empty end", () => {
    const { client, calls } = recordingClient();
    new HeldRanges().writeTo(client, true);
    expect(calls).toEqual([{ op: "end", bytes: undefined, source: undefined }]);
  });
});
