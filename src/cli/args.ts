/** Parsed command line: a subcommand and flag values by canonical name. */
export interface Args {
  command: string;
  flags: Map<string, string>;
  positional: string[];
}

/**
 * Canonical flag → accepted spellings. kedge Go's flag names are aliases so its deployment
 * manifests keep working unchanged.
 */
export const flagAliases: Record<string, readonly string[]> = {
  config: ["config", "c"],
  "director-config": ["director-config", "kedge_config_director_config_path"],
  "backendpool-config": ["backendpool-config", "kedge_config_backendpool_config_path"],
  "http-tls-port": ["http-tls-port", "server_http_tls_port"],
  "http-port": ["http-port", "server_http_proxy_port"],
  // kedge Go gave server_http_port two meanings: kedge's plaintext debug port (/_healthz,
  // /_version, /metrics, /debug/*), which its DaemonSets probe, and winch's HTTP proxy port.
  server_http_port: ["server_http_port"],
  "grpc-tls-port": ["grpc-tls-port", "server_grpc_tls_port"],
  "h2c-port": ["h2c-port"],
  "admin-port": ["admin-port", "server_http_debug_port", "server_debug_port"],
  "tls-cert-file": ["tls-cert-file", "server_tls_cert_file"],
  "tls-key-file": ["tls-key-file", "server_tls_key_file"],
  "bind-address": ["bind-address", "server_bind_address"],
  "log-level": ["log-level", "log_level"],
  workers: ["workers"],
  "tls-client-ca-files": ["tls-client-ca-files", "server_tls_client_ca_files"],
  "tls-client-cert-required": ["tls-client-cert-required", "server_tls_client_cert_required"],
  "oidc-provider-url": ["oidc-provider-url", "server_oidc_provider_url"],
  "oidc-client-id": ["oidc-client-id", "server_oidc_client_id"],
  "oidc-perms-claim": ["oidc-perms-claim", "server_oidc_perms_claim"],
  "oidc-whitelist-perms": ["oidc-whitelist-perms", "server_oidc_whitelist_perms"],
  "bearer-token": ["bearer-token", "unsafe_bearer_token_proxy_auth"],
  "admin-auth": ["admin-auth", "server_enable_oidc_for_debug_endpoints"],
  "allow-unauthenticated": ["allow-unauthenticated", "allow_unauthenticated"],
  "kube-api-url": ["kube-api-url", "k8sclient_kubeapi_url"],
  "kube-ca-file": ["kube-ca-file", "k8sclient_ca_file"],
  "kube-tls-insecure": ["kube-tls-insecure", "k8sclient_tls_insecure"],
  "kube-token-file": ["kube-token-file", "k8client_token_file", "k8sclient_token_file"],
  "kubeconfig": ["kubeconfig", "k8sclient_kubeconfig_path"],
  "kubeconfig-user": ["kubeconfig-user", "k8sclient_kubeconfig_user"],
  discovery: ["discovery", "kedge_dynamic_routings_enabled"],
  "discovery-domain-suffix": ["discovery-domain-suffix", "discovery_external_domain_suffix"],
  "discovery-prefix": ["discovery-prefix", "discovery_label_annotation_prefix"],
  "admin-address": ["admin-address"],
  "mapper-config": ["mapper-config", "server_mapper_config_path", "server_config_mapper_path"],
  "auth-config": ["auth-config", "server_auth_config_path", "server_auth_config"],
  "grpc-port": ["grpc-port", "server_grpc_port"],
  "pac-redirect": ["pac-redirect", "pac_redirect_sh_expressions"],
  "pac-file": ["pac-file"],
  "kedge-ca-files": ["kedge-ca-files", "client_tls_root_ca_files"],
  "kedge-cert-file": ["kedge-cert-file", "client_tls_cert_file"],
  "kedge-key-file": ["kedge-key-file", "client_tls_key_file"],
  "unknown-hosts": ["unknown-hosts"],
  "access-log": ["access-log", "access_log"],
  help: ["help", "h"],
};

