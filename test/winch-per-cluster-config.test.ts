import { describe, expect, it } from "bun:test";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError } from "../src/config/error.ts";
import { KedgeError } from "../src/errors.ts";
import { staticSource } from "../src/winch/auth/static.ts";
import { loadWinchConfig } from "../src/winch/config.ts";
import { CredentialInjector, type Injection } from "../src/winch/credentials.ts";
import { WinchMapper, type Mapping } from "../src/winch/mapper.ts";
import { issueClientCert, makeTestPki } from "./helpers/certs.ts";

// `${group}` in a regexp route's backend_auth, proxy_auth and client_tls files: what the config
// check refuses (with field paths), what the mapper fills in, and what the injector presents.

const dir = mkdtempSync(join(tmpdir(), "winch-per-cluster-config-"));
const pki = makeTestPki();
const exp = "^(?P<svc>[^.]+)[.](?P<cluster>[^.]+)[.]internal[.]example[.]com$";
const url = "https://kedge.${cluster}.example.com";
const certFile = join(dir, "${cluster}", "tls.crt");
const keyFile = join(dir, "${cluster}", "tls.key");
const sources = [
  { name: "proxy-cluster-1", token: { token: "t1" } },
  { name: "proxy-cluster-2", token: { token: "t2" } },
  { name: "plain", token: { token: "p" } },
];

function problemsOf(routes: unknown[]): string[] {
  try {
    loadWinchConfig({ embedded: { routes, auth_sources: sources } });
    return [];
  } catch (e) {
    if (e instanceof ConfigError) return [...e.problems];
    throw e;
  }
}

/** Puts a certificate for `cluster` where the templated client_tls names it. */
function certFor(cluster: string, name = `winch-${cluster}`) {
  const cert = issueClientCert(pki, name, `/CN=${name}`);
  mkdirSync(join(dir, cluster), { recursive: true });
  copyFileSync(cert.certFile, join(dir, cluster, "tls.crt"));
  copyFileSync(cert.keyFile, join(dir, cluster, "tls.key"));
  return cert;
}

describe("winch config: ${group} in auth source names and client_tls", () => {
  it("accepts a regexp route whose proxy_auth, backend_auth and client_tls name its groups", () => {
    expect(problemsOf([{ regexp: { exp, url }, proxy_auth: "proxy-${cluster}", backend_auth: "proxy-cluster-${2}", client_tls: { cert_file: certFile, key_file: keyFile } }])).toEqual([]);
  });

  it("refuses ${…} in a direct route, naming the field", () => {
    const problems = problemsOf([{ direct: { key: "a.example.com", url: "https://kedge.example.com" }, proxy_auth: "proxy-${cluster}", client_tls: { cert_file: certFile, key_file: pki.clientKeyFile } }]);
    expect(problems).toContain('routes[0].proxy_auth: "proxy-${cluster}" holds ${…}, which only a regexp route fills');
    expect(problems).toContain(`routes[0].client_tls.cert_file: "${certFile}" holds \${…}, which only a regexp route fills`);
  });

  it("refuses a group the expression does not capture, naming the field and the groups it has", () => {
    const problems = problemsOf([
      { regexp: { exp, url }, proxy_auth: "proxy-${region}" },
      { regexp: { exp, url }, client_tls: { cert_file: join(dir, "${zone}.crt"), key_file: keyFile } },
    ]);
    expect(problems).toContain('routes[0].proxy_auth: "proxy-${region}" names ${region}, which routes[0].regexp.exp does not capture (it captures svc, cluster)');
    expect(problems.some((p) => p.startsWith("routes[1].client_tls.cert_file:") && p.includes("names ${zone}"))).toBe(true);
  });

  it("refuses a template no configured auth source name fits, and a plain name that is not configured", () => {
    const problems = problemsOf([{ regexp: { exp, url }, backend_auth: "sso-${cluster}", proxy_auth: "sso" }]);
    expect(problems).toContain('routes[0].backend_auth: no auth source has a name "sso-${cluster}" could make');
    expect(problems).toContain('routes[0].proxy_auth: unknown auth source "sso"');
  });

  it("checks client_tls files that are not templated at load, and that cert and key go together", () => {
    const other = issueClientCert(pki, "other", "/CN=other");
    const problems = problemsOf([
      { direct: { key: "a.example.com", url: "https://kedge.example.com" }, client_tls: { cert_file: join(dir, "missing.crt"), key_file: pki.clientKeyFile } },
      { direct: { key: "b.example.com", url: "https://kedge.example.com" }, client_tls: { cert_file: pki.clientCertFile, key_file: other.keyFile } },
      { direct: { key: "c.example.com", url: "https://kedge.example.com" }, client_tls: { cert_file: pki.clientCertFile } },
    ]);
    expect(problems.some((p) => p.startsWith("routes[0].client_tls.cert_file: cannot read") && p.includes("no such file"))).toBe(true);
    expect(problems).toContain(`routes[1].client_tls.key_file: "${other.keyFile}" is not the key of routes[1].client_tls.cert_file`);
    expect(problems).toContain("routes[2].client_tls: cert_file and key_file go together");
  });
});

