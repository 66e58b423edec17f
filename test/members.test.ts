import { describe, expect, it } from "bun:test";
import { Members } from "../src/net/members.ts";

class Conn {
  memberSlot = -1;
  constructor(readonly id: number) {}
}

/** A small deterministic generator (mulberry32): the same sequence on every run. */
function random(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const ids = (xs: Iterable<Conn>) => [...xs].map((c) => c.id).sort((a, b) => a - b);

describe("Members", () => {
  it("holds what a Set holds under random adds and deletes of the same objects", () => {
    const next = random(26);
    const pool = Array.from({ length: 300 }, (_, i) => new Conn(i));
    const members = new Members<Conn>();
    const model = new Set<Conn>();
    for (let step = 0; step < 20_000; step++) {
      const c = pool[Math.floor(next() * pool.length)];
      if (next() < 0.5) {
        members.add(c);
        model.add(c);
      } else {
        expect(members.delete(c)).toBe(model.delete(c));
      }
      if (step % 97 === 0) {
        expect(members.size).toBe(model.size);
        expect(ids(members.snapshot())).toEqual(ids(model));
        for (const p of pool) expect(members.has(p)).toBe(model.has(p));
      }
    }
    // Every slot a member knows is its own.
    members.snapshot().forEach((c, i) => expect(c.memberSlot).toBe(i));
  });

  it("adds a member once, and deletes only its own members", () => {
    const a = new Members<Conn>();
    const b = new Members<Conn>();
    const x = new Conn(1);
    const y = new Conn(2);
    a.add(x);
    a.add(x);
    expect(a.size).toBe(1);
    b.add(y);
    // y's slot (0) is x's slot in a: a must not take y for x.
    expect(a.has(y)).toBe(false);
    expect(a.delete(y)).toBe(false);
    expect(a.has(x)).toBe(true);
    expect(a.delete(x)).toBe(true);
    expect(a.delete(x)).toBe(false);
    expect(a.size).toBe(0);
    expect(b.has(y)).toBe(true);
  });

  it("gives a walk its own array: deletes and adds during it move nothing in it", () => {
    const members = new Members<Conn>();
    const conns = Array.from({ length: 5 }, (_, i) => new Conn(i));
    for (const c of conns) members.add(c);
    const seen: number[] = [];
    for (const c of members.snapshot()) {
      if (!members.has(c)) continue;
      seen.push(c.id);
      if (c.id === 0) {
        members.delete(conns[4]); // one not walked yet
        members.add(new Conn(9));
      }
      members.delete(c);
    }
    expect(seen).toEqual([0, 1, 2, 3]);
    expect(ids(members.snapshot())).toEqual([9]);
  });
});
