import * as v from "valibot";
import type { Config } from "../gen/kedge/config/v1/config_pb.js";
import { parseHostPort } from "../net/host-port.js";
import { parseKedgeUrl } from "./kedge-url.js";
import { parseK8sTarget } from "./k8s-target.js";
import { validateAuth } from "./validate-auth.js";
import { validateExposure } from "./validate-exposure.js";
import { validateFiles } from "./validate-files.js";
import { retryPolicy } from "./validate-retry.js";
import { rateLimit } from "./validate-rate-limits.js";
import { backendHealthFields } from "./validate-health.js";
import { validateWorkers } from "./workers.js";
import { validateObservability } from "../observe/validate.js";

// kedge Go's name pattern, widened with "-" because generated names embed Kubernetes names.
const namePattern = /^[a-z0-9_.-]{2,64}$/;

const port = v.pipe(v.number(), v.integer(), v.minValue(1, "port must be 1-65535"), v.maxValue(65535, "port must be 1-65535"));
const optionalPort = v.pipe(v.number(), v.integer(), v.maxValue(65535, "port must be 0-65535"));
const backendName = v.pipe(v.string(), v.regex(namePattern, "must match ^[a-z0-9_.-]{2,64}$"));
const regexpSource = v.pipe(
  v.string(),
  v.check((s) => compiles(s), "is not a valid regular expression"),
);

const resolvers = [
  v.looseObject({ case: v.literal("host"), value: v.looseObject({ dnsName: v.pipe(v.string(), v.nonEmpty("dns_name is required")), port }) }),
  v.looseObject({ case: v.literal("srv"), value: v.looseObject({ dnsName: v.pipe(v.string(), v.nonEmpty("dns_name is required")), portOverride: optionalPort }) }),
  v.looseObject({
    case: v.literal("k8s"),
    value: v.looseObject({
      dnsPortName: v.pipe(
        v.string(),
        v.nonEmpty("dns_port_name is required"),
        v.check((t) => targetProblem(t) === undefined, (issue) => targetProblem(issue.input as string) ?? ""),
      ),
    }),
  }),
  v.looseObject({
    case: v.literal("static"),
    value: v.looseObject({
      addresses: v.pipe(
        v.array(v.pipe(v.string(), v.check((a) => (parseHostPort(a, 0)?.port ?? 0) !== 0, 'must be "host:port"'))),
        v.minLength(1, "needs at least one address"),
      ),
    }),
  }),
] as const;
const resolver = v.variant("case", resolvers, "missing resolver: set one of host, srv, k8s, static");

const keyPairTogether = (s: { clientCertFile: string; clientKeyFile: string }) => (s.clientCertFile === "") === (s.clientKeyFile === "");
const keyPairMessage = "client_cert_file and client_key_file go together";

const kedgeTier = v.looseObject({
  case: v.literal("kedge"),
  value: v.pipe(
    v.looseObject({
      url: v.pipe(v.string(), v.check((u) => typeof parseKedgeUrl(u) !== "string", (issue) => `${parseKedgeUrl(issue.input as string)}`)),
      clientCertFile: v.string(),
      clientKeyFile: v.string(),
      healthCheckHost: v.pipe(v.string(), v.check((h) => h === "" || (/^[^\s/]+$/.test(h) && parseHostPort(h, 0) !== undefined), 'must be "host" or "host:port"')),
    }),
    v.check((s) => keyPairTogether(s), keyPairMessage),
  ),
});

const failoverTier = v.looseObject({ resolver: v.variant("case", [...resolvers, kedgeTier], "missing tier: set one of host, srv, k8s, static, kedge") });

const security = v.optional(v.pipe(v.looseObject({ clientCertFile: v.string(), clientKeyFile: v.string() }), v.check((s) => keyPairTogether(s), keyPairMessage)));

const backend = (kind: "http" | "grpc") => v.looseObject({ name: backendName, resolver, security, failover: v.array(failoverTier), ...backendHealthFields(kind) });

const pathRule = v.pipe(
  v.string(),
  v.startsWith("/", 'must start with "/"'),
  v.check((p) => !p.slice(0, -1).includes("*"), '"*" may only end a path rule'),
);

const httpRoute = v.looseObject({
  backendName,
  pathRules: v.array(pathRule),
  portMatcher: optionalPort,
  hostMatcher: v.pipe(v.string(), v.regex(/^\S*$/, "must not contain spaces")),
  retry: retryPolicy,
  rateLimit,
});
const grpcRoute = v.looseObject({ backendName, authorityPortMatcher: optionalPort, retry: retryPolicy, rateLimit });

