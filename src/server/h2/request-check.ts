import type { H2Headers } from "../../h2/hpack.js";

/** Fields that belong to one HTTP/1.1 connection and make an HTTP/2 message malformed (RFC 9113 §8.2.2). */
export const connectionSpecific = new Set(["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"]);

const digits = /^\d{1,15}$/;

/**
 * Why a request's header fields make it malformed (RFC 9113 §8.3.1), or undefined: the stream is
 * then reset with PROTOCOL_ERROR, as nghttp2 does. HPACK decoding has already refused upper-case
 * names and values with NUL, CR or LF.
 */
export function requestFault(headers: H2Headers): string | undefined {
  let method: string | undefined;
  let scheme: string | undefined;
  let path: string | undefined;
  let authority = false;
  for (const name in headers) {
    const v = headers[name];
    if (name.charCodeAt(0) === 58 /* ":" */) {
      if (typeof v !== "string") return `${name} repeated`;
      if (name === ":method") method = v;
      else if (name === ":scheme") scheme = v;
      else if (name === ":path") path = v;
      else if (name === ":authority") authority = true;
      else return `${name} in a request`;
    } else if (connectionSpecific.has(name)) return `connection-specific field ${name}`;
    else if (name === "te" && v !== "trailers") return "te other than trailers";
    else if (name === "content-length" && (typeof v !== "string" || !digits.test(v))) return "bad content-length";
  }
  if (method === undefined || method === "") return "no :method";
  if (method === "CONNECT") return scheme === undefined && path === undefined && authority ? undefined : "CONNECT with :scheme or :path, or without :authority";
  if (!scheme) return "no :scheme";
  if (!path) return "no :path";
  if (path.charCodeAt(0) !== 47 /* "/" */ && !(path === "*" && method === "OPTIONS")) return ":path neither absolute nor *";
  return undefined;
}
