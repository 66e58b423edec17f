import * as v from "valibot";

/** A `rate_limit` (the server's or a route's), for their valibot schemas. */
export const rateLimit = v.optional(
  v.looseObject({
    requestsPerSecond: v.pipe(
      v.any(),
      v.check((rps: number) => Number.isFinite(rps) && rps > 0, (issue) => `must be a number greater than 0, got ${issue.input}`),
    ),
  }),
);