const canonicalByAlias = new Map<string, string>();
for (const [canonical, aliases] of Object.entries(flagAliases)) for (const a of aliases) canonicalByAlias.set(a, canonical);

const booleanFlags = new Set(["help", "tls-client-cert-required", "admin-auth", "allow-unauthenticated", "kube-tls-insecure", "discovery", "access-log"]);
const commands = new Set(["serve", "validate", "version", "admin", "help", "winch"]);

export class UsageError extends Error {}

export function parseArgs(argv: readonly string[]): Args {
  const flags = new Map<string, string>();
  const positional: string[] = [];
  let command = "serve";
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith("-")) {
      if (positional.length === 0 && flags.size === 0 && commands.has(arg)) command = arg;
      else positional.push(arg);
      continue;
    }
    const body = arg.replace(/^--?/, "");
    const eq = body.indexOf("=");
    const name = eq >= 0 ? body.slice(0, eq) : body;
    const canonical = canonicalByAlias.get(name);
    if (!canonical) throw new UsageError(`unknown flag --${name} (see kedge --help)`);
    if (booleanFlags.has(canonical)) {
      flags.set(canonical, eq >= 0 ? body.slice(eq + 1) : "true");
      continue;
    }
    const value = eq >= 0 ? body.slice(eq + 1) : argv[++i];
    if (value === undefined) throw new UsageError(`flag --${name} needs a value`);
    flags.set(canonical, value);
  }
  if (flags.get("help") === "true") command = "help";
  return { command, flags, positional };
}

/** Server settings given as flags override the config file's server section. */
export function serverOverrides(flags: Map<string, string>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const port = (flag: string, field: string) => portFlag(flags, flag, out, field);
  port("http-tls-port", "http_tls_port");
  port("http-port", "http_port");
  port("grpc-tls-port", "grpc_tls_port");
  port("h2c-port", "h2c_port");
  port("server_http_port", "admin_port");
  port("admin-port", "admin_port");
  const str = (flag: string, field: string) => {
    const v = flags.get(flag);
    if (v !== undefined) out[field] = v;
  };
  str("tls-cert-file", "tls_cert_file");
  str("tls-key-file", "tls_key_file");
  str("bind-address", "bind_address");
  str("log-level", "log_level");
  const workers = flags.get("workers");
  if (workers !== undefined) {
    if (workers !== "auto" && !/^\d+$/.test(workers)) throw new UsageError(`--workers: "${workers}" is not auto or a number`);
    out.workers = workers === "auto" ? "auto" : Number(workers);
  }
  const list = flags.get("tls-client-ca-files");
  if (list !== undefined) out.tls_client_ca_files = commaList(list);
  const required = flags.get("tls-client-cert-required");
  if (required !== undefined) out.tls_client_cert_required = bool("tls-client-cert-required", required);
  return out;
}

/** kedge Go's auth flags, as an `auth` section that overrides the config file's. */
export function authOverrides(flags: Map<string, string>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const oidc: Record<string, unknown> = {};
  const set = (flag: string, into: Record<string, unknown>, field: string) => {
    const v = flags.get(flag);
    if (v !== undefined) into[field] = v;
  };
  set("oidc-provider-url", oidc, "provider_url");
  set("oidc-client-id", oidc, "client_id");
  set("oidc-perms-claim", oidc, "perms_claim");
  if (Object.keys(oidc).length > 0) out.oidc = oidc;
  set("bearer-token", out, "bearer_token");
  const perms = flags.get("oidc-whitelist-perms");
  if (perms !== undefined) out.whitelist_permissions = commaList(perms);
  const admin = flags.get("admin-auth");
  if (admin !== undefined) out.admin = { enabled: bool("admin-auth", admin) };
  const open = flags.get("allow-unauthenticated");
  if (open !== undefined) out.allow_unauthenticated = bool("allow-unauthenticated", open);
  return out;
}

