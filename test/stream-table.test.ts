import { describe, expect, it } from "bun:test";
import { StreamTable } from "../src/h2/stream-table.ts";

// The table against a Map as the model: the same answers under any order of opens and closes.

/** A small deterministic generator, so a failure names the seed that made it. */
function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

function check(table: StreamTable<string>, model: Map<number, string>, highest: number): void {
  expect(table.size).toBe(model.size);
  for (let id = 1; id <= highest + 2; id += 2) expect(table.get(id)).toBe(model.get(id));
  expect(table.values()).toEqual([...model.keys()].sort((a, b) => a - b).map((id) => model.get(id) as string));
}

describe("StreamTable", () => {
  it("answers as a Map does when streams close out of order, as they do on a busy connection", () => {
    for (const seed of [1, 2, 3, 4, 5]) {
      const next = random(seed);
      const table = new StreamTable<string>();
      const model = new Map<number, string>();
      let id = 1;
      for (let step = 0; step < 4000; step++) {
        const open = [...model.keys()];
        if (open.length < 150 && (open.length === 0 || next() < 0.55)) {
          table.set(id, `s${id}`);
          model.set(id, `s${id}`);
          id += 2;
        } else {
          const victim = open[Math.floor(next() * open.length)];
          expect(table.delete(victim)).toBe(true);
          model.delete(victim);
        }
        if (step % 97 === 0) check(table, model, id);
      }
      check(table, model, id);
    }
  });

  it("keeps ids that share a home slot apart and finds each after its neighbours close", () => {
    // Odd ids whose hash starts them at the same slot of the first 16, as a client could pick them.
    const slot = (id: number) => Math.imul(id, 0x9e3779b1) >>> 28;
    const same = [];
    for (let id = 1; same.length < 4; id += 2) if (slot(id) === slot(1)) same.push(id);
    const next = same.find((id) => id > 1) as number;
    let neighbour = 3;
    while (slot(neighbour) !== (slot(1) + 1) % 16) neighbour += 2;
    const table = new StreamTable<string>();
    for (const id of [same[0], same[1], same[2], neighbour, same[3]]) table.set(id, `s${id}`);
    expect(table.delete(next)).toBe(true);
    expect(table.get(same[2])).toBe(`s${same[2]}`);
    expect(table.get(neighbour)).toBe(`s${neighbour}`);
    expect(table.get(same[3])).toBe(`s${same[3]}`);
    expect(table.delete(same[0])).toBe(true);
    expect(table.get(same[3])).toBe(`s${same[3]}`);
    expect(table.get(same[0])).toBeUndefined();
    expect(table.delete(same[0])).toBe(false);
    expect(table.size).toBe(3);
  });

  it("replaces the stream under an id already held, without counting it twice", () => {
    const table = new StreamTable<string>();
    table.set(5, "a");
    table.set(5, "b");
    expect(table.size).toBe(1);
    expect(table.get(5)).toBe("b");
  });

  it("grows past its first size and keeps every stream", () => {
    const table = new StreamTable<number>();
    for (let id = 1; id < 2000; id += 2) table.set(id, id);
    expect(table.size).toBe(1000);
    for (let id = 1; id < 2000; id += 2) expect(table.get(id)).toBe(id);
    expect(table.values().length).toBe(1000);
  });
});