function setup(routes: unknown[], extra: Record<string, ReturnType<typeof staticSource>> = {}) {
  // The extra sources stand in for what the config cannot make here (a kubeconfig user's certificate).
  const config = loadWinchConfig({ embedded: { routes, auth_sources: [...sources, ...Object.keys(extra).map((name) => ({ name, dummy: { value: "replaced" } }))] } });
  const built = new Map(config.authSources.map((s) => [s.name, staticSource(s.name, { header: `Bearer ${(s.type.value as { token: string }).token}` })]));
  for (const [name, source] of Object.entries(extra)) built.set(name, source);
  return { mapper: new WinchMapper(config.routes), injector: new CredentialInjector(built) };
}

function mapped(mapper: WinchMapper, host: string): Mapping {
  const r = mapper.map(host, undefined, "http");
  if (r.kind !== "mapped") throw new Error(`${host} is ${r.kind}`);
  return r.mapping;
}

async function failure(p: Injection | Promise<Injection>): Promise<KedgeError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof KedgeError) return e;
    throw e;
  }
  throw new Error("expected a failure");
}

describe("winch mapper and injector: one route, each cluster's identity", () => {
  const route = { regexp: { exp, url }, proxy_auth: "proxy-${cluster}", client_tls: { cert_file: certFile, key_file: keyFile } };

  it("fills the cluster into the auth source names and the certificate paths", () => {
    const { mapper } = setup([route]);
    expect(mapped(mapper, "app.cluster-2.internal.example.com")).toMatchObject({
      proxyAuth: "proxy-cluster-2",
      clientTls: { certFile: join(dir, "cluster-2", "tls.crt"), keyFile: join(dir, "cluster-2", "tls.key") },
    });
  });

  it("injects each cluster's token and presents each cluster's certificate", async () => {
    const one = certFor("cluster-1");
    const two = certFor("cluster-2");
    const { mapper, injector } = setup([route]);
    const i1 = await injector.inject(mapped(mapper, "app.cluster-1.internal.example.com"));
    const i2 = await injector.inject(mapped(mapper, "app.cluster-2.internal.example.com"));
    expect(i1).toEqual({ headers: { "proxy-authorization": "Bearer t1" }, clientCert: { cert: one.cert, key: one.key } });
    expect(i2).toEqual({ headers: { "proxy-authorization": "Bearer t2" }, clientCert: { cert: two.cert, key: two.key } });
  });

  it("names the filled-in source when no source has that name, instead of sending anything", async () => {
    const { mapper, injector } = setup([route]);
    const err = await failure(injector.inject(mapped(mapper, "app.cluster-9.internal.example.com")));
    expect(err).toMatchObject({ type: "auth-source", status: 502 });
    expect(err.message).toContain('"proxy-cluster-9"');
  });

  it("a cluster without certificate files is an auth-source error naming the field and file", async () => {
    const { mapper, injector } = setup([{ ...route, proxy_auth: "" }]);
    const err = await failure(injector.inject(mapped(mapper, "app.cluster-8.internal.example.com")));
    expect(err.type).toBe("auth-source");
    expect(err.message).toContain(`routes[0].client_tls.cert_file: cannot read "${join(dir, "cluster-8", "tls.crt")}"`);
  });

  it("a certificate and key that never made a pair are an auth-source error", async () => {
    certFor("cluster-4");
    writeFileSync(join(dir, "cluster-4", "tls.key"), issueClientCert(pki, "stranger", "/CN=stranger").key);
    const { mapper, injector } = setup([{ ...route, proxy_auth: "" }]);
    const err = await failure(injector.inject(mapped(mapper, "app.cluster-4.internal.example.com")));
    expect(err.type).toBe("auth-source");
    expect(err.message).toContain("routes[0].client_tls.key_file");
    expect(err.message).toContain("is not the key of routes[0].client_tls.cert_file");
  });

  it("refuses a host whose group would step out of the certificate directory", () => {
    const { mapper } = setup([{ regexp: { exp: "^(?P<cluster>.*)[.]example[.]com$", url: "https://kedge.example.com" }, client_tls: route.client_tls }]);
    for (const host of ["...example.com", "..example.com", ".example.com"]) {
      expect(() => mapper.map(host, undefined, "http")).toThrow(/cannot be part of a file path/);
    }
  });

  it("a proxy_auth that gives a client certificate wins over the route's client_tls", async () => {
    certFor("cluster-1");
    const user = issueClientCert(pki, "user", "/CN=user");
    const { mapper, injector } = setup([{ ...route, proxy_auth: "user-${cluster}" }], { "user-cluster-1": staticSource("user-cluster-1", { clientCert: { cert: user.cert, key: user.key } }) });
    const injection = await injector.inject(mapped(mapper, "app.cluster-1.internal.example.com"));
    expect(injection.clientCert).toEqual({ cert: user.cert, key: user.key });
  });

  it("a route with only client_tls resolves at once, and rotation mid-way keeps the last good pair until both files are new", async () => {
    const first = certFor("cluster-3", "first");
    const { mapper, injector } = setup([{ ...route, proxy_auth: "" }]);
    const mapping = mapped(mapper, "app.cluster-3.internal.example.com");
    const now = injector.inject(mapping);
    expect(now instanceof Promise).toBe(false);
    expect((now as Injection).clientCert?.cert).toBe(first.cert);
    const second = issueClientCert(pki, "second", "/CN=second");
    writeFileSync(join(dir, "cluster-3", "tls.crt"), second.cert);
    expect(((await injector.inject(mapping)) as Injection).clientCert?.cert).toBe(first.cert);
    writeFileSync(join(dir, "cluster-3", "tls.key"), second.key);
    expect(((await injector.inject(mapping)) as Injection).clientCert).toEqual({ cert: second.cert, key: second.key });
  });

  it("maps with the README's many-clusters example as the README says", () => {
    const readme = readFileSync(join(import.meta.dir, "../README.md"), "utf8");
    const file = join(dir, "readme-many-clusters.yaml");
    writeFileSync(file, /### Many clusters[\s\S]*?```yaml\n([\s\S]*?)```/.exec(readme)![1]);
    const mapper = new WinchMapper(loadWinchConfig({ configFile: file }).routes);
    const mapping = mapped(mapper, "nginx.cluster-1.internal.example.com");
    expect(mapping.kedge.href).toBe("https://kedge.cluster-1.example.com/");
    expect(mapping).toMatchObject({ proxyAuth: "proxy-cluster-1", clientTls: { certFile: "/etc/winch/cluster-1/tls.crt", keyFile: "/etc/winch/cluster-1/tls.key" } });
  });

  it("keeps a direct route's names as they are", () => {
    const { mapper } = setup([{ direct: { key: "a.example.com", url: "https://kedge.example.com" }, proxy_auth: "plain" }]);
    expect(mapped(mapper, "a.example.com")).toMatchObject({ proxyAuth: "plain", backendAuth: "", routeIndex: 0 });
  });
});
