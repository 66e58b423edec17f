/** A request's host and port. `host` is lower case, without brackets for IPv6 literals. */
export interface HostPort {
  host: string;
  port: number;
}

/**
 * Splits "host", "host:port", "[v6]" or "[v6]:port"; a missing port becomes `defaultPort`.
 * Returns undefined for a malformed authority (bad port, unbalanced brackets, empty host).
 */
export function parseHostPort(authority: string, defaultPort: number): HostPort | undefined {
  let host: string;
  let portText = "";
  if (authority.startsWith("[")) {
    const end = authority.indexOf("]");
    if (end < 0) return undefined;
    host = authority.slice(1, end);
    const rest = authority.slice(end + 1);
    if (rest !== "") {
      if (rest[0] !== ":") return undefined;
      portText = rest.slice(1);
    }
  } else {
    const colon = authority.lastIndexOf(":");
    if (colon >= 0 && authority.indexOf(":") !== colon) {
      host = authority; // a bare IPv6 literal
    } else if (colon >= 0) {
      host = authority.slice(0, colon);
      portText = authority.slice(colon + 1);
    } else {
      host = authority;
    }
  }
  if (host === "") return undefined;
  let port = defaultPort;
  if (portText !== "") {
    if (!/^\d{1,5}$/.test(portText)) return undefined;
    port = Number(portText);
    if (port > 65535) return undefined;
  }
  return { host: host.toLowerCase(), port };
}

/** "host:port" for dialing and logs; IPv6 literals get brackets back. */
export function formatHostPort(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}
