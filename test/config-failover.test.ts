import { describe, expect, it } from "bun:test";
import { configProblems } from "./helpers/config-problems.ts";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig } from "../src/config/load.ts";
import { buildRuntime } from "../src/runtime.ts";
import { configSecrets } from "../src/config/secrets.ts";
import { makeTestPki } from "./helpers/certs.ts";

// Failover tiers and server.max_hops in the config: loaded from YAML, and a bad tier rejected
// with its field path, at load, before anything is built.

const dir = mkdtempSync(join(tmpdir(), "kedge-config-failover-"));
const pki = makeTestPki();
const tokenFile = join(dir, "token");
writeFileSync(tokenFile, "t0ken\n");

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

const problemsOf = configProblems;

const withTiers = (failover: unknown[]) => ({
  http: { backends: [{ name: "web", static: { addresses: ["127.0.0.1:8080"] }, failover }], routes: [{ backend_name: "web" }] },
});

describe("failover tiers in the config", () => {
  it("loads tiers of every kind from YAML, and server.max_hops", () => {
    const config = loadConfig({
      configFile: file(
        "tiers.yaml",
        `server: { max_hops: 3 }
http:
  backends:
    - name: web
      host: { dns_name: web.internal, port: 8080 }
      failover:
        - static: { addresses: ["10.0.0.1:8080"] }
        - kedge:
            url: https://kedge.cluster-2.example.com:8443
            ca_files: [${pki.caFile}]
            client_cert_file: ${pki.clientCertFile}
            client_key_file: ${pki.clientKeyFile}
            proxy_auth_token_file: ${tokenFile}
grpc:
  backends:
    - name: greeter
      k8s: { dns_port_name: "greeter.prod:grpc" }
      failover: [{ srv: { dns_name: _grpc._tcp.greeter.dr.example.com } }, { kedge: { url: "https://kedge.cluster-2.example.com" } }]
`,
      ),
    });
    expect(config.server!.maxHops).toBe(3);
    const tiers = config.http!.backends[0].failover.map((t) => t.resolver.case);
    expect(tiers).toEqual(["static", "kedge"]);
    expect(config.http!.backends[0].failover[1].resolver.value).toMatchObject({ url: "https://kedge.cluster-2.example.com:8443", proxyAuthTokenFile: tokenFile });
    expect(config.grpc!.backends[0].failover.map((t) => t.resolver.case)).toEqual(["srv", "kedge"]);
  });

  it("builds a backend per tier set, and checks hops (2 unless set) only where a kedge tier can send a request on", () => {
    const config = loadConfig({ configFile: file("built.json", JSON.stringify(withTiers([{ kedge: { url: "https://localhost:9443", proxy_auth_token_file: tokenFile } }]))) });
    const runtime = buildRuntime(config, 1, configSecrets);
    try {
      expect(runtime.limits.maxHops).toBe(2);
      const noKedgeTier = buildRuntime(loadConfig({ configFile: file("plain.json", JSON.stringify(withTiers([{ static: { addresses: ["127.0.0.1:9"] } }]))) }), 1, configSecrets);
      expect(noKedgeTier.limits.maxHops).toBe(0);
      noKedgeTier.retire(undefined);
      expect(runtime.httpBackends.get("web")!.tiers.map((t) => t.description)).toEqual(["static 127.0.0.1:8080", "kedge https://localhost:9443"]);
    } finally {
      runtime.retire(undefined);
    }
  });

  const rejected: Array<[string, unknown[], string]> = [
    ["a tier without a resolver", [{}], "http.backends[0].failover[0]: missing tier: set one of host, srv, k8s, static, kedge"],
    ["a static tier without addresses", [{ static: { addresses: [] } }], "http.backends[0].failover[0].static.addresses: needs at least one address"],
    ["a kedge tier over plain HTTP", [{ kedge: { url: "http://kedge.example.com" } }], 'http.backends[0].failover[0].kedge.url: must be "https://host:port"'],
    ["a kedge tier URL with a path", [{ kedge: { url: "https://kedge.example.com/api" } }], "http.backends[0].failover[0].kedge.url: must name only a host and port"],
    ["a kedge tier URL with credentials", [{ kedge: { url: "https://user:pw@kedge.example.com" } }], "http.backends[0].failover[0].kedge.url: must not carry credentials"],
    ["a kedge tier without a URL", [{ kedge: {} }], "http.backends[0].failover[0].kedge.url: must be a URL"],
    ["a client certificate without its key", [{ kedge: { url: "https://k.example.com", client_cert_file: pki.clientCertFile } }], "http.backends[0].failover[0].kedge: client_cert_file and client_key_file go together"],
    ["a token file that is not there", [{ kedge: { url: "https://k.example.com", proxy_auth_token_file: join(dir, "missing") } }], "http.backends[0].failover[0].kedge.proxy_auth_token_file: cannot read"],
    ["a CA file that holds no certificate", [{ kedge: { url: "https://k.example.com", ca_files: [tokenFile] } }], "http.backends[0].failover[0].kedge.ca_files[0]:"],
    ["a health check Host with a path", [{ kedge: { url: "https://k.example.com", health_check_host: "shop.example.com/healthz" } }], 'http.backends[0].failover[0].kedge.health_check_host: must be "host" or "host:port"'],
    [
      "a health check Host on a backend without health_check",
      [{ kedge: { url: "https://k.example.com", health_check_host: "shop.example.com" } }],
      "http.backends[0].failover[0].kedge.health_check_host: only health checks send it, and the backend has no health_check",
    ],
  ];
  for (const [what, failover, expected] of rejected) {
    it(`rejects ${what}`, () => {
      expect(problemsOf(withTiers(failover)).join("\n")).toContain(expected);
    });
  }

  it("rejects a bad tier of a gRPC backend with its path", () => {
    const problems = problemsOf({ grpc: { backends: [{ name: "g", static: { addresses: ["127.0.0.1:1"] }, failover: [{ static: { addresses: ["nope"] } }] }] } });
    expect(problems.join("\n")).toContain('grpc.backends[0].failover[0].static.addresses[0]: must be "host:port"');
  });
});
