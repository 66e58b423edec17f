import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { KedgeClientOptions } from "../../src/client/routing.ts";
import { ensureBinary, listeningPorts, runBinary, waitFor, type Running } from "./binary.ts";
import { makeTestPki, type TestPki } from "./certs.ts";
import { startGreeter, type GreeterServer } from "./grpc.ts";
import { startOidcProvider, type OidcProviderIssuer } from "./oidc-provider.ts";
import { startUpstream, type Upstream } from "./upstream.ts";

// Two clusters as a calling service sees them: each a real kedge (dist/kedge) on a TLS port with an
// HTTP backend (test/helpers/upstream.ts: echoes method, path, headers; /echo streams the body
// back, /slow-chunks streams, /status/N) and a gRPC Greeter (all four call kinds). cluster-1 lets in
// only client certificates from the test CA, and its routes only CN=test-client; cluster-2 wants an
// OIDC id_token from the real oidc-provider in Proxy-Authorization.

export const clusterHosts = {
  http1: "echo.cluster-1.internal.example.com",
  grpc1: "greeter.cluster-1.internal.example.com",
  http2: "echo.cluster-2.internal.example.com",
  grpc2: "greeter.cluster-2.internal.example.com",
} as const;

export interface Cluster {
  /** https://localhost:PORT: kedge's TLS port (HTTP/1.1, HTTP/2 and gRPC by content-type). */
  url: string;
  port: number;
  /** kedge's admin port (/_healthz, /metrics). */
  adminPort: number;
  kedge: Running;
  http: Upstream;
  grpc: GreeterServer;
}

export interface TwoClusters {
  pki: TestPki;
  /** A temp directory: the client's home, the OIDC token cache and the backend token file live here. */
  dir: string;
  cluster1: Cluster & { caFile: string; clientCertFile: string; clientKeyFile: string };
  cluster2: Cluster & {
    issuer: OidcProviderIssuer;
    /** The winch auth source (`auth_sources` entry) that keeps cluster-2's id_token fresh. */
    oidcSource: { name: string; oidc: { provider: string; client_id: string; secret: string; path: string } };
    /** That source's token cache file. */
    oidcCacheFile: string;
  };
  hosts: typeof clusterHosts;
  /** A kubeconfig user's tokenFile, cluster-1's backend_auth ("backend-token"): rewrite it to rotate the token. */
  tokenFile: string;
  /**
   * winch-style options reaching both clusters: one regexp route per cluster (each kedge has its own
   * port on 127.0.0.1, and a URL template cannot turn a cluster name into a port), TLS trusting the
   * test CA with the client certificate cluster-1 wants, proxy_auth "sso-cluster-2" (OIDC) for cluster-2.
   */
  options(extra?: Partial<KedgeClientOptions>): KedgeClientOptions;
  /** Logs in at the provider again and stores its tokens in the cache with an expiry in the past, so the source's next use refreshes. */
  seedOidcCache(): Promise<void>;
  stop(): Promise<void>;
}

async function startKedgeBinary(dir: string, name: string, config: Record<string, unknown>): Promise<{ kedge: Running; port: number; adminPort: number }> {
  const configFile = join(dir, `${name}.json`);
  writeFileSync(configFile, JSON.stringify(config, null, 2));
  const kedge = runBinary(["--config", configFile], dir);
  let ports: Record<string, number> | undefined;
  await waitFor(() => (ports = listeningPorts(kedge.stdout())) !== undefined, `${name}'s kedge to listen`, kedge);
  return { kedge, port: ports!.tls!, adminPort: ports!.admin! };
}

function clusterConfig(pki: TestPki, cluster: string, http: Upstream, grpc: GreeterServer, extra: { server?: object; auth?: object; routeAuth?: object }) {
  const routeAuth = extra.routeAuth ? { auth: extra.routeAuth } : {};
  return {
    // One process: tests read the data listeners' connection gauge from this process's /metrics.
    server: { bind_address: "127.0.0.1", http_tls_port: 0, admin_port: 0, workers: 1, log_level: "error", tls_cert_file: pki.serverCertFile, tls_key_file: pki.serverKeyFile, ...extra.server },
    ...(extra.auth ? { auth: extra.auth } : {}),
    http: {
      backends: [{ name: "echo", static: { addresses: [`127.0.0.1:${http.port}`] } }],
      routes: [{ backend_name: "echo", host_matcher: `echo.${cluster}.internal.example.com`, ...routeAuth }],
    },
    grpc: {
      backends: [{ name: "greeter", static: { addresses: [`127.0.0.1:${grpc.port}`] } }],
      routes: [{ backend_name: "greeter", authority_host_matcher: `greeter.${cluster}.internal.example.com`, ...routeAuth }],
    },
  };
}

