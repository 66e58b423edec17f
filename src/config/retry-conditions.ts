import type { Value } from "@bufbuild/protobuf/wkt";

/** The failures a route's `retry.on` may list. */
export const retryConditions = ["connect-failure", "refused-stream", "reset", "502", "503", "504"] as const;
export type RetryCondition = (typeof retryConditions)[number];

/** An `on` entry as its name: YAML reads `503` as a number. Undefined for any other kind of value. */
export function conditionName(value: Value): string | undefined {
  const kind = value.kind;
  if (kind.case === "stringValue") return kind.value;
  if (kind.case === "numberValue") return String(kind.value);
  return undefined;
}

export function isRetryCondition(name: string | undefined): name is RetryCondition {
  return (retryConditions as readonly (string | undefined)[]).includes(name);
}
