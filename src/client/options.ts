/**
 * What createKedgeClient takes: winch's own config shapes (snake_case, as in winch.yaml), so one
 * file serves winch and the library alike. Plain types only: the published .d.ts starts here.
 */
export interface KedgeClientOptions {
  /** A winch config file (YAML or JSON); its routes, auth_sources and server TLS fields are used. */
  configFile?: string;
  /** winch's `routes`: direct `{ key, url }` or `{ regexp: { exp, url } }` with `${group}`, plus backend_auth / proxy_auth. */
  routes?: unknown[];
  /** winch's `auth_sources`: token, dummy, kube, oidc. */
  auth_sources?: unknown[];
  /** Trust and identity towards the kedges; wins over the config file's server section. */
  tls?: { ca_files?: string[]; client_cert_file?: string; client_key_file?: string };
  /** A host no route maps: plain fetch (DIRECT, the default) or a KedgeError (REFUSE). gRPC never goes direct. */
  unknown_hosts?: "DIRECT" | "REFUSE";
  /** Home directory for ~/.kube/config and the OIDC token caches; default the user's. */
  home?: string;
  /** Environment for $KUBECONFIG and exec plugins; default process.env. */
  env?: Record<string, string | undefined>;
  /** Where messages for the user go (an OIDC login's URL, a failed background refresh); default stderr. */
  log?: (msg: string) => void;
  /** Opens a URL in the user's browser, for an OIDC login. */
  openBrowser?: (url: string) => void;
}

/** What fetch takes as its first argument. */
export type FetchInput = string | URL | Request;

/**
 * A @connectrpc/connect `Transport` (gRPC over HTTP/2), typed by shape so the shipped .d.ts needs
 * no peer installed; it is assignable to Connect's own `Transport` for `createClient`.
 */
export interface KedgeGrpcTransport {
  unary(method: any, signal: AbortSignal | undefined, timeoutMs: number | undefined, header: any, input: any, contextValues?: any): Promise<any>;
  stream(method: any, signal: AbortSignal | undefined, timeoutMs: number | undefined, header: any, input: AsyncIterable<any>, contextValues?: any): Promise<any>;
}

/** What grpcTransport takes: connect-node's gRPC transport options less the connection, which the client owns. */
export interface KedgeGrpcTransportOptions {
  /** The service's URL: its host picks the route, its host:port is the calls' :authority. */
  baseUrl: string;
  useBinaryFormat?: boolean;
  /** Connect `Interceptor`s. */
  interceptors?: any[];
  jsonOptions?: object;
  binaryOptions?: object;
  /** Connect `Compression`s. */
  acceptCompression?: any[];
  sendCompression?: any;
  compressMinBytes?: number;
  readMaxBytes?: number;
  writeMaxBytes?: number;
  defaultTimeoutMs?: number;
}

/** What a @grpc/grpc-js client constructor takes: `new GreeterClient(address, credentials, options)`. */
export interface GrpcJsTarget {
  /** The kedge's host:port. */
  readonly address: string;
  /** A grpc-js `ChannelCredentials` (the caller's copy of grpc-js): TLS to the kedge with the route's identity, the route's credentials added to each call. */
  readonly credentials: any;
  /**
   * grpc-js `ChannelOptions`: `grpc.default_authority` names the destination (kedge routes on it),
   * the TLS name stays the kedge's; `interceptors` drops the caller's own values of the headers the
   * route injects, so keep it when adding interceptors of your own.
   */
  readonly options: Record<string, any> & { interceptors: any[] };
}
