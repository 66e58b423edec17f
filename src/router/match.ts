/** Request facts the route tables match on; built once per request by the ingress. */
export interface RequestFacts {
  /** Lower-case host without port or IPv6 brackets. */
  host: string;
  port: number;
  /** Path without the query string. */
  path: string;
  /** The request line carried an absolute URI (sent to kedge as an HTTP_PROXY). */
  forwardProxy: boolean;
  /** Header values by lower-case name, as node:http and node:http2 give them. */
  headers: Record<string, string | string[] | undefined>;
}

/** "*.suffix" matches any name ending in ".suffix"; anything else matches exactly (lower case). */
export function compileDnsNameMatcher(pattern: string): (host: string) => boolean {
  const lower = pattern.toLowerCase();
  if (lower.startsWith("*.")) {
    const suffix = lower.slice(1);
    return (host) => host.length > suffix.length && host.endsWith(suffix);
  }
  return (host) => host === lower;
}

/** Every key must be present with exactly its value; for repeated headers, any one value. */
export function compileHeaderMatcher(matcher: Record<string, string>): ((headers: RequestFacts["headers"]) => boolean) | undefined {
  const entries = Object.entries(matcher).map(([k, v]) => [k.toLowerCase(), v] as const);
  if (entries.length === 0) return undefined;
  return (headers) => {
    for (const [key, want] of entries) {
      const got = headers[key];
      if (got === undefined) return false;
      if (typeof got === "string" ? got !== want : !got.includes(want)) return false;
    }
    return true;
  };
}