/** kedge Go's k8sclient flags, as a `kubernetes` section that overrides the config file's. */
export function kubernetesOverrides(flags: Map<string, string>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const fields: Array<[string, string]> = [
    ["kube-api-url", "api_url"],
    ["kube-ca-file", "ca_file"],
    ["kube-token-file", "token_file"],
    ["kubeconfig", "kubeconfig_path"],
    ["kubeconfig-user", "kubeconfig_user"],
  ];
  for (const [flag, field] of fields) {
    const v = flags.get(flag);
    if (v !== undefined) out[field] = v;
  }
  const insecure = flags.get("kube-tls-insecure");
  if (insecure !== undefined) out.tls_insecure = bool("kube-tls-insecure", insecure);
  return out;
}

/** kedge Go's dynamic routing discovery flags, as a `discovery` section. */
export function discoveryOverrides(flags: Map<string, string>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const enabled = flags.get("discovery");
  if (enabled !== undefined) out.enabled = bool("discovery", enabled);
  const suffix = flags.get("discovery-domain-suffix");
  if (suffix !== undefined) out.external_domain_suffix = suffix;
  const prefix = flags.get("discovery-prefix");
  if (prefix !== undefined) out.label_annotation_prefix = prefix;
  return out;
}

/** winch's flags (kedge Go's winch names as aliases), as a server section over its config files'. */
export function winchServerOverrides(flags: Map<string, string>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const port = (flag: string, field: string) => portFlag(flags, flag, out, field);
  port("server_http_port", "http_port");
  port("http-port", "http_port");
  port("grpc-port", "grpc_port");
  port("admin-port", "monitoring_port");
  const fields: Array<[string, string]> = [
    ["bind-address", "bind_address"],
    ["kedge-cert-file", "client_cert_file"],
    ["kedge-key-file", "client_key_file"],
    ["pac-file", "pac_file"],
    ["log-level", "log_level"],
  ];
  for (const [flag, field] of fields) {
    const v = flags.get(flag);
    if (v !== undefined) out[field] = v;
  }
  const cas = flags.get("kedge-ca-files");
  if (cas !== undefined) out.ca_files = commaList(cas);
  const pac = flags.get("pac-redirect");
  if (pac !== undefined) out.pac_redirect_sh_expressions = commaList(pac);
  const unknown = flags.get("unknown-hosts");
  if (unknown !== undefined) {
    if (unknown !== "direct" && unknown !== "refuse") throw new UsageError(`--unknown-hosts: "${unknown}" is not direct or refuse`);
    out.unknown_hosts = unknown.toUpperCase();
  }
  const accessLog = flags.get("access-log");
  if (accessLog !== undefined) out.access_log = { enabled: bool("access-log", accessLog) };
  return out;
}

/** A port flag's value into out[field], refused unless it is a port number. */
function portFlag(flags: Map<string, string>, flag: string, out: Record<string, unknown>, field: string): void {
  const v = flags.get(flag);
  if (v === undefined) return;
  if (!/^\d{1,5}$/.test(v) || Number(v) > 65535) throw new UsageError(`--${flag}: "${v}" is not a port number`);
  out[field] = Number(v);
}

/** kedge Go's list flags: comma-separated. */
function commaList(value: string): string[] {
  return value.split(",").map((v) => v.trim()).filter(Boolean);
}

function bool(flag: string, value: string): boolean {
  if (value === "true" || value === "1") return true;
  if (value === "false" || value === "0") return false;
  throw new UsageError(`--${flag}: "${value}" is not true or false`);
}

