import type { IncomingHttpHeaders } from "node:http";
import { KedgeError } from "../errors.js";
import type { ServerConfig_HeadersWithUnderscores as Underscores } from "../gen/kedge/config/v1/server_pb.js";
import { HeadersWithUnderscores } from "../config/enums.js";
import { copyFields } from "../net/fields.js";

/**
 * Applies server.headers_with_underscores to a request's fields (HTTP/1.1, HTTP/2 and gRPC alike):
 * REJECT throws a 400 naming the first such field; DROP returns a copy of `headers` without them,
 * and undefined when there are none (as with ALLOW). `headers` is never changed: an HTTP/2
 * request's decoded fields are read-only, shared with every request that sent the same header
 * block (RecentBlocks). An HTTP/1.1 head copied line by line leaves them out when this returns a copy.
 * Pseudo-headers never hold "_" (the HTTP/2 decoder has refused unknown ones).
 */
export function screenUnderscoreNames(policy: Underscores, headers: IncomingHttpHeaders): IncomingHttpHeaders | undefined {
  if (policy === HeadersWithUnderscores.ALLOW) return undefined;
  let kept: IncomingHttpHeaders | undefined;
  for (const name in headers) {
    if (name.indexOf("_") < 0) continue;
    if (policy === HeadersWithUnderscores.REJECT) throw new KedgeError("bad-request", 400, `header name ${JSON.stringify(name.slice(0, 50))} holds an underscore (server.headers_with_underscores: REJECT)`);
    kept ??= copyFields(headers);
    delete kept[name];
  }
  return kept;
}
