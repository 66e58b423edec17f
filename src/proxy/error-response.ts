import type { OutgoingHttpHeaders } from "node:http";
import type { KedgeError } from "../errors.js";
import type { IngressResponse } from "./ingress.js";

/** Writes the error contract: status, x-kedge-error(-type) (winch: x-winch-…) headers and a short text body. */
export function sendError(res: IngressResponse, err: KedgeError, requestId: string, prefix: "x-kedge" | "x-winch" = "x-kedge"): void {
  if (res.headersSent) {
    res.abort();
    return;
  }
  const body = Buffer.from(`${err.message}\n`);
  const headers: OutgoingHttpHeaders = {
    "content-type": "text/plain; charset=utf-8",
    "content-length": body.length,
    [`${prefix}-error`]: err.message.replace(/[\r\n]/g, " "),
    [`${prefix}-error-type`]: err.type,
    "x-kedge-request-id": requestId,
  };
  if (err.retryAfter !== undefined) headers["retry-after"] = String(err.retryAfter);
  res.writeHead(err.status, headers);
  res.write(body);
  res.end();
}
