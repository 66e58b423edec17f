import { describe, expect, it } from "bun:test";
import { Batch } from "../src/net/batch.ts";

// What connections and calls gather during a turn and handle together (relays to flush, streams
// closed, bodies gathered): in order, each item once, and nothing lost or shared between drains.

describe("Batch", () => {
  it("hands out what was added, in order, once; add tells the first of each batch", () => {
    const b = new Batch<string>();
    expect([b.add("a"), b.add("b"), b.add("c")]).toEqual([true, false, false]);
    expect(b.size).toBe(3);
    const seen: string[] = [];
    b.drain((s) => seen.push(s));
    expect(seen).toEqual(["a", "b", "c"]);
    expect(b.size).toBe(0);
    b.drain((s) => seen.push(s));
    expect(seen).toEqual(["a", "b", "c"]);
    expect(b.add("d")).toBe(true);
  });

  it("keeps an item added while draining for the next drain, over many drains", () => {
    const b = new Batch<number>();
    const seen: number[][] = [];
    b.add(0);
    for (let round = 0; round < 4; round++) {
      const now: number[] = [];
      b.drain((n) => {
        now.push(n);
        if (n === round) expect(b.add(n + 1)).toBe(true); // the first of the next batch
      });
      seen.push(now);
    }
    expect(seen).toEqual([[0], [1], [2], [3]]);
    expect(b.size).toBe(1);
  });

  it("stays whole when a handler throws: the next drains see only what was added after", () => {
    const b = new Batch<string>();
    b.add("boom");
    b.add("dropped with the failed drain");
    expect(() =>
      b.drain((s) => {
        if (s === "boom") throw new Error("boom");
      }),
    ).toThrow("boom");
    b.add("x");
    b.add("y");
    const first: string[] = [];
    b.drain((s) => {
      first.push(s);
      if (s === "x") b.add("z");
    });
    const second: string[] = [];
    b.drain((s) => second.push(s));
    expect([first, second]).toEqual([["x", "y"], ["z"]]);
  });
});
