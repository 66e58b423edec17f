import type { Config } from "../gen/kedge/config/v1/config_pb.js";
import type { Security } from "../gen/kedge/config/v1/backend_pb.js";
import { fileProblem, keyPairProblems } from "./files.js";

/** Every file the config names (certificates, keys, CAs, tokens, JWKS, kubeconfig), checked as kedge will use it. */
export function validateFiles(config: Config): string[] {
  const problems: (string | undefined)[] = [];
  const server = config.server;
  if (server) problems.push(...keyPairProblems("server", "tls_cert_file", server.tlsCertFile, "tls_key_file", server.tlsKeyFile));
  server?.tlsClientCaFiles.forEach((f, i) => problems.push(fileProblem(`server.tls_client_ca_files[${i}]`, f, "certificate")));
  if (config.auth?.bearerTokenFile) problems.push(fileProblem("auth.bearer_token_file", config.auth.bearerTokenFile, "text"));
  if (config.auth?.oidc?.jwksFile) problems.push(fileProblem("auth.oidc.jwks_file", config.auth.oidc.jwksFile, "json"));
  for (const kind of ["http", "grpc"] as const) {
    config[kind]?.backends.forEach((b, i) => {
      problems.push(...securityProblems(`${kind}.backends[${i}].security`, b.security));
      b.failover.forEach((t, j) => {
        if (t.resolver.case !== "kedge") return;
        const tier = t.resolver.value;
        const at = `${kind}.backends[${i}].failover[${j}].kedge`;
        problems.push(...tier.caFiles.map((f, k) => fileProblem(`${at}.ca_files[${k}]`, f, "certificate")));
        problems.push(...keyPairProblems(at, "client_cert_file", tier.clientCertFile, "client_key_file", tier.clientKeyFile));
        if (tier.proxyAuthTokenFile) problems.push(fileProblem(`${at}.proxy_auth_token_file`, tier.proxyAuthTokenFile, "text"));
      });
    });
  }
  const kube = config.kubernetes;
  if (kube?.caFile) problems.push(fileProblem("kubernetes.ca_file", kube.caFile, "certificate"));
  if (kube?.tokenFile) problems.push(fileProblem("kubernetes.token_file", kube.tokenFile, "text"));
  if (kube?.kubeconfigPath) problems.push(fileProblem("kubernetes.kubeconfig_path", kube.kubeconfigPath, "text"));
  return problems.filter((p): p is string => !!p);
}

function securityProblems(at: string, security: Security | undefined): (string | undefined)[] {
  if (!security) return [];
  return [
    ...security.caFiles.map((f, i) => fileProblem(`${at}.ca_files[${i}]`, f, "certificate")),
    ...keyPairProblems(at, "client_cert_file", security.clientCertFile, "client_key_file", security.clientKeyFile),
  ];
}
