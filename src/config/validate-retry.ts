import type { Config } from "../gen/kedge/config/v1/config_pb.js";
import type { RetryPolicy } from "../gen/kedge/config/v1/retry_pb.js";
import { durationMs } from "./duration.js";
import { conditionName, isRetryCondition, retryConditions } from "./retry-conditions.js";

function policyProblems(retry: RetryPolicy, path: string): string[] {
  const problems: string[] = [];
  if (retry.attempts !== undefined && (retry.attempts < 1 || retry.attempts > 10)) problems.push(`${path}.attempts: must be 1-10, got ${retry.attempts}`);
  retry.on.forEach((value, i) => {
    const name = conditionName(value);
    if (!isRetryCondition(name)) problems.push(`${path}.on[${i}]: must be one of ${retryConditions.join(", ")}, got ${name === undefined ? JSON.stringify(value.kind.case === "nullValue" ? null : value.kind.value) : JSON.stringify(name)}`);
  });
  if (retry.perTryTimeout && durationMs(retry.perTryTimeout, 0) <= 0) problems.push(`${path}.per_try_timeout: must be at least 1ms`);
  if (retry.budgetPercent !== undefined && retry.budgetPercent > 100) problems.push(`${path}.budget_percent: must be 0-100, got ${retry.budgetPercent}`);
  return problems;
}

/** The routes' retry policies' problems, each with its field path. */
export function validateRetries(config: Config): string[] {
  const problems: string[] = [];
  for (const kind of ["http", "grpc"] as const) {
    config[kind]?.routes.forEach((route, i) => {
      if (route.retry) problems.push(...policyProblems(route.retry, `${kind}.routes[${i}].retry`));
    });
  }
  return problems;
}
