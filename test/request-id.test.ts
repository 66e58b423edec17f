import { expect, test } from "bun:test";
import { newRequestId } from "../src/proxy/request.ts";

test("request ids count up by one in a fixed-width hex suffix, across the table's 4096-request steps", () => {
  const first = newRequestId();
  const prefix = first.slice(0, 17);
  let previous = Number.parseInt(first.slice(17), 16);
  const seen = new Set([first]);
  for (let i = 0; i < 10_000; i++) {
    const id = newRequestId();
    expect(id).toHaveLength(30);
    expect(id.slice(0, 17)).toBe(prefix);
    expect(id.slice(17)).toMatch(/^1[0-9a-f]{12}$/);
    const n = Number.parseInt(id.slice(17), 16);
    expect(n).toBe(previous + 1);
    previous = n;
    seen.add(id);
  }
  expect(seen.size).toBe(10_001);
});
