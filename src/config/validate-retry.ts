import * as v from "valibot";
import type { Value } from "@bufbuild/protobuf/wkt";
import { durationMs } from "./duration.js";
import { conditionName, isRetryCondition, retryConditions } from "./retry-conditions.js";

/** An `on` entry as the user wrote it, for the message refusing it. */
function written(value: Value): string {
  const name = conditionName(value);
  return JSON.stringify(name ?? (value.kind.case === "nullValue" ? null : value.kind.value));
}

/** A route's `retry`, for the routes' valibot schemas. */
export const retryPolicy = v.optional(
  v.looseObject({
    attempts: v.optional(v.pipe(v.number(), v.check((n) => n >= 1 && n <= 10, (issue) => `must be 1-10, got ${issue.input}`))),
    on: v.array(
      v.pipe(
        v.any(),
        v.check((value: Value) => isRetryCondition(conditionName(value)), (issue) => `must be one of ${retryConditions.join(", ")}, got ${written(issue.input as Value)}`),
      ),
    ),
    perTryTimeout: v.optional(v.pipe(v.any(), v.check((d) => durationMs(d, 0) > 0, "must be at least 1ms"))),
    budgetPercent: v.optional(v.pipe(v.number(), v.check((n) => n <= 100, (issue) => `must be 0-100, got ${issue.input}`))),
  }),
);
