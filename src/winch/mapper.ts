import { isIP } from "node:net";
import { Route_Protocol, type Route } from "../gen/kedge/winch/v1/winch_pb.js";

export type Protocol = "http" | "grpc";

/** Where winch sends a request for a host, and which credentials it injects. */
export interface Mapping {
  /** The cluster's kedge, e.g. https://kedge.cluster-1.example.com:443. */
  readonly kedge: URL;
  readonly backendAuth: string;
  readonly proxyAuth: string;
  readonly routeIndex: number;
}

export type MapResult = { kind: "mapped"; mapping: Mapping } | { kind: "ip-literal" } | { kind: "unknown" };

/**
 * RE2 → JavaScript. kedge Go's configs use Go's syntax: named groups `(?P<name>…)` become
 * `(?<name>…)`, leading inline flags `(?i)`/`(?s)`/`(?m)` become RegExp flags. RE2 constructs JS
 * reads differently (\C, \z, inline flags elsewhere, possessive or Unicode class syntax \pN
 * without braces) are refused rather than silently changed in meaning.
 */
export function translateRe2(exp: string): RegExp {
  let source = exp;
  let flags = "";
  const leading = /^\(\?([ims]+)\)/.exec(source);
  if (leading) {
    flags = [...new Set(leading[1])].join("");
    source = source.slice(leading[0].length);
  }
  if (/\(\?[imsU-]+[:)]/.test(source)) throw new Error("inline flags are only supported at the start of the expression");
  if (/\\[Cz]|\\p[A-Za-z]/.test(source)) throw new Error("uses an RE2 escape JavaScript reads differently (\\C, \\z, or \\pX without braces)");
  source = source.replace(/\(\?P<([A-Za-z_][A-Za-z0-9_]*)>/g, "(?<$1>");
  // No "u" flag: RE2 reads "[a-z0-9-_]" as a literal "-", which only non-Unicode JS accepts.
  return new RegExp(source, flags);
}

/** Go's regexp Expand: ${name}, $name, ${1} and $1 from the match; $$ is a dollar. */
export function expandTemplate(template: string, match: RegExpExecArray): string {
  return template.replace(/\$(\$|\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+))/g, (_all, dollar: string, braced?: string, bare?: string) => {
    if (dollar === "$") return "$";
    const name = braced ?? bare ?? "";
    const value = /^\d+$/.test(name) ? match[Number(name)] : match.groups?.[name];
    return value ?? "";
  });
}

interface CompiledRoute {
  index: number;
  protocol: Route_Protocol;
  backendAuth: string;
  proxyAuth: string;
  resolve(host: string, hostPort: string): URL | undefined;
}

function compile(route: Route, index: number): CompiledRoute {
  const base = { index, protocol: route.protocol, backendAuth: route.backendAuth, proxyAuth: route.proxyAuth };
  const t = route.type;
  if (t.case === "direct") {
    const key = t.value.key.toLowerCase();
    const url = new URL(t.value.url);
    return { ...base, resolve: (host, hostPort) => (key === host || key === hostPort ? url : undefined) };
  }
  if (t.case === "regexp") {
    const re = translateRe2(t.value.exp);
    const template = t.value.url;
    return {
      ...base,
      resolve: (host) => {
        re.lastIndex = 0;
        const m = re.exec(host);
        return m ? new URL(expandTemplate(template, m)) : undefined;
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
      const kedge = route.resolve(name, hostPort);
      if (kedge) return { kind: "mapped", mapping: { kedge, backendAuth: route.backendAuth, proxyAuth: route.proxyAuth, routeIndex: route.index } };
    }
    return { kind: "unknown" };
  }
}
