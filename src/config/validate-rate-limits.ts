import type { Config } from "../gen/kedge/config/v1/config_pb.js";
import type { RateLimit } from "../gen/kedge/config/v1/rate_limit_pb.js";

/** The server's and every route's rate_limit, each problem with its field path. */
export function validateRateLimits(config: Config): string[] {
  const problems: string[] = [];
  const check = (where: string, limit: RateLimit | undefined) => {
    if (!limit) return;
    const rps = limit.requestsPerSecond;
    if (!Number.isFinite(rps) || rps <= 0) problems.push(`${where}.rate_limit.requests_per_second: must be a number greater than 0, got ${rps}`);
  };
  check("server", config.server?.rateLimit);
  config.http?.routes.forEach((r, i) => check(`http.routes[${i}]`, r.rateLimit));
  config.grpc?.routes.forEach((r, i) => check(`grpc.routes[${i}]`, r.rateLimit));
  return problems;
}
