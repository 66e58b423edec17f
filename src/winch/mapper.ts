import { isIP } from "node:net";
import { Route_Protocol, type Route } from "../gen/kedge/winch/v1/winch_pb.js";
import { KedgeError } from "../errors.js";
import { expandTemplate, templateGroups } from "../router/expand.js";

export { expandTemplate };

export type Protocol = "http" | "grpc";

/** Where winch sends a request for a host, and which credentials it injects. */
export interface Mapping {
  /** The cluster's kedge, e.g. https://kedge.cluster-1.example.com:443. */
  readonly kedge: URL;
  readonly backendAuth: string;
  readonly proxyAuth: string;
  readonly routeIndex: number;
  /** The route's client_tls, ${group} filled in: presented to the kedge unless proxy_auth gives a certificate. */
  readonly clientTls?: ClientTlsFiles;
  /** What the route matched on, in the config's words: its direct.key or its regexp.exp. */
  readonly match: RouteMatch;
}

export type RouteMatch = { readonly key: string } | { readonly exp: string };

export interface ClientTlsFiles {
  readonly certFile: string;
  readonly keyFile: string;
}

export type MapResult = { kind: "mapped"; mapping: Mapping } | { kind: "ip-literal" } | { kind: "unknown" };

/**
 * RE2 → JavaScript. kedge Go's configs use Go's syntax: named groups `(?P<name>…)` become
 * `(?<name>…)`, leading inline flags `(?i)`/`(?s)`/`(?m)` become RegExp flags. RE2 syntax JS reads
 * differently is refused rather than silently changed in meaning: \C, \z, \A, \Q…\E, \x{…},
 * Unicode classes \pN, \p{Greek} and \P… (without the "u" flag JS reads "\p{L}" as the letters
 * "p{L}"), POSIX classes [[:alpha:]], "]" first in a class, and inline flags elsewhere.
 */
export function translateRe2(exp: string): RegExp {
  let flags = "";
  const leading = /^\(\?([ims]+)\)/.exec(exp);
  if (leading) flags = [...new Set(leading[1])].join("");
  const source = exp.slice(leading?.[0].length ?? 0);
  let out = "";
  let inClass = false;
  for (let i = 0; i < source.length; i++) {
    const c = source[i];
    if (c === "\\") {
      const next = source[i + 1] ?? "";
      if ((next !== "" && "CzAQpP".includes(next)) || (next === "x" && source[i + 2] === "{")) {
        throw new Error(`uses an RE2 escape JavaScript reads differently (\\${next})`);
      }
      out += c + next;
      i++;
    } else if (inClass) {
      if (c === "[" && /^\[:\^?[a-z]+:\]/.test(source.slice(i))) throw new Error("uses a POSIX class such as [[:alpha:]], which JavaScript lacks");
      if (c === "]") inClass = false;
      out += c;
    } else if (c === "[") {
      inClass = true;
      const negated = source[i + 1] === "^";
      // RE2 reads "]" right after "[" or "[^" as a literal; JavaScript reads an empty class there.
      if (source[i + (negated ? 2 : 1)] === "]") throw new Error('puts "]" first in a character class; write "\\]"');
      out += negated ? "[^" : "[";
      if (negated) i++;
    } else if (c === "(" && source[i + 1] === "?") {
      const named = /^\(\?P<([A-Za-z_][A-Za-z0-9_]*)>/.exec(source.slice(i));
      if (!named && /^\(\?[imsU-]+[:)]/.test(source.slice(i))) throw new Error("inline flags are only supported at the start of the expression");
      out += named ? `(?<${named[1]}>` : c;
      if (named) i += named[0].length - 1;
    } else {
      out += c;
    }
  }
  // No "u" flag: RE2 reads "[a-z0-9-_]" as a literal "-", which only non-Unicode JS accepts.
  return new RegExp(out, flags);
}

interface CompiledRoute {
  protocol: Route_Protocol;
  resolve(host: string, hostPort: string): Mapping | undefined;
}

/** An auth source name for this host: the name itself, or a template filled from the host's match. */
function authName(template: string, m: RegExpExecArray): string {
  if (!template.includes("$")) return template;
  // A name that fills to nothing stays the template, which names no source: the request fails
  // saying so instead of going out without credentials.
  return expandTemplate(template, m) || template;
}

/**
 * A file path for this host. The groups come from the requested host, so a value that would
 * step out of the intended directory, or leave the path's part empty, is refused.
 */
function filePath(template: string, groups: readonly string[], m: RegExpExecArray, routeIndex: number): string {
  for (const g of groups) {
    const value = /^[0-9]+$/.test(g) ? m[Number(g)] : m.groups?.[g];
    if (!value || value === "." || value === ".." || /[/\\\0]/.test(value)) {
      throw new KedgeError("auth-source", 502, `routes[${routeIndex}].client_tls: the host's ${g} ${JSON.stringify(value ?? "")} cannot be part of a file path`);
    }
  }
  return groups.length === 0 ? template : expandTemplate(template, m);
}

function compile(route: Route, index: number): CompiledRoute {
  const { protocol, backendAuth, proxyAuth } = route;
  const tls = route.clientTls?.certFile ? { certFile: route.clientTls.certFile, keyFile: route.clientTls.keyFile } : undefined;
  const t = route.type;
  if (t.case === "direct") {
    const key = t.value.key.toLowerCase();
    // Nothing in a direct route depends on the host: one mapping serves every request.
    const mapping: Mapping = { kedge: new URL(t.value.url), backendAuth, proxyAuth, routeIndex: index, clientTls: tls, match: { key: t.value.key } };
    return { protocol, resolve: (host, hostPort) => (key === host || key === hostPort ? mapping : undefined) };
  }
  if (t.case === "regexp") {
    const re = translateRe2(t.value.exp);
    const template = t.value.url;
    const certGroups = tls ? templateGroups(tls.certFile) : [];
    const keyGroups = tls ? templateGroups(tls.keyFile) : [];
    const match = { exp: t.value.exp };
    return {
      protocol,
      resolve: (host) => {
        re.lastIndex = 0;
        const m = re.exec(host);
        if (!m) return undefined;
        return {
          kedge: new URL(expandTemplate(template, m)),
          backendAuth: authName(backendAuth, m),
          proxyAuth: authName(proxyAuth, m),
          routeIndex: index,
          clientTls: tls && { certFile: filePath(tls.certFile, certGroups, m, index), keyFile: filePath(tls.keyFile, keyGroups, m, index) },
          match,
        };
      },
    };
  }
  throw new Error("route needs direct or regexp");
}

/** kedge Go's winch mapper: routes in order, the first whose protocol and host match wins. */
export class WinchMapper {
  private readonly routes: CompiledRoute[];

  constructor(routes: readonly Route[]) {
    this.routes = routes.map(compile);
  }

  map(host: string, port: number | undefined, protocol: Protocol): MapResult {
    const name = host.toLowerCase().replace(/^\[|\]$/g, "");
    // An IP names no cluster: refusing it keeps winch from becoming an open relay into one.
    if (isIP(name)) return { kind: "ip-literal" };
    const hostPort = port === undefined ? name : `${name}:${port}`;
    const wanted = protocol === "grpc" ? Route_Protocol.GRPC : Route_Protocol.HTTP;
    for (const route of this.routes) {
      if (route.protocol !== Route_Protocol.ANY && route.protocol !== wanted) continue;
      const mapping = route.resolve(name, hostPort);
      if (mapping) return { kind: "mapped", mapping };
    }
    return { kind: "unknown" };
  }
}
