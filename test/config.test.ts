import { describe, expect, it } from "bun:test";
import { referenceConfigs } from "./helpers/reference.ts";
import { makeTestPki } from "./helpers/certs.ts";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { authOverrides, discoveryOverrides, kubernetesOverrides, parseArgs, serverOverrides, winchServerOverrides } from "../src/cli/args.ts";
import { HttpBackend } from "../src/backend/http-backend.ts";
import { loadConfig } from "../src/config/load.ts";
import { ConfigError } from "../src/config/error.ts";

const referenceDir = referenceConfigs;
const dir = mkdtempSync(join(tmpdir(), "kedge-config-"));

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

function problemsOf(text: string, name = "c.json"): string[] {
  try {
    loadConfig({ configFile: file(name, text) });
  } catch (e) {
    if (e instanceof ConfigError) return [...e.problems];
    throw e;
  }
  return [];
}

const okBackend = { name: "web", host: { dns_name: "localhost", port: 8080 } };

describe("config loading", () => {
  it("loads kedge Go's director and backendpool files unchanged", () => {
    const config = loadConfig({
      directorFile: join(referenceDir, "director.json"),
      backendpoolFile: join(referenceDir, "backendpool.json"),
    });
    expect(config.http!.routes.map((r) => r.hostMatcher)).toContain("test_endpoint.localhost.internal.example.com");
    expect(config.http!.routes[0].portMatcher).toBe(18270);
    expect(config.http!.backends[0].resolver).toMatchObject({ case: "host", value: { dnsName: "localhost", port: 18270 } });
    expect(config.grpc!.routes[0].authorityPortMatcher).toBe(18271);
    expect(config.grpc!.backends[0].name).toBe("test_endpoint");
  });

  it("accepts lowerCamelCase as well as snake_case field names", () => {
    const config = loadConfig({
      configFile: file("camel.json", JSON.stringify({ http: { backends: [{ name: "web", host: { dnsName: "localhost", port: 80 } }], routes: [{ backendName: "web", hostMatcher: "a.b" }] } })),
    });
    expect(config.http!.routes[0].backendName).toBe("web");
  });

  it("loads YAML", () => {
    const config = loadConfig({ configFile: file("c.yaml", "http:\n  backends:\n    - name: web\n      static: { addresses: ['127.0.0.1:80', '[::1]:81'] }\n  routes:\n    - backend_name: web\n") });
    expect(config.http!.backends[0].resolver.case).toBe("static");
  });

  it("takes a backend's tunnel_idle: 1h when unset, never for 0s", () => {
    const config = loadConfig({
      configFile: file("tunnels.yaml", "http:\n  backends:\n    - { name: t-a, static: { addresses: ['127.0.0.1:80'] } }\n    - { name: t-b, static: { addresses: ['127.0.0.1:80'] }, timeouts: { tunnel_idle: 0s } }\n    - { name: t-c, static: { addresses: ['127.0.0.1:80'] }, timeouts: { tunnel_idle: 90s } }\n"),
    });
    expect(config.http!.backends.map((b) => new HttpBackend(b).tunnelIdleMs)).toEqual([3_600_000, 0, 90_000]);
  });

  it("lets command-line flags override the file's server section", () => {
    const config = loadConfig({ configFile: file("s.json", JSON.stringify({ server: { http_port: 1000, bind_address: "0.0.0.0" }, auth: { bearer_token: "t0k3n" } })), serverOverrides: { http_port: 2000 } });
    expect(config.server!.httpPort).toBe(2000);
    expect(config.server!.bindAddress).toBe("0.0.0.0");
  });

  it("reads kedge Go's --server_http_port as the debug (admin) port, and --server_http_proxy_port as the plaintext proxy", () => {
    const { flags } = parseArgs(["--server_http_port", "18170", "--server_http_proxy_port=8080", "--server_bind_address", "127.0.0.1"]);
    const config = loadConfig({ embedded: {}, serverOverrides: serverOverrides(flags) });
    expect(config.server).toMatchObject({ adminPort: 18170, httpPort: 8080 });
    // winch kept kedge Go's meaning there: its HTTP proxy port.
    expect(winchServerOverrides(parseArgs(["winch", "--server_http_port", "18070"]).flags)).toMatchObject({ http_port: 18070 });
    // The kedge names win over the kedge Go alias.
    expect(serverOverrides(parseArgs(["--server_http_port", "1", "--admin-port", "2"]).flags)).toMatchObject({ admin_port: 2 });
  });

  it("takes kedge Go's auth flags", () => {
    const pki = makeTestPki();
    const { flags } = parseArgs([
      `--server_tls_client_ca_files=${pki.caFile},${pki.serverCertFile}`, "--server_tls_client_cert_required",
      "--server_oidc_provider_url", "https://issuer.example", "--server_oidc_client_id", "kedge",
      "--server_oidc_perms_claim", "perms", "--server_oidc_whitelist_perms", "proxy:use,admin",
      "--server_enable_oidc_for_debug_endpoints=true",
    ]);
    const config = loadConfig({ embedded: {}, serverOverrides: serverOverrides(flags), authOverrides: authOverrides(flags) });
    expect(config.server!.tlsClientCaFiles).toEqual([pki.caFile, pki.serverCertFile]);
    expect(config.server!.tlsClientCertRequired).toBe(true);
    expect(config.auth!.oidc).toMatchObject({ providerUrl: "https://issuer.example", clientId: "kedge", permsClaim: "perms" });
    expect(config.auth!.whitelistPermissions).toEqual(["proxy:use", "admin"]);
    expect(config.auth!.admin!.enabled).toBe(true);
    const token = loadConfig({ embedded: {}, authOverrides: authOverrides(parseArgs(["--unsafe_bearer_token_proxy_auth", "s3cret"]).flags) });
    expect(token.auth!.bearerToken).toBe("s3cret");
  });

  it("takes kedge Go's Kubernetes client and discovery flags", () => {
    const pki = makeTestPki();
    const token = join(pki.dir, "token");
    writeFileSync(token, "t0ken\n");
    const { flags } = parseArgs([
      "--k8sclient_kubeapi_url=https://10.0.0.1:6443", "--k8sclient_ca_file", pki.caFile, "--k8sclient_tls_insecure",
      "--k8client_token_file", token, "--kedge_dynamic_routings_enabled",
      "--discovery_external_domain_suffix", "cluster.example.com", "--discovery_label_annotation_prefix", "corp.io/",
    ]);
    const config = loadConfig({ embedded: {}, kubernetesOverrides: kubernetesOverrides(flags), discoveryOverrides: discoveryOverrides(flags) });
    expect(config.kubernetes).toMatchObject({ apiUrl: "https://10.0.0.1:6443", caFile: pki.caFile, tlsInsecure: true, tokenFile: token });
    expect(config.discovery).toMatchObject({ enabled: true, externalDomainSuffix: "cluster.example.com", labelAnnotationPrefix: "corp.io/" });
  });
});

