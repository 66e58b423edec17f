import { describe, expect, it } from "bun:test";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError } from "../src/config/error.ts";
import { defaultPrefix, discoveredConfig } from "../src/k8s/discovery.ts";
import { loadWinchConfig } from "../src/winch/config.ts";
import { translateRe2, WinchMapper } from "../src/winch/mapper.ts";
import { makeTestPki } from "./helpers/certs.ts";
import { referenceConfigs } from "./helpers/reference.ts";

const referenceDir = referenceConfigs;
const reference = () => loadWinchConfig({ mapperFile: join(referenceDir, "winch_mapper.json"), authFile: join(referenceDir, "winch_auth.json") });

const readme = () => readFileSync(join(import.meta.dir, "../README.md"), "utf8");

/** The winch config the README shows, with test files for the ones it names (winch reads them at load). */
function readmeWinchConfig() {
  const example = /## winch[\s\S]*?```yaml\n([\s\S]*?)```/.exec(readme())![1];
  const pki = makeTestPki();
  const yaml = example.replace("[ca.pem]", `[${pki.caFile}]`).replace("me.pem", pki.clientCertFile).replace("me.key", pki.clientKeyFile);
  const file = join(mkdtempSync(join(tmpdir(), "winch-readme-")), "winch.yaml");
  writeFileSync(file, yaml);
  return loadWinchConfig({ configFile: file });
}

function problemsOf(config: unknown): string[] {
  const file = join(mkdtempSync(join(tmpdir(), "winch-config-")), "winch.json");
  writeFileSync(file, JSON.stringify(config));
  try {
    loadWinchConfig({ configFile: file });
    return [];
  } catch (e) {
    if (e instanceof ConfigError) return [...e.problems];
    throw e;
  }
}

describe("winch config", () => {
  it("loads the example in the README, and maps with it as the README says", () => {
    const config = readmeWinchConfig();
    const mapped = new WinchMapper(config.routes).map("nginx.cluster-1.internal.example.com", undefined, "http");
    expect(mapped.kind === "mapped" && mapped.mapping.kedge.href).toBe("https://kedge.cluster-1.example.com/");
    expect(config.authSources.map((s) => s.type.case)).toEqual(["token", "kube", "oidc"]);
  });

  it("maps the names the README's discovery section gives Services with the README's regexp route, to that cluster's kedge", () => {
    const suffix = /^\s*external_domain_suffix: (\S+)/m.exec(readme())![1];
    const cluster = suffix.split(".")[0];
    const discovered = discoveredConfig([{ metadata: { name: "nginx", namespace: "shop" }, spec: { ports: [{ name: "http", port: 80 }, { name: "grpc", port: 8081 }] } }], { prefix: defaultPrefix, domainSuffix: suffix });
    const httpHost = (discovered.http.routes[0] as { host_matcher: string }).host_matcher;
    const grpcHost = (discovered.grpc.routes[0] as { authority_host_matcher: string }).authority_host_matcher;
    expect(httpHost).toBe(`nginx.shop.svc.${suffix}`);
    const mapper = new WinchMapper(readmeWinchConfig().routes);
    for (const [host, port, protocol] of [[httpHost, 80, "http"], [grpcHost, 8081, "grpc"]] as const) {
      const mapped = mapper.map(host, port, protocol);
      expect(mapped).toMatchObject({ kind: "mapped", mapping: { routeIndex: 0, proxyAuth: "sso" } });
      expect(mapped.kind === "mapped" && mapped.mapping.kedge.href).toBe(`https://kedge.${cluster}.example.com/`);
    }
    // The name the README's winch section shows is one discovery makes.
    expect(readme().includes(`\`nginx.default.svc.${suffix}\``)).toBe(true);
  });

  it("loads kedge Go's winch_mapper.json and winch_auth.json unchanged", () => {
    const config = reference();
    expect(config.routes).toHaveLength(5);
    expect(config.authSources.map((s) => s.name)).toEqual(["test-endpoint-grpc", "test-endpoint-http", "proxy-bearer-token-auth", "wrong-proxy-bearer-token-auth"]);
    expect(config.authSources[0].type).toMatchObject({ case: "token", value: { token: "secret-token" } });
  });

  it("names the field path of each problem", () => {
    const problems = problemsOf({
      routes: [
        { backend_auth: "nope", regexp: { exp: "^(?P<c>[a-z]+)", url: "https://${c}:443" } },
        { regexp: { exp: "(", url: "https://x" } },
        { direct: { key: "a.example.com", url: "ftp://kedge" } },
        { regexp: { exp: "^a(?i)b", url: "https://x" } },
      ],
      auth_sources: [{ name: "t", token: { token: "x" } }, { name: "t", dummy: { value: "y" } }],
    });
    expect(problems).toContain('routes[0].backend_auth: unknown auth source "nope"');
    expect(problems.some((p) => p.startsWith("routes[1].regexp.exp:"))).toBe(true);
    expect(problems).toContain('routes[2].direct.url: "ftp://kedge" is not an http(s) URL');
    expect(problems).toContain("routes[3].regexp.exp: inline flags are only supported at the start of the expression");
    expect(problems).toContain('auth_sources[1].name: duplicate auth source "t" (also auth_sources[0])');
  });
});

