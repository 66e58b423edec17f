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
