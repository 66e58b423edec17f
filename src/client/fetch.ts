import http from "node:http";
import https from "node:https";
import { isIP } from "node:net";
import { KedgeError, type KedgeErrorType } from "../errors.js";
import type { FetchInput } from "./options.js";
import type { KedgeAgents } from "./pool.js";
import { IncomingBody } from "./response-body.js";
import type { KedgeRouting, KedgeTarget } from "./routing.js";

/** Fetch's null body statuses: their responses carry no body whatever the wire says. */
const nullBodyStatus = new Set([101, 103, 204, 205, 304]);

/** What a request sends: nothing, bytes of known length, or a stream sent chunked. */
type OutgoingBody = undefined | Buffer | ReadableStream<Uint8Array>;

/**
 * fetch through kedge: a host a route maps goes to its kedge as an HTTP/1.1 absolute-form request
 * (`GET http://host:port/path`, Host: host:port), as to a forward proxy, with the route's
 * credentials; other hosts go to the platform's fetch, or are refused (unknown_hosts: REFUSE).
 */
export async function kedgeFetch(routing: KedgeRouting, agents: KedgeAgents, input: FetchInput, init?: RequestInit): Promise<Response> {
  const request = input instanceof Request ? new Request(input, init) : new Request(String(input), init);
  const signal = request.signal;
  signal.throwIfAborted();
  const url = new URL(request.url);
  if (url.protocol !== "http:" && url.protocol !== "https:") return fetch(request);
  const target = await untilAborted(routing.target(url.hostname, url.port ? Number(url.port) : undefined, "http"), signal);
  if (target.kind === "direct") return fetch(request);
  const body = await outgoingBody(request, input, init);
  return exchange(request, url, target, agents.agentFor(target), body);
}

/** Rejects with the abort's reason as soon as `signal` aborts, whatever `work` is waiting for. */
function untilAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise((resolve, reject) => {
    const abort = () => reject(signal.reason);
    signal.addEventListener("abort", abort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener("abort", abort));
  });
}

/**
 * Bodies of known length (strings, bytes, forms, blobs) go with content-length; a stream, or the
 * body of a Request passed in, goes chunked as it is produced.
 */
async function outgoingBody(request: Request, input: FetchInput, init: RequestInit | undefined): Promise<OutgoingBody> {
  if (request.body === null) return undefined;
  const source = init?.body !== undefined ? init.body : input instanceof Request ? input.body : null;
  if (source instanceof ReadableStream) return request.body;
  return Buffer.from(await request.arrayBuffer());
}

function kedgePort(kedge: URL): number {
  return kedge.port ? Number(kedge.port) : kedge.protocol === "https:" ? 443 : 80;
}

function outgoingHeaders(request: Request, url: URL, target: KedgeTarget, body: OutgoingBody): Record<string, string> {
  const headers: Record<string, string> = { accept: "*/*", "user-agent": "kedge-client" };
  for (const [name, value] of request.headers) headers[name] = value;
  headers.host = url.host;
  // The route's credentials replace the caller's own, as winch's do.
  Object.assign(headers, target.headers);
  if (Buffer.isBuffer(body)) headers["content-length"] = String(body.length);
  return headers;
}

/** kedge's own refusal (x-kedge-error-type), as opposed to an answer from the backend. */
function kedgeErrorOf(res: http.IncomingMessage, type: string): KedgeError {
  const message = res.headers["x-kedge-error"];
  return new KedgeError(type as KedgeErrorType, res.statusCode ?? 502, typeof message === "string" ? message : (res.statusMessage ?? type));
}

function responseHeaders(raw: readonly string[]): Headers {
  const headers = new Headers();
  for (let i = 0; i + 1 < raw.length; i += 2) {
    try {
      headers.append(raw[i]!, raw[i + 1]!);
    } catch {
      // A field the Fetch Headers class refuses (a name or value outside its grammar) is left out, as fetch does.
    }
  }
  return headers;
}

/** One request to kedge and its response; a failure before the response is fetch's TypeError. */
function exchange(request: Request, url: URL, target: KedgeTarget, agent: http.Agent, body: OutgoingBody): Promise<Response> {
  const signal = request.signal;
  const kedge = target.kedge;
  const host = kedge.hostname.replace(/^\[|\]$/g, "");
  const options: https.RequestOptions = {
    host,
    port: kedgePort(kedge),
    method: request.method,
    path: `${url.protocol}//${url.host}${url.pathname}${url.search}`,
    headers: outgoingHeaders(request, url, target, body),
    agent,
    // Without it Node takes the SNI name from the Host header, the backend's name, not kedge's.
    servername: isIP(host) ? "" : host,
  };
  return new Promise((resolve, reject) => {
    const req = (kedge.protocol === "https:" ? https : http).request(options);
    let incoming: IncomingBody | undefined;
    const onAbort = () => {
      req.destroy();
      if (incoming) incoming.fail(signal.reason);
      else reject(signal.reason);
    };
    const finished = () => signal.removeEventListener("abort", onAbort);
    signal.addEventListener("abort", onAbort, { once: true });
    req.on("error", (err) => {
      finished();
      if (incoming) incoming.fail(new TypeError("terminated", { cause: err }));
      else reject(new TypeError("fetch failed", { cause: err }));
    });
    req.on("response", (res) => {
      const status = res.statusCode ?? 502;
      const errorType = res.headers["x-kedge-error-type"];
      if (typeof errorType === "string") {
        res.resume();
        finished();
        return reject(kedgeErrorOf(res, errorType));
      }
      const headers = responseHeaders(res.rawHeaders);
      if (nullBodyStatus.has(status) || request.method === "HEAD") {
        res.resume();
        res.on("end", finished);
        return resolve(withUrl(new Response(null, { status, statusText: res.statusMessage, headers }), request.url));
      }
      incoming = new IncomingBody(res, finished);
      resolve(withUrl(new Response(incoming.stream(), { status, statusText: res.statusMessage, headers }), request.url));
    });
    writeBody(req, body, signal).catch((err) => req.destroy(err instanceof Error ? err : new Error(String(err))));
  });
}

/** Response.url is the request's URL for fetch's responses; a constructed Response has none. */
function withUrl(response: Response, url: string): Response {
  Object.defineProperty(response, "url", { value: url });
  return response;
}

/** Sends the body, waiting for the socket to drain between chunks of a stream; an abort cancels the stream. */
async function writeBody(req: http.ClientRequest, body: OutgoingBody, signal: AbortSignal): Promise<void> {
  if (body === undefined || Buffer.isBuffer(body)) return void req.end(body);
  const reader = body.getReader();
  const cancel = () => void reader.cancel(signal.reason).catch(() => {});
  signal.addEventListener("abort", cancel, { once: true });
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done || req.destroyed) break;
      if (!req.write(value)) await drained(req);
    }
    if (!req.destroyed) req.end();
  } finally {
    signal.removeEventListener("abort", cancel);
    if (req.destroyed) cancel();
  }
}

function drained(req: http.ClientRequest): Promise<void> {
  return new Promise((resolve) => {
    if (req.destroyed) return resolve();
    const done = () => {
      req.off("drain", done);
      req.off("close", done);
      resolve();
    };
    req.on("drain", done);
    req.on("close", done);
  });
}
