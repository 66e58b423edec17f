import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { asKedgeError } from "../errors.js";
import type { Runtime } from "../runtime.js";

type Request = IncomingMessage | Http2ServerRequest;
type Response = ServerResponse | Http2ServerResponse;
type Handler = (req: Request, res: Response) => void;

function headerOf(req: Request, name: string): string | undefined {
  const v = req.headers[name];
  return typeof v === "string" ? v : undefined;
}

/**
 * Puts the admin port behind the proxy's authentication when auth.admin.enabled says so. Probes
 * (/_healthz) and scrapers (/metrics) stay open unless asked, so turning this on does not take a
 * healthy pod out of rotation (kedge Go hid them too). Admin callers talk to kedge itself, so an
 * `Authorization` header is accepted as well as `Proxy-Authorization`.
 */
export function guardAdmin(runtime: () => Runtime, next: Handler): Handler {
  return (req, res) => {
    const rt = runtime();
    const admin = rt.access.admin;
    if (!admin) return next(req, res);
    const path = (req.url ?? "/").split("?")[0];
    if ((path === "/_healthz" && !admin.protectHealthz) || (path === "/metrics" && !admin.protectMetrics)) return next(req, res);
    const deny = (e: unknown) => {
      const err = asKedgeError(e);
      const body = `${err.message}\n`;
      (res as ServerResponse).writeHead(err.status, {
        "content-type": "text/plain; charset=utf-8",
        "x-kedge-error": err.message,
        "x-kedge-error-type": err.type,
        ...(err.status === 401 ? { "www-authenticate": 'Bearer realm="kedge admin"' } : {}),
      });
      res.end(body);
    };
    let decision: Promise<unknown> | undefined;
    try {
      // The admin port is plaintext: no client certificates.
      decision = rt.access.check(rt.access.adminPolicy, headerOf(req, "proxy-authorization") ?? headerOf(req, "authorization"), undefined);
    } catch (e) {
      return deny(e);
    }
    if (decision) decision.then(() => next(req, res), deny);
    else next(req, res);
  };
}
