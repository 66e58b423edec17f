import { describe, expect, it } from "bun:test";
import { BucketLimit, KeyedBuckets } from "../src/ratelimit/token-bucket.ts";

// The buckets' arithmetic and their memory bound, on a clock the test sets (ms).

describe("token bucket", () => {
  it("admits a burst, then refills at the rate", () => {
    const limit = new BucketLimit(2, 3);
    const bucket = limit.full(0);
    expect([limit.take(bucket, 0), limit.take(bucket, 0), limit.take(bucket, 0)]).toEqual([0, 0, 0]);
    expect(limit.take(bucket, 0)).toBe(1);
    expect(limit.take(bucket, 499)).toBe(1);
    expect(limit.take(bucket, 600)).toBe(0);
    // Never more than the burst, however long it was idle.
    const later = 1_000_000;
    expect([limit.take(bucket, later), limit.take(bucket, later), limit.take(bucket, later), limit.take(bucket, later)]).toEqual([0, 0, 0, 1]);
  });

  it("tells whole seconds to wait, at least 1", () => {
    const slow = new BucketLimit(0.001, 1);
    const bucket = slow.full(0);
    expect(slow.take(bucket, 0)).toBe(0);
    expect(slow.take(bucket, 0)).toBe(1000);
    const wait = slow.take(bucket, 400_000);
    expect(wait).toBeGreaterThanOrEqual(600);
    expect(wait).toBeLessThanOrEqual(601);
    const fast = new BucketLimit(100, 1);
    const b = fast.full(0);
    fast.take(b, 0);
    expect(fast.take(b, 0)).toBe(1);
  });
});

describe("buckets by caller", () => {
  it("holds at most maxKeys buckets: new callers past it share one overflow bucket, known ones keep theirs", () => {
    const keyed = new KeyedBuckets(new BucketLimit(0.001, 1), 4);
    for (const key of ["a", "b", "c", "d"]) expect(keyed.take(key, 0)).toBe(0);
    expect(keyed.take("a", 1)).toBeGreaterThan(0);
    // A flood of new addresses: one token between them all, and the table does not grow.
    const floods = Array.from({ length: 1000 }, (_, i) => keyed.take(`10.0.${i >> 8}.${i & 255}`, 2));
    expect(floods.filter((wait) => wait === 0)).toHaveLength(1);
    expect(keyed.size).toBe(4);
    // Nobody was pushed out to start afresh.
    expect(keyed.take("a", 3)).toBeGreaterThan(0);
  });

  it("drops buckets that have refilled when new callers arrive", () => {
    const keyed = new KeyedBuckets(new BucketLimit(1, 2), 100);
    for (let i = 0; i < 50; i++) {
      keyed.take(`caller-${i}`, 0);
      keyed.take(`caller-${i}`, 0);
    }
    expect(keyed.size).toBe(50);
    // One token short of full after 1 s: kept.
    keyed.take("late", 1000);
    expect(keyed.size).toBe(51);
    // Full after 2 s: a new caller's arrival sweeps them out; only the active ones stay.
    keyed.take("active", 2000);
    keyed.take("newest", 2500);
    expect(keyed.size).toBe(2);
    expect(keyed.take("active", 2500)).toBe(0);
  });
});
