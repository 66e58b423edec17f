import type { RouteAuth } from "../gen/kedge/config/v1/auth_pb.js";
import { forbidden, unauthorized } from "../errors.js";
import type { Identity } from "./identity.js";

/** A route's own access rules, compiled once per config. */
export interface RoutePolicy {
  readonly public: boolean;
  readonly anyOf: readonly string[];
  readonly allOf: readonly string[];
  readonly subjects: ReadonlySet<string>;
  readonly sans: ReadonlySet<string>;
  /** The rules need a bearer token (permission rules). */
  readonly needsToken: boolean;
  /** The rules need a verified client certificate (subject or SAN rules). */
  readonly needsCert: boolean;
}

/** Undefined when the route has no rules of its own: it inherits the global policy. */
export function compileRoutePolicy(auth: RouteAuth | undefined): RoutePolicy | undefined {
  if (!auth) return undefined;
  const policy = {
    public: auth.public,
    anyOf: [...auth.anyOfPermissions],
    allOf: [...auth.allOfPermissions],
    subjects: new Set(auth.allowedClientSubjects),
    sans: new Set(auth.allowedClientSans),
    needsToken: auth.anyOfPermissions.length > 0 || auth.allOfPermissions.length > 0,
    needsCert: auth.allowedClientSubjects.length > 0 || auth.allowedClientSans.length > 0,
  };
  return policy.public || policy.needsToken || policy.needsCert ? policy : undefined;
}

/**
 * Checks an authenticated identity against a route's rules; every kind of rule present must
 * hold. Throws 401 when the credential a rule needs is missing, 403 when it lacks what the rule
 * asks, naming what is missing.
 */
export function authorizeRoute(identity: Identity, policy: RoutePolicy): void {
  if (policy.needsCert) {
    const cert = identity.cert;
    if (!cert) throw unauthorized("Unauthenticated. This route needs a client certificate.");
    const allowed =
      policy.subjects.has(cert.subject) || policy.subjects.has(cert.commonName) || cert.sans.some((s) => policy.sans.has(s));
    if (!allowed) throw forbidden(`Permission denied. Client certificate "${cert.subject}" is not allowed on this route.`);
  }
  if (policy.needsToken) {
    if (!identity.token) throw unauthorized("Unauthenticated. No Proxy-Authorization header.");
    requirePermissions(identity.token.permissions, policy.anyOf, policy.allOf);
  }
}

export function requirePermissions(held: ReadonlySet<string>, anyOf: readonly string[], allOf: readonly string[]): void {
  const missing = allOf.filter((p) => !held.has(p));
  if (missing.length > 0) throw forbidden(`Permission denied. Missing permission ${missing.map((p) => `"${p}"`).join(", ")}.`);
  if (anyOf.length > 0 && !anyOf.some((p) => held.has(p))) {
    throw forbidden(`Permission denied. Needs one of the permissions ${anyOf.map((p) => `"${p}"`).join(", ")}.`);
  }
}
