import { expect, it } from "bun:test";
import { Counter, Histogram } from "../src/observe/prometheus.ts";
import { mulberry32 } from "./helpers/rng.ts";

it("counts every label set into its own series, however the sets alternate", () => {
  const counter = new Counter("t_requests_total", "test", ["backend", "code", "route"]);
  const histogram = new Histogram("t_seconds", "test", ["backend", "code", "route"], [0.1, 1]);
  const rnd = mulberry32(5);
  const sets = [["a", "200", "0"], ["a", "500", "0"], ["b", "200", "0"], ["a", "200", "1"], ["b", "200", "1"]];
  const expected = new Map<string, number>();
  for (let i = 0; i < 2000; i++) {
    // Runs of the same set, as under load, and switches between sets that share some values.
    const set = sets[Math.floor(rnd() * sets.length)];
    for (let n = Math.floor(rnd() * 4); n >= 0; n--) {
      counter.inc([...set]);
      histogram.observe([...set], 0.5);
      expected.set(set.join(","), (expected.get(set.join(",")) ?? 0) + 1);
    }
  }
  for (const [backend, code, route] of sets) {
    const want = expected.get([backend, code, route].join(",")) ?? 0;
    expect(counter.get({ backend, code, route })).toBe(want);
    expect(histogram.render()).toContain(`t_seconds_count{backend="${backend}",code="${code}",route="${route}"} ${want}\n`);
  }
});