/** Starts both clusters and the OIDC provider, and seeds the OIDC token cache with a real login. */
export async function startTwoClusters(): Promise<TwoClusters> {
  ensureBinary();
  const dir = mkdtempSync(join(tmpdir(), "kedge-two-clusters-"));
  const pki = makeTestPki();
  const issuer = await startOidcProvider();
  const [http1, http2, grpc1, grpc2] = await Promise.all([startUpstream("cluster-1"), startUpstream("cluster-2"), startGreeter("cluster-1"), startGreeter("cluster-2")]);
  const one = await startKedgeBinary(
    dir,
    "cluster-1",
    clusterConfig(pki, "cluster-1", http1, grpc1, {
      server: { tls_client_ca_files: [pki.caFile], tls_client_cert_required: true },
      routeAuth: { allowed_client_subjects: ["CN=test-client"] },
    }),
  );
  const two = await startKedgeBinary(dir, "cluster-2", clusterConfig(pki, "cluster-2", http2, grpc2, { auth: { oidc: { provider_url: issuer.url, client_id: issuer.client.id } } }));

  const tokenFile = join(dir, "backend-token");
  writeFileSync(tokenFile, "first-backend-token\n");
  const kubeconfig = join(dir, "kubeconfig");
  writeFileSync(kubeconfig, `apiVersion: v1\nkind: Config\nusers:\n- name: backend\n  user:\n    tokenFile: ${tokenFile}\n`);
  const oidcCacheFile = join(dir, ".config", "kedge", "sso-cluster-2.json");
  const oidcSource = { name: "sso-cluster-2", oidc: { provider: issuer.url, client_id: issuer.client.id, secret: issuer.client.secret, path: oidcCacheFile } };

  const seedOidcCache = async () => {
    const tokens = await issuer.login();
    mkdirSync(join(dir, ".config", "kedge"), { recursive: true, mode: 0o700 });
    writeFileSync(oidcCacheFile, JSON.stringify({ id_token: tokens.idToken, refresh_token: tokens.refreshToken, expiry: new Date(Date.now() - 60_000).toISOString() }), { mode: 0o600 });
  };
  await seedOidcCache();

  const url = (port: number) => `https://localhost:${port}`;
  const cluster = (c: { kedge: Running; port: number; adminPort: number }, http: Upstream, grpc: GreeterServer): Cluster => ({ url: url(c.port), port: c.port, adminPort: c.adminPort, kedge: c.kedge, http, grpc });
  return {
    pki,
    dir,
    cluster1: { ...cluster(one, http1, grpc1), caFile: pki.caFile, clientCertFile: pki.clientCertFile, clientKeyFile: pki.clientKeyFile },
    cluster2: { ...cluster(two, http2, grpc2), issuer, oidcSource, oidcCacheFile },
    hosts: clusterHosts,
    tokenFile,
    options: (extra = {}) => ({
      home: dir,
      routes: [
        { regexp: { exp: "^(?P<service>[a-z0-9-]+)[.]cluster-1[.]internal[.]example[.]com$", url: url(one.port) }, backend_auth: "backend-token" },
        { regexp: { exp: "^(?P<service>[a-z0-9-]+)[.]cluster-2[.]internal[.]example[.]com$", url: url(two.port) }, proxy_auth: "sso-cluster-2" },
      ],
      auth_sources: [{ name: "backend-token", kube: { user: "backend", path: kubeconfig } }, oidcSource],
      tls: { ca_files: [pki.caFile], client_cert_file: pki.clientCertFile, client_key_file: pki.clientKeyFile },
      ...extra,
    }),
    seedOidcCache,
    async stop() {
      for (const k of [one.kedge, two.kedge]) k.proc.kill("SIGKILL");
      await Promise.all([one.kedge.proc.exited, two.kedge.proc.exited]);
      await Promise.all([http1.close(), http2.close(), grpc1.close(), grpc2.close(), issuer.close()]);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
