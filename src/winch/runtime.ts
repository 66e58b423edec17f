import { equals } from "@bufbuild/protobuf";
import { AuthSourceSchema, WinchServer_UnknownHosts, type WinchConfig } from "../gen/kedge/winch/v1/winch_pb.js";
import { ConfigError } from "../config/error.js";
import type { ProxyMetrics } from "../observe/metrics.js";
import { buildAuthSources, type AuthSource, type AuthSourceOptions } from "./auth/index.js";
import type { WinchContext } from "./context.js";
import { CredentialInjector } from "./credentials.js";
import { WinchMapper } from "./mapper.js";
import { KedgeUpstreams } from "./upstreams.js";

/** winch's routing for one config: what its listeners read per request, and what it holds open. */
export interface WinchRuntime {
  readonly config: WinchConfig;
  readonly ctx: WinchContext;
  readonly sources: ReadonlyMap<string, AuthSource>;
}

/**
 * Builds the runtime for `config`. On a reload (`previous`), an auth source whose config did not
 * change is kept with its tokens and logins, and the kedge connections are kept when winch's TLS
 * material (ca_files, client certificate) is the same. Throws ConfigError for what only building
 * finds (a kubeconfig without the user), naming its field path.
 */
export function buildWinchRuntime(config: WinchConfig, metrics: ProxyMetrics, options: AuthSourceOptions, previous?: WinchRuntime): WinchRuntime {
  const keep = (source: (typeof config.authSources)[number]) => {
    const before = previous?.config.authSources.find((s) => s.name === source.name);
    return before && equals(AuthSourceSchema, before, source) ? previous!.sources.get(source.name) : undefined;
  };
  let sources: Map<string, AuthSource>;
  try {
    sources = buildAuthSources(config.authSources, { ...options, keep });
  } catch (e) {
    throw new ConfigError([(e as Error).message]);
  }
  const server = config.server;
  let upstreams: KedgeUpstreams;
  try {
    upstreams = new KedgeUpstreams(server);
  } catch (e) {
    for (const [name, source] of sources) if (previous?.sources.get(name) !== source) source.close();
    throw new ConfigError([`server.ca_files/client_cert_file/client_key_file: ${(e as Error).message}`]);
  }
  if (previous && previous.ctx.upstreams.sameTlsAs(upstreams)) upstreams = previous.ctx.upstreams;
  const ctx: WinchContext = {
    mapper: new WinchMapper(config.routes),
    injector: new CredentialInjector(sources),
    upstreams,
    metrics,
    unknownHosts: server?.unknownHosts === WinchServer_UnknownHosts.REFUSE ? "refuse" : "direct",
    pac: { file: server?.pacFile ?? "", shExpressions: server?.pacRedirectShExpressions ?? [] },
  };
  return { config, ctx, sources };
}

/** Closes what `runtime` holds and `successor` (the runtime replacing it, if any) does not use. */
export function closeWinchRuntime(runtime: WinchRuntime, successor: WinchRuntime | undefined): void {
  if (successor?.ctx.upstreams !== runtime.ctx.upstreams) runtime.ctx.upstreams.close();
  for (const [name, source] of runtime.sources) if (successor?.sources.get(name) !== source) source.close();
}
