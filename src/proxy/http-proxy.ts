import type { HttpBackend } from "../backend/http-backend.js";
import type { RetryPolicy } from "../backend/retry-policy.js";
import type { KedgeError } from "../errors.js";
import type { RequestIdParts } from "../net/hop-headers.js";
import type { ProxyMetrics } from "../observe/metrics.js";
import type { Observation } from "../observe/observer.js";
import type { IngressRequest } from "./ingress.js";
import type { ParsedRequest } from "./request.js";
import type { Tunnels } from "./tunnel.js";

/** Where one request goes. kedge fills it from its routes; winch from its mapper. */
export interface Routing {
  backend: HttpBackend | undefined;
  /** The backend's name for metrics and x-kedge-backend-name. */
  label: string;
  /** Settles when the request may go (access decision, credentials); may fill in backend and setHeaders. */
  ready: Promise<unknown> | undefined;
  /** No route matched: answered once `ready` settles, so unauthenticated callers learn nothing of the routes. */
  unrouted: KedgeError | undefined;
  /** Headers sent upstream in place of the client's (winch's injected credentials). */
  setHeaders: Record<string, string> | undefined;
  /** Request bodies beyond this many bytes get 413; 0: no limit. */
  maxBodyBytes: number;
  /** server.headers_with_underscores is DROP and the request had such fields (gone from its headers already). */
  dropUnderscoreNames?: boolean;
  /** The matched route for metrics and access logs (its index, "adhoc" or "none"). */
  route?: string;
  /** The backend is a forward proxy (winch's kedge): send it the client's absolute URI, not origin-form. */
  absoluteForm?: boolean;
  /** The route's retry policy: when a request the backend saw is sent again. */
  retry?: RetryPolicy;
}

/** What differs between kedge's reverse proxy and winch's forward proxy; the exchange itself is shared. */
export interface HttpProxy {
  readonly metrics: ProxyMetrics;
  /** Throws a KedgeError for a request it must refuse outright. `obs`: its access record, if it has one. */
  dispatch(req: IngressRequest, facts: ParsedRequest, obs: Observation | undefined, requestId: string): Routing;
  /** Prefix of the error headers this proxy writes: x-kedge-error or x-winch-error. */
  readonly errorHeader: "x-kedge" | "x-winch";
  /** kedge names its backend on responses; winch passes kedge's answer through as it is. */
  readonly tagsResponses: boolean;
  /** A new request id, into the exchange's parts (see RequestIdParts). */
  newRequestId(into: RequestIdParts): void;
  /** Where connections that switched protocols (101) are spliced; without it no upgrade is asked for. */
  readonly tunnels?: Tunnels;
}
