import type { TestPki } from "./certs.ts";

// Two clusters for failover, as config objects (test/failover.test.ts runs them in-process,
// bench/failover.ts as binaries): cluster-1's kedge serves its own upstreams and fails over to
// cluster-2's kedge, which lets in only the test CA's client certificates bearing its token.

/** The host both kedges route HTTP by: cluster-2's kedge routes the request cluster-1's sent on by it. */
export const echoHost = "echo.example.com";
export const greeterService = "e2e.helloworld.Greeter";

const loopback = { bind_address: "127.0.0.1", admin_port: 0, log_level: "error" };

/** cluster-2's kedge on a TLS port: mTLS with the test CA, and the bearer token in `tokenFile`. */
export function cluster2Config(pki: TestPki, tokenFile: string, httpPort: number, grpcPort: number, server: Record<string, unknown> = {}) {
  return {
    server: {
      ...loopback,
      http_tls_port: 0,
      tls_cert_file: pki.serverCertFile,
      tls_key_file: pki.serverKeyFile,
      tls_client_ca_files: [pki.caFile],
      tls_client_cert_required: true,
      ...server,
    },
    auth: { bearer_token_file: tokenFile },
    http: { backends: [{ name: "echo", static: { addresses: [`127.0.0.1:${httpPort}`] } }], routes: [{ backend_name: "echo", host_matcher: echoHost }] },
    grpc: { backends: [{ name: "greeter", static: { addresses: [`127.0.0.1:${grpcPort}`] } }], routes: [{ backend_name: "greeter", service_name_matcher: greeterService }] },
  };
}

/** The failover tier reaching a kedge at `url` (https://localhost:PORT) with the test client certificate and the token. */
export function kedgeTier(pki: TestPki, tokenFile: string, url: string) {
  return { kedge: { url, ca_files: [pki.caFile], client_cert_file: pki.clientCertFile, client_key_file: pki.clientKeyFile, proxy_auth_token_file: tokenFile } };
}

/**
 * cluster-1's kedge on plaintext HTTP and h2c: each backend is its own upstream, then `tier`. A dead
 * endpoint is retried after 100 ms at first (doubling while it stays dead), so traffic returns soon.
 */
export function cluster1Config(httpPort: number, grpcPort: number, tier: object, extra: { server?: Record<string, unknown>; observability?: object } = {}) {
  return {
    server: { ...loopback, http_port: 0, h2c_port: 0, ...extra.server },
    http: {
      backends: [{ name: "echo", static: { addresses: [`127.0.0.1:${httpPort}`] }, failure_backoff: "0.1s", failover: [tier] }],
      routes: [{ backend_name: "echo", host_matcher: echoHost }],
    },
    grpc: {
      backends: [{ name: "greeter", static: { addresses: [`127.0.0.1:${grpcPort}`] }, failover: [tier] }],
      routes: [{ backend_name: "greeter", service_name_matcher: greeterService }],
    },
    ...(extra.observability ? { observability: extra.observability } : {}),
  };
}