describe("config validation names the field path", () => {
  const cases: Array<[string, unknown, string]> = [
    ["unknown backend in a route", { http: { backends: [okBackend], routes: [{ backend_name: "web" }, { backend_name: "nope" }] } }, 'http.routes[1].backend_name: unknown backend "nope"'],
    ["duplicate backend names", { http: { backends: [okBackend, okBackend] } }, 'http.backends[1].name: duplicate backend name "web"'],
    ["bad name pattern", { http: { backends: [{ ...okBackend, name: "Web Server" }] } }, "http.backends[0].name: must match"],
    ["missing resolver", { grpc: { backends: [{ name: "g1" }] } }, "grpc.backends[0]: missing resolver: set one of host, srv, k8s, static"],
    ["port out of range", { http: { backends: [{ name: "web", host: { dns_name: "x", port: 70000 } }] } }, "http.backends[0].host.port: port must be 1-65535"],
    ["route port out of range", { http: { backends: [okBackend], routes: [{ backend_name: "web", port_matcher: 65536 }] } }, "http.routes[0].port_matcher: port must be 0-65535"],
    ["unknown field", { http: { routes: [{ backend_name: "web", hots_matcher: "x" }] } }, "http.routes[0].hots_matcher: unknown field"],
    ["bad enum", { http: { backends: [{ ...okBackend, balancer: "RANDOM" }] } }, 'http.backends[0].balancer: "RANDOM" is not one of ROUND_ROBIN, LEAST_OUTSTANDING_REQUESTS'],
    ["wrong type", { server: { http_port: "eighty" } }, 'server.http_port: expected a number, got string "eighty"'],
    ["two resolvers", { http: { backends: [{ name: "web", host: { dns_name: "x", port: 1 }, srv: { dns_name: "y" } }] } }, "http.backends[0].srv: only one of host and srv may be set"],
    ["bad path rule", { http: { backends: [okBackend], routes: [{ backend_name: "web", path_rules: ["/a/*/b"] }] } }, 'http.routes[0].path_rules[0]: "*" may only end a path rule'],
    ["bad static address", { http: { backends: [{ name: "web", static: { addresses: ["no-port"] } }] } }, 'http.backends[0].static.addresses[0]: must be "host:port"'],
    ["bad duration", { http: { backends: [{ ...okBackend, timeouts: { connect: "5 seconds" } }] } }, 'http.backends[0].timeouts.connect: expected a duration such as "1.5s"'],
    ["TLS port without a cert", { server: { http_tls_port: 8443 } }, "server: a TLS port needs tls_cert_file and tls_key_file"],
    ["an OIDC config without client_id", { auth: { oidc: { provider_url: "https://issuer.example" } } }, "auth.oidc.client_id: required"],
    ["alg none", { auth: { oidc: { provider_url: "https://i.example", client_id: "k", allowed_algorithms: ["RS256", "none"] } } }, 'auth.oidc.allowed_algorithms[1]: "none" is refused'],
    ["HMAC algorithms", { auth: { oidc: { provider_url: "https://i.example", client_id: "k", allowed_algorithms: ["HS256"] } } }, 'auth.oidc.allowed_algorithms[0]: "HS256" is refused'],
    ["a huge clock skew", { auth: { oidc: { provider_url: "https://i.example", client_id: "k", clock_skew: "3600s" } } }, "auth.oidc.clock_skew: at most 5m"],
    ["a whitelist without a perms claim", { auth: { bearer_token: "t", whitelist_permissions: ["p"] } }, "auth.whitelist_permissions: needs auth.oidc with perms_claim"],
    ["permission rules without OIDC", { http: { backends: [okBackend], routes: [{ backend_name: "web", auth: { any_of_permissions: ["p"] } }] } }, "http.routes[0].auth: permission rules need auth.oidc with perms_claim"],
    ["certificate rules without client CAs", { grpc: { backends: [okBackend], routes: [{ backend_name: "web", auth: { allowed_client_sans: ["spiffe://x"] } }] } }, "grpc.routes[0].auth: client certificate rules need server.tls_client_ca_files"],
    ["a bad k8s target", { http: { backends: [{ name: "web", k8s: { dns_port_name: "http://web" } }] } }, "http.backends[0].k8s.dns_port_name: Bad targetEntry name"],
    ["discovery without a domain suffix", { discovery: { enabled: true } }, "discovery.external_domain_suffix: required when discovery is enabled"],
    ["admin auth without a token authenticator", { auth: { admin: { enabled: true } } }, "auth.admin.enabled: needs a token authenticator"],
    ["a negative rate limit", { http: { backends: [okBackend], routes: [{ backend_name: "web", rate_limit: { requests_per_second: -1 } }] } }, "http.routes[0].rate_limit.requests_per_second: must be a number greater than 0, got -1"],
    ["a rate limit without a rate", { grpc: { backends: [okBackend], routes: [{ backend_name: "web", rate_limit: { burst: 5 } }] } }, "grpc.routes[0].rate_limit.requests_per_second: must be a number greater than 0, got 0"],
    ["a zero server rate limit", { server: { rate_limit: { requests_per_second: 0, key: "IDENTITY" } } }, "server.rate_limit.requests_per_second: must be a number greater than 0, got 0"],
    ["an infinite rate limit", { server: { rate_limit: { requests_per_second: "Infinity" } } }, "server.rate_limit.requests_per_second: must be a number greater than 0, got Infinity"],
    ["a negative burst", { server: { rate_limit: { requests_per_second: 1, burst: -1 } } }, "server.rate_limit.burst:"],
    ["an unknown rate limit key", { server: { rate_limit: { requests_per_second: 1, key: "USER" } } }, 'server.rate_limit.key: "USER" is not one of ROUTE, IDENTITY, CLIENT_ADDRESS'],
    ["an audit sample rate above 1", { observability: { audit_log: { enabled: true, allowed_sample_rate: 2 } } }, "observability.audit_log.allowed_sample_rate: must be between 0 and 1, got 2"],
    ["bad adhoc regexp", { http: { adhoc_rules: [{ dns_name_matcher: "*.x", dns_name_replace: { pattern: "(" } }] } }, "http.adhoc_rules[0].dns_name_replace.pattern: is not a valid regular expression"],
  ];
  for (const [what, config, expected] of cases) {
    it(`rejects ${what}`, () => {
      const problems = problemsOf(JSON.stringify(config));
      expect(problems.join("\n")).toContain(expected);
    });
  }

  it("reports every problem at once, not just the first", () => {
    const problems = problemsOf(JSON.stringify({ http: { backends: [{ name: "A" }], routes: [{ backend_name: "zz" }] } }));
    expect(problems.length).toBeGreaterThanOrEqual(3);
  });

  it("reports invalid JSON with its line and column", () => {
    const problems = problemsOf('{\n  "http": {\n    "routes": [,]\n  }\n}\n');
    expect(problems[0]).toMatch(/c\.json: line 3, column \d+: invalid JSON/);
  });

  it("reports invalid YAML with its line", () => {
    const problems = problemsOf("http:\n  routes:\n    - backend_name: a\n   bad: [\n", "c.yaml");
    expect(problems[0]).toMatch(/c\.yaml: line \d+, column \d+: invalid YAML/);
  });

  it("reports an unreadable file", () => {
    expect(() => loadConfig({ configFile: join(dir, "missing.json") })).toThrow(/missing\.json: cannot read: ENOENT/);
  });
});
