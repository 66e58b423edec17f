import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { CallerRefused } from "../auth/identity.js";
import { isLoopback } from "../config/validate-exposure.js";
import { asKedgeError, forbidden } from "../errors.js";
import type { AuditLog, DecisionSubject } from "../observe/audit-log.js";
import type { Runtime } from "../runtime.js";

type Request = IncomingMessage | Http2ServerRequest;
type Response = ServerResponse | Http2ServerResponse;
type Handler = (req: Request, res: Response) => void;

function headerOf(req: Request, name: string): string | undefined {
  const v = req.headers[name];
  return typeof v === "string" ? v : undefined;
}

/**
 * Without a token authenticator, /debug/* and the AdminService (the config, backends, routes) are
 * served only where nobody but this host can ask, or where the config allows it in words.
 */
export function debugServedWithoutToken(runtime: Runtime, adminHost: string): boolean {
  return isLoopback(adminHost) || !!runtime.config.auth?.allowUnauthenticated;
}

function refusedOffLoopback(adminHost: string) {
  return forbidden(
    `The admin port binds ${adminHost} and no token authenticator is configured: /debug/* and the AdminService are served only on a loopback address. ` +
      "Configure auth.oidc or auth.bearer_token, bind a loopback address, or set auth.allow_unauthenticated.",
  );
}

/**
 * The admin port's access rules. /_healthz, /_version and /metrics stay open for probes and
 * scrapers unless asked (protect_healthz, protect_metrics; auth.admin.enabled guards /_version, as
 * kedge Go did), so guarding the port does not take a healthy pod out of rotation. Everything
 * else (/debug/*, the AdminService) shows the config and the backends: with a token authenticator
 * it needs a token, without one it is refused off loopback. Admin callers talk to kedge itself,
 * so an `Authorization` header is accepted as well as `Proxy-Authorization`.
 */
export function guardAdmin(runtime: () => Runtime, adminHost: string, next: Handler, audit?: AuditLog): Handler {
  return (req, res) => {
    const rt = runtime();
    const admin = rt.access.admin;
    const path = (req.url ?? "/").split("?")[0];
    const subject = audit?.enabled ? adminSubject(req, path) : undefined;
    const allow = (reason: string) => {
      if (subject && audit!.sampleAllow()) audit!.decision(subject, "allow", reason, undefined, undefined, undefined);
      next(req, res);
    };
    const deny = (e: unknown) => {
      const err = asKedgeError(e);
      if (subject) audit!.decision(subject, "deny", err.type, err.message, err instanceof CallerRefused ? err.identity : undefined, undefined);
      const body = `${err.message}\n`;
      (res as ServerResponse).writeHead(err.status, {
        "content-type": "text/plain; charset=utf-8",
        "x-kedge-error": err.message,
        "x-kedge-error-type": err.type,
        ...(err.status === 401 ? { "www-authenticate": 'Bearer realm="kedge admin"' } : {}),
      });
      res.end(body);
    };
    const probe = path === "/_healthz" || path === "/_version" || path === "/metrics";
    if (probe && (!admin || (path === "/_healthz" && !admin.protectHealthz) || (path === "/metrics" && !admin.protectMetrics))) return next(req, res);
    if (!probe && !rt.access.requiresToken) {
      if (debugServedWithoutToken(rt, adminHost)) return allow("open");
      return deny(refusedOffLoopback(adminHost));
    }
    let decision: Promise<unknown> | undefined;
    try {
      // The admin port is plaintext: no client certificates.
      decision = rt.access.check(rt.access.adminPolicy, headerOf(req, "proxy-authorization") ?? headerOf(req, "authorization"), undefined);
    } catch (e) {
      return deny(e);
    }
    if (decision) decision.then(() => allow("authorized"), deny);
    else allow("authorized");
  };
}

/** An admin request as its audit line names it: route and backend "admin". */
function adminSubject(req: Request, path: string): DecisionSubject {
  return {
    requestId: undefined,
    address: req.socket?.remoteAddress ?? "",
    protocol: req.httpVersion === "2.0" ? "h2" : "http/1.1",
    method: req.method,
    authority: headerOf(req, "host") ?? headerOf(req, ":authority"),
    path,
    route: "admin",
    backend: "admin",
  };
}
