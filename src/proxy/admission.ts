import { CallerRefused, type Identity } from "../auth/identity.js";
import type { RoutePolicy } from "../auth/policy.js";
import { asKedgeError, rateLimited, type KedgeError } from "../errors.js";
import type { AuditLog, DecisionSubject } from "../observe/audit-log.js";
import type { Metrics } from "../observe/metrics.js";
import type { RateLimiter, RouteLimit } from "../ratelimit/rate-limits.js";
import type { Runtime } from "../runtime.js";

/**
 * The access decision of one request or call, then server.rate_limit and the route's own, with
 * the audit line of the outcome. AccessControl.check's contract: undefined when admitted at
 * once, else a promise of the verified identity; access control's refusals are thrown (or
 * rejected) as KedgeErrors, the rate limits' rejected. Only requests access control admitted
 * take tokens, so refused callers cannot drain a bucket that others share.
 */
export function admit(
  metrics: Metrics,
  runtime: Runtime,
  policy: RoutePolicy | undefined,
  proxyAuthorization: string | undefined,
  socket: object | null | undefined,
  routeLimit: RouteLimit,
  subject: DecisionSubject,
): Promise<unknown> | undefined {
  let ready: Promise<unknown> | undefined;
  try {
    ready = runtime.access.check(policy, proxyAuthorization, socket ?? undefined);
  } catch (e) {
    throw refused(metrics.audit, e, socket, subject);
  }
  if (ready === undefined) {
    try {
      admitted(metrics, runtime, policy, undefined, socket, routeLimit, subject);
    } catch (e) {
      // Refused after routing: as a rejection, so the request is recorded with its route and backend.
      return Promise.reject(e);
    }
    return undefined;
  }
  return ready.then(
    (identity) => {
      admitted(metrics, runtime, policy, identity as Identity, socket, routeLimit, subject);
      return identity;
    },
    (e: unknown) => {
      throw refused(metrics.audit, e, socket, subject);
    },
  );
}

/** Access control refused: the deny line, with the caller's identity when its token was verified. */
function refused(audit: AuditLog, e: unknown, socket: object | null | undefined, subject: DecisionSubject): KedgeError {
  const err = asKedgeError(e);
  if (audit.enabled) audit.decision(subject, "deny", err.type, err.message, err instanceof CallerRefused ? err.identity : undefined, socket);
  return err;
}

/** Access control admitted: the rate limits (server first), then the allow line. Throws rate-limited. */
function admitted(
  metrics: Metrics,
  runtime: Runtime,
  policy: RoutePolicy | undefined,
  identity: Identity | undefined,
  socket: object | null | undefined,
  routeLimit: RouteLimit,
  subject: DecisionSubject,
): void {
  const limits = runtime.rateLimits;
  if (limits.active) {
    const now = performance.now();
    if (limits.server) overLimit(metrics, limits.server, identity, socket, routeLimit, subject, now);
    if (routeLimit.limiter) overLimit(metrics, routeLimit.limiter, identity, socket, routeLimit, subject, now);
  }
  // An unrouted request is answered no-route next: no resource was granted, so no allow line.
  if (subject.route !== "none" && metrics.audit.sampleAllow()) {
    const reason = policy?.public ? "public" : policy || runtime.access.requiresToken ? "authorized" : "open";
    metrics.audit.decision(subject, "allow", reason, undefined, identity, socket);
  }
}

function overLimit(
  metrics: Metrics,
  limiter: RateLimiter,
  identity: Identity | undefined,
  socket: object | null | undefined,
  routeLimit: RouteLimit,
  subject: DecisionSubject,
  now: number,
): void {
  const wait = limiter.take(identity, socket, subject.address, routeLimit.id, now);
  if (wait === 0) return;
  metrics.rateLimited.inc([subject.backend, subject.route, limiter.scope]);
  const err = rateLimited(`Rate limit exceeded: ${limiter.description}. Retry in ${wait}s.`, wait);
  if (metrics.audit.enabled) metrics.audit.decision(subject, "deny", err.type, err.message, identity, socket);
  throw err;
}
