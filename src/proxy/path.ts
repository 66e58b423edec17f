import { KedgeError } from "../errors.js";

const unreserved = /[A-Za-z0-9\-._~]/;

/**
 * The path kedge routes on and forwards, so a path rule cannot be bypassed by spelling: %XX of
 * unreserved characters decoded (%2e is "."), other escapes upper-cased, repeated slashes merged
 * and dot segments removed (RFC 3986 §5.2.4). "/public/%2e%2e/admin" and "//admin" both become
 * "/admin". Encoded slashes stay encoded (%2F): whether to allow them is the caller's decision.
 * An encoded NUL is refused: C backends and file servers end the path there.
 */
export function normalizePath(path: string): string {
  // Most paths need nothing: no escapes, no dot segments, no empty segments.
  if (path.indexOf("%") < 0 && path.indexOf("/.") < 0 && path.indexOf("//") < 0) return path;
  let decoded = "";
  for (let i = 0; i < path.length; i++) {
    const c = path[i];
    if (c !== "%") {
      decoded += c;
      continue;
    }
    const hex = path.slice(i + 1, i + 3);
    if (!/^[0-9A-Fa-f]{2}$/.test(hex)) throw new KedgeError("bad-request", 400, "malformed percent-encoding in the path");
    const code = parseInt(hex, 16);
    if (code === 0) throw new KedgeError("bad-request", 400, "NUL (%00) in the path");
    const ch = String.fromCharCode(code);
    decoded += unreserved.test(ch) ? ch : `%${hex.toUpperCase()}`;
    i += 2;
  }
  const out: string[] = [];
  const segments = decoded.split("/");
  for (let i = 1; i < segments.length; i++) {
    const seg = segments[i];
    const last = i === segments.length - 1;
    if (seg === "..") {
      out.pop();
      if (last) out.push("");
    } else if (seg === "." || (seg === "" && !last)) {
      if (last) out.push("");
    } else out.push(seg);
  }
  return `/${out.join("/")}`;
}

/**
 * Why a path is refused before routing, or undefined. %2F, %5C and a bare "\\": a backend that
 * decodes them, or takes a backslash for a separator, sees path segments kedge did not route on
 * (server.allow_encoded_slashes lets them through). An encoded NUL is normalizePath's refusal.
 */
export function pathSpellingProblem(path: string, allowEncodedSlashes: boolean): string | undefined {
  if (!allowEncodedSlashes && path.indexOf("\\") >= 0) return "backslash in the path";
  if (path.indexOf("%") < 0) return undefined;
  if (!allowEncodedSlashes && /%2F|%5C/i.test(path)) return "encoded slash (%2F or %5C) in the path";
  return undefined;
}
