/** One request of a fetch, the first or one a redirect made. */
export interface Hop {
  readonly url: URL;
  readonly method: string;
  readonly headers: Headers;
  /** Nothing, bytes (re-sendable on a 307/308) or a stream (sent once). */
  readonly body: undefined | Buffer | ReadableStream<Uint8Array>;
}

const redirectStatus = new Set([301, 302, 303, 307, 308]);
/** The most redirects fetch follows (Fetch §4.4 step 5). */
const maxRedirects = 20;
/** Headers that describe a body, dropped when a redirect turns the request into a body-less GET. */
const bodyHeaders = ["content-encoding", "content-language", "content-location", "content-type", "content-length"];
/** The caller's credentials stay with the origin they were given for. */
const credentialHeaders = ["authorization", "proxy-authorization", "cookie"];

/**
 * Fetch's HTTP-redirect fetch (§4.4) for redirect "follow" and "error": the next hop when
 * `response` is a redirect to follow, undefined when it is the answer. The next hop goes through
 * the routes again, so a redirect to another cluster's host reaches that cluster's kedge.
 */
export async function nextHop(response: Response, hop: Hop, mode: Request["redirect"], redirects: number): Promise<Hop | undefined> {
  if (mode === "manual" || !redirectStatus.has(response.status)) return undefined;
  const location = response.headers.get("location");
  if (location === null) return undefined;
  await response.body?.cancel();
  if (mode === "error") throw new TypeError(`fetch failed: redirect to ${location} with redirect "error"`);
  if (!URL.canParse(location, hop.url.href)) throw new TypeError(`fetch failed: redirect to an invalid URL: ${location}`);
  const url = new URL(location, hop.url);
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new TypeError(`fetch failed: redirect to a ${url.protocol} URL`);
  if (url.username || url.password) throw new TypeError("fetch failed: redirect to a URL with credentials");
  if (redirects >= maxRedirects) throw new TypeError("fetch failed: redirect count exceeded");
  const headers = new Headers(hop.headers);
  let { method, body } = hop;
  const toGet = ((response.status === 301 || response.status === 302) && method === "POST") || (response.status === 303 && method !== "GET" && method !== "HEAD");
  if (toGet) {
    method = "GET";
    body = undefined;
    for (const name of bodyHeaders) headers.delete(name);
  } else if (body instanceof ReadableStream) {
    throw new TypeError(`fetch failed: a ${response.status} redirect needs the request body again, and a stream is sent once`);
  }
  if (url.origin !== hop.url.origin) for (const name of credentialHeaders) headers.delete(name);
  return { url, method, headers, body };
}

/** A fetch response names the URL it answers and whether redirects led there; a constructed one does neither. */
export function settle(response: Response, url: URL, redirected: boolean): Response {
  Object.defineProperty(response, "url", { value: url.href });
  if (redirected) Object.defineProperty(response, "redirected", { value: true });
  return response;
}