const adhoc = v.looseObject({
  dnsNameMatcher: v.pipe(v.string(), v.nonEmpty("dns_name_matcher is required")),
  port: v.optional(v.looseObject({
    default: optionalPort,
    allowed: v.array(port),
    allowedRanges: v.array(v.pipe(
      v.looseObject({ from: port, to: port }),
      v.check((r) => r.from <= r.to, "from must not exceed to"),
    )),
  })),
  dnsNameReplace: v.optional(v.looseObject({ pattern: regexpSource })),
});

const server = v.optional(v.pipe(
  v.looseObject({
    httpTlsPort: v.optional(optionalPort),
    httpPort: v.optional(optionalPort),
    grpcTlsPort: v.optional(optionalPort),
    h2cPort: v.optional(optionalPort),
    adminPort: v.optional(optionalPort),
    demoBackendPort: v.optional(optionalPort),
    logLevel: v.picklist(["", "debug", "info", "warn", "warning", "error"], "must be debug, info, warn or error"),
    tlsCertFile: v.string(),
    tlsKeyFile: v.string(),
    rateLimit,
  }),
  v.check(
    (s) => (s.httpTlsPort === undefined && s.grpcTlsPort === undefined) || (s.tlsCertFile !== "" && s.tlsKeyFile !== ""),
    "a TLS port needs tls_cert_file and tls_key_file",
  ),
));

const configSchema = v.looseObject({
  server,
  http: v.optional(v.looseObject({ routes: v.array(httpRoute), backends: v.array(backend("http")), adhocRules: v.array(adhoc) })),
  grpc: v.optional(v.looseObject({ routes: v.array(grpcRoute), backends: v.array(backend("grpc")), adhocRules: v.array(adhoc) })),
});

/** Semantic checks beyond the schema: patterns, ranges, resolvers and cross references. Returns "path: problem" lines. */
export function validateConfig(config: Config): string[] {
  const problems: string[] = [];
  const result = v.safeParse(configSchema, config, { abortEarly: false });
  if (!result.success) {
    for (const issue of result.issues) problems.push(`${issuePath(issue.path)}: ${issue.message}`);
  }
  for (const kind of ["http", "grpc"] as const) {
    const section = config[kind];
    if (!section) continue;
    const names = new Map<string, number>();
    section.backends.forEach((b, i) => {
      const first = names.get(b.name);
      if (first !== undefined) problems.push(`${kind}.backends[${i}].name: duplicate backend name "${b.name}" (also ${kind}.backends[${first}])`);
      else names.set(b.name, i);
      b.failover.forEach((t, j) => {
        if (t.resolver.case === "kedge" && t.resolver.value.healthCheckHost && !b.healthCheck) {
          problems.push(`${kind}.backends[${i}].failover[${j}].kedge.health_check_host: only health checks send it, and the backend has no health_check`);
        }
      });
    });
    section.routes.forEach((r, i) => {
      if (namePattern.test(r.backendName) && !names.has(r.backendName)) {
        problems.push(`${kind}.routes[${i}].backend_name: unknown backend "${r.backendName}"`);
      }
    });
  }
  problems.push(...validateAuth(config));
  problems.push(...validateExposure(config));
  problems.push(...validateObservability(config));
  problems.push(...validateFiles(config));
  problems.push(...validateWorkers(config));
  if (config.kubernetes?.apiUrl && config.kubernetes.kubeconfigPath) problems.push("kubernetes: set api_url or kubeconfig_path, not both");
  if (config.discovery?.enabled && !config.discovery.externalDomainSuffix) {
    problems.push("discovery.external_domain_suffix: required when discovery is enabled (kedge Go --discovery_external_domain_suffix)");
  }
  return problems;
}

function issuePath(path: v.IssuePathItem[] | undefined): string {
  if (!path) return "(top level)";
  let out = "";
  let skipNext = false;
  for (const item of path) {
    const key = item.key;
    if (skipNext) {
      skipNext = false;
      continue;
    }
    let name = String(key);
    // A oneof is {case, value} in code but one field named by its case in the user's file.
    const oneof = item.value as { case?: unknown } | undefined;
    if (typeof key === "string" && oneof && typeof oneof === "object" && "case" in oneof) {
      skipNext = true;
      if (typeof oneof.case !== "string") continue;
      name = oneof.case;
    }
    if (typeof key === "number") out += `[${key}]`;
    else out += (out === "" ? "" : ".") + name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
  }
  return out;
}

function targetProblem(target: string): string | undefined {
  try {
    parseK8sTarget(target);
    return undefined;
  } catch (e) {
    return (e as Error).message;
  }
}

function compiles(source: string): boolean {
  try {
    new RegExp(source);
    return true;
  } catch {
    return false;
  }
}
