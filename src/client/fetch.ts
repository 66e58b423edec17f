import http from "node:http";
import https from "node:https";
import { isIP } from "node:net";
import { KedgeError, type KedgeErrorType } from "../errors.js";
import type { FetchInput } from "./options.js";
import type { KedgeAgents } from "./pool.js";
import { nextHop, settle, type Hop } from "./redirect.js";
import { IncomingBody } from "./response-body.js";
import type { KedgeRouting, KedgeTarget } from "./routing.js";

/** Fetch's null body statuses: their responses carry no body whatever the wire says. */
const nullBodyStatus = new Set([101, 103, 204, 205, 304]);

/** How a kept-alive connection the peer already closed fails when reused. */
const staleCodes = new Set(["ECONNRESET", "EPIPE"]);

/** What a request sends: nothing, bytes of known length, or a stream sent chunked. */
type OutgoingBody = Hop["body"];

/**
 * fetch through kedge: a host a route maps goes to its kedge as an HTTP/1.1 absolute-form request
 * (`GET http://host:port/path`, Host: host:port), as to a forward proxy, with the route's
 * credentials; other hosts go to the platform's fetch, or are refused (unknown_hosts: REFUSE).
 * Redirects are followed here, hop by hop, so each hop is routed on its own host.
 */
export async function kedgeFetch(routing: KedgeRouting, agents: KedgeAgents, input: FetchInput, init?: RequestInit): Promise<Response> {
  const request = input instanceof Request ? new Request(input, init) : new Request(String(input), init);
  request.signal.throwIfAborted();
  let url = new URL(request.url);
  if (url.protocol !== "http:" && url.protocol !== "https:") return fetch(request);
  let hop: Hop | undefined = { url, method: request.method, headers: request.headers, body: await outgoingBody(request, input, init) };
  for (let redirects = 0; ; redirects++) {
    const response = await send(routing, agents, hop, request.signal);
    url = hop.url;
    hop = await nextHop(response, hop, request.redirect, redirects);
    if (!hop) return settle(response, url, redirects > 0);
  }
}

async function send(routing: KedgeRouting, agents: KedgeAgents, hop: Hop, signal: AbortSignal): Promise<Response> {
  const { url } = hop;
  const target = await untilAborted(routing.target(url.hostname, url.port ? Number(url.port) : undefined, "http"), signal);
  if (target.kind === "kedge") return exchange(hop, target, agents.agentFor(target), signal);
  const init = { method: hop.method, headers: hop.headers, body: hop.body, signal, redirect: "manual", duplex: "half" };
  return fetch(url, init as RequestInit);
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

function outgoingHeaders(hop: Hop, target: KedgeTarget): Record<string, string> {
  const headers: Record<string, string> = { accept: "*/*", "user-agent": "kedge-client" };
  for (const [name, value] of hop.headers) headers[name] = value;
  headers.host = hop.url.host;
  // The route's credentials replace the caller's own, as winch's do.
  Object.assign(headers, target.headers);
  if (Buffer.isBuffer(hop.body)) headers["content-length"] = String(hop.body.length);
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
function exchange(hop: Hop, target: KedgeTarget, agent: http.Agent, signal: AbortSignal): Promise<Response> {
  const { url, method, body } = hop;
  const kedge = target.kedge;
  const host = kedge.hostname.replace(/^\[|\]$/g, "");
  const options: https.RequestOptions = {
    host,
    port: kedgePort(kedge),
    method,
    path: `${url.protocol}//${url.host}${url.pathname}${url.search}`,
    headers: outgoingHeaders(hop, target),
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
    req.on("error", (err: NodeJS.ErrnoException) => {
      finished();
      if (incoming) return incoming.fail(new TypeError("terminated", { cause: err }));
      // kedge may close an idle keep-alive connection just as it is reused: nothing was processed,
      // so the request goes again on another connection (a stream cannot be sent twice).
      if (req.reusedSocket && staleCodes.has(err.code ?? "") && !(body instanceof ReadableStream) && !signal.aborted) {
        return resolve(exchange(hop, target, agent, signal));
      }
      reject(new TypeError("fetch failed", { cause: err }));
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
      if (nullBodyStatus.has(status) || method === "HEAD") {
        res.resume();
        res.on("end", finished);
        return resolve(new Response(null, { status, statusText: res.statusMessage, headers }));
      }
      incoming = new IncomingBody(res, finished);
      resolve(new Response(incoming.stream(), { status, statusText: res.statusMessage, headers }));
    });
    writeBody(req, body, signal).catch((err) => req.destroy(err instanceof Error ? err : new Error(String(err))));
  });
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