describe("winch mapper", () => {
  const mapper = new WinchMapper(reference().routes);

  it("maps kedge Go's test hosts to their kedge with ${cluster} substituted, first match wins", () => {
    const r = mapper.map("bearer_token_auth.localhost.internal.example.com", 80, "http");
    expect(r).toMatchObject({ kind: "mapped", mapping: { proxyAuth: "proxy-bearer-token-auth", backendAuth: "", routeIndex: 1 } });
    expect(r.kind === "mapped" && r.mapping.kedge.href).toBe("https://localhost:18171/");
    const noAuth = mapper.map("no_auth.cluster-1.internal.example.com", undefined, "http");
    expect(noAuth.kind === "mapped" && noAuth.mapping.kedge.host).toBe("cluster-1:18171");
  });

  it("filters routes by protocol", () => {
    const http = mapper.map("test_endpoint.localhost.internal.example.com", 80, "http");
    const grpc = mapper.map("test_endpoint.localhost.internal.example.com", 80, "grpc");
    expect(http).toMatchObject({ kind: "mapped", mapping: { backendAuth: "test-endpoint-http", routeIndex: 3 } });
    expect(grpc).toMatchObject({ kind: "mapped", mapping: { backendAuth: "test-endpoint-grpc", routeIndex: 4 } });
    expect(grpc.kind === "mapped" && grpc.mapping.kedge.port).toBe("18172");
  });

  it("refuses IP literals and reports hosts no route knows", () => {
    expect(mapper.map("127.0.0.1", 80, "http").kind).toBe("ip-literal");
    expect(mapper.map("[::1]", 443, "http").kind).toBe("ip-literal");
    expect(mapper.map("example.org", 443, "http").kind).toBe("unknown");
  });

  it("matches direct routes by host or host:port", () => {
    const direct = new WinchMapper(
      loadWinchConfig({ embedded: { routes: [{ direct: { key: "api.example.com:8443", url: "https://kedge-a:443" } }, { direct: { key: "api.example.com", url: "https://kedge-b:443" } }] } }).routes,
    );
    const on8443 = direct.map("API.example.com", 8443, "http");
    const on443 = direct.map("api.example.com", 443, "http");
    expect(on8443.kind === "mapped" && on8443.mapping.kedge.host).toBe("kedge-a");
    expect(on443.kind === "mapped" && on443.mapping.kedge.host).toBe("kedge-b");
  });

  it("translates RE2 named groups and leading flags", () => {
    expect(translateRe2("(?i)^(?P<cluster>[a-z]+)[.]x").exec("PROD.x")?.groups?.cluster).toBe("PROD");
    expect(() => translateRe2("a\\z")).toThrow("RE2 escape");
  });
});
