// The config enums that code running in a worker compares against, as plain objects. Importing a
// generated *_pb.js module decodes its file's descriptors (and its dependencies') at module init;
// a worker process gets its config already decoded from the supervisor and needs none of them.
// `typeof` the generated enum keeps these in step: a missing member or a wrong value is a compile
// error.
import type { Balancer as BalancerEnum } from "../gen/kedge/config/v1/backend_pb.js";
import type { RateLimit_Key } from "../gen/kedge/config/v1/rate_limit_pb.js";
import type { HttpRoute_ProxyMode } from "../gen/kedge/config/v1/routes_pb.js";
import type { ServerConfig_HeadersWithUnderscores } from "../gen/kedge/config/v1/server_pb.js";

export const Balancer: typeof BalancerEnum = { ROUND_ROBIN: 0, LEAST_OUTSTANDING_REQUESTS: 1 };
export const RateLimitKey: typeof RateLimit_Key = { ROUTE: 0, IDENTITY: 1, CLIENT_ADDRESS: 2 };
export const ProxyMode: typeof HttpRoute_ProxyMode = { ANY: 0, REVERSE_PROXY: 1, FORWARD_PROXY: 2 };
export const HeadersWithUnderscores: typeof ServerConfig_HeadersWithUnderscores = { REJECT: 0, ALLOW: 1, DROP: 2 };
