/** A kedge failover tier's URL, or the reason it is not one: "https://host[:port]" and nothing more. */
export function parseKedgeUrl(text: string): URL | string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return 'must be a URL, "https://host:port"';
  }
  if (url.protocol !== "https:") return 'must be "https://host:port": another kedge is reached on its TLS port';
  if (url.username || url.password) return "must not carry credentials: use proxy_auth_token_file";
  if ((url.pathname !== "/" && url.pathname !== "") || url.search || url.hash) return "must name only a host and port";
  return url;
}

/** The host a kedge URL names, without an IPv6 literal's brackets, and its port (its scheme's default when unset). */
export function kedgeHostPort(url: URL): { host: string; port: number } {
  return { host: url.hostname.replace(/^\[|\]$/g, ""), port: url.port ? Number(url.port) : url.protocol === "https:" ? 443 : 80 };
}
