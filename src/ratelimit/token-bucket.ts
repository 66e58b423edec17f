/** A bucket's tokens as of `at` (performance.now() ms); it refills lazily, when next taken from. */
export class TokenBucket {
  constructor(
    public tokens: number,
    public at: number,
  ) {}
}

const maxWaitSeconds = 1e9;

/** Sweeps of idle full buckets run at most this often, when a new key arrives. */
const sweepEveryMs = 1000;

/** One limit's arithmetic: a refill rate and a capacity. */
export class BucketLimit {
  readonly perMs: number;

  constructor(
    readonly requestsPerSecond: number,
    readonly burst: number,
  ) {
    this.perMs = requestsPerSecond / 1000;
  }

  full(now: number): TokenBucket {
    return new TokenBucket(this.burst, now);
  }

  /** Takes a token: 0 when there was one, else the whole seconds (at least 1) until there will be. */
  take(bucket: TokenBucket, now: number): number {
    let tokens = bucket.tokens + (now - bucket.at) * this.perMs;
    if (tokens > this.burst) tokens = this.burst;
    bucket.at = now;
    if (tokens >= 1) {
      bucket.tokens = tokens - 1;
      return 0;
    }
    bucket.tokens = tokens;
    const seconds = Math.ceil((1 - tokens) / this.requestsPerSecond);
    // Retry-After is digits only: a rate near 0 must not print as 1e+300.
    return seconds > 1 ? Math.min(seconds, maxWaitSeconds) : 1;
  }

  /** The bucket has refilled: forgetting it changes nothing, since a new one starts full. */
  isFull(bucket: TokenBucket, now: number): boolean {
    return bucket.tokens + (now - bucket.at) * this.perMs >= this.burst;
  }
}

/**
 * Buckets by caller (an address, an identity), in bounded memory. Buckets that have refilled
 * are dropped by a sweep when new keys arrive (at most once a second, O(keys)). When `maxKeys`
 * are held and none is full, callers not yet known share one overflow bucket of the same limit
 * rather than evict someone else's: a flood of new addresses cannot grow the table, nor hand a
 * limited caller a fresh bucket by pushing its own out.
 */
export class KeyedBuckets {
  private readonly buckets = new Map<string, TokenBucket>();
  private overflow: TokenBucket | undefined;
  private sweptAt = -Infinity;

  constructor(
    readonly limit: BucketLimit,
    readonly maxKeys: number,
  ) {}

  /** As BucketLimit.take, from `key`'s bucket. */
  take(key: string, now: number): number {
    const bucket = this.buckets.get(key);
    if (bucket !== undefined) return this.limit.take(bucket, now);
    if (now - this.sweptAt >= sweepEveryMs) this.sweep(now);
    if (this.buckets.size >= this.maxKeys) return this.limit.take((this.overflow ??= this.limit.full(now)), now);
    const fresh = this.limit.full(now);
    this.buckets.set(key, fresh);
    return this.limit.take(fresh, now);
  }

  /** Buckets held now (tests, and a view of memory use). */
  get size(): number {
    return this.buckets.size;
  }

  private sweep(now: number): void {
    this.sweptAt = now;
    for (const [key, bucket] of this.buckets) if (this.limit.isFull(bucket, now)) this.buckets.delete(key);
  }
}