export const usage = `kedge — Kubernetes edge proxy for gRPC and HTTP

Usage:
  kedge [serve] [--config routes.json|yaml] [flags]   run the proxy (no config: embedded demo config)
  kedge validate --config F                           check a config; exit 0 when valid, 1 with field-path errors
  kedge version                                       print the version
  kedge admin backends|routes|config [--admin-address 127.0.0.1:8081]
                                                      ask a running kedge (AdminService over Connect;
                                                      KEDGE_ADMIN_TOKEN: the token kedge's auth wants)
  kedge winch [--config winch.json] [flags]           run winch, the local forward proxy to kedges

Config files:
  --config F                 one file with server, http, grpc (JSON or YAML)
  --director-config F        kedge Go's director file   (alias --kedge_config_director_config_path)
  --backendpool-config F     kedge Go's backendpool file (alias --kedge_config_backendpool_config_path)

Server flags (override the config's server section; kedge Go names in parentheses):
  --http-tls-port N          (--server_http_tls_port)    HTTPS, ALPN h2 + http/1.1
  --http-port N              (--server_http_proxy_port)  plaintext HTTP/1.1 proxy
  --grpc-tls-port N          (--server_grpc_tls_port)    gRPC over TLS, ALPN h2 only
  --h2c-port N                                           HTTP/2 without TLS (gRPC and HTTP)
  --admin-port N             (--server_http_port, --server_http_debug_port)
                                                        plaintext admin: /_healthz /_version /metrics /debug/*
                                                        (kedge Go's --server_http_port was this debug port)
  --tls-cert-file F          (--server_tls_cert_file)
  --tls-key-file F           (--server_tls_key_file)
  --bind-address A           (--server_bind_address)
  --log-level L              (--log_level)               debug, info, warn, error
  --workers N|auto                                       worker processes (default auto: the CPUs
                                                        the cgroup quota and affinity mask allow)
  --tls-client-ca-files F,F  (--server_tls_client_ca_files)      CAs for client certificates
  --tls-client-cert-required (--server_tls_client_cert_required) fail handshakes without one

Auth flags (override the config's auth section):
  --oidc-provider-url U      (--server_oidc_provider_url)    OIDC issuer
  --oidc-client-id ID        (--server_oidc_client_id)       expected audience
  --oidc-perms-claim C       (--server_oidc_perms_claim)     claim holding permissions
  --oidc-whitelist-perms P,P (--server_oidc_whitelist_perms) any one of these grants access
  --bearer-token T           (--unsafe_bearer_token_proxy_auth) static Proxy-Authorization token
  --admin-auth               (--server_enable_oidc_for_debug_endpoints) admin port behind auth
  --allow-unauthenticated    (--allow_unauthenticated)  let data ports bind beyond loopback with no
                                                        authenticator (refused by default: an open proxy)

Kubernetes API flags (override the config's kubernetes section; default: in-cluster):
  --kube-api-url U           (--k8sclient_kubeapi_url)
  --kube-ca-file F           (--k8sclient_ca_file)
  --kube-tls-insecure        (--k8sclient_tls_insecure)
  --kube-token-file F        (--k8client_token_file)
  --kubeconfig F             (--k8sclient_kubeconfig_path)
  --kubeconfig-user U        (--k8sclient_kubeconfig_user)

Dynamic routing discovery (labelled Services become routes; overrides the discovery section):
  --discovery                (--kedge_dynamic_routings_enabled)
  --discovery-domain-suffix S (--discovery_external_domain_suffix) hosts <svc>.<ns>.svc.S
  --discovery-prefix P       (--discovery_label_annotation_prefix) default kedge.com/

winch flags (kedge Go's winch names in parentheses):
  --config F                 one file with server, routes, auth_sources (JSON or YAML)
  --mapper-config F          (--server_mapper_config_path)  kedge Go's winch_mapper.json (routes)
  --auth-config F            (--server_auth_config_path)    kedge Go's winch_auth.json (auth_sources)
  --http-port N              (--server_http_port)           HTTP_PROXY port, default 8070
  --grpc-port N              (--server_grpc_port)           h2c gRPC port, default 8071
  --admin-port N             (--server_debug_port)          /_healthz and /metrics
  --bind-address A           (--server_bind_address)        default 127.0.0.1
  --kedge-ca-files F,F       (--client_tls_root_ca_files)   extra roots for kedges' certificates
  --kedge-cert-file F        (--client_tls_cert_file)       client certificate presented to kedges
  --kedge-key-file F         (--client_tls_key_file)
  --pac-redirect E,E         (--pac_redirect_sh_expressions) hosts /wpad.dat sends through winch
  --pac-file F               serve this file as /wpad.dat
  --unknown-hosts direct|refuse                          hosts no route maps (default direct)
  --access-log=false         (--access_log)                 no access lines on stdout (default on)

Signals: SIGHUP reloads the config (also on file change); SIGTERM drains and exits.
`;
