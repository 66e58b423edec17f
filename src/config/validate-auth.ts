import type { Config } from "../gen/kedge/config/v1/config_pb.js";
import type { RouteAuth } from "../gen/kedge/config/v1/auth_pb.js";
import { durationMs } from "./duration.js";

/** Signature algorithms kedge verifies: asymmetric only, so a public key can never serve as an HMAC secret. */
export const verifiableAlgorithms = new Set(["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]);

/** Checks the auth section and the routes' auth rules against what is configured. Returns "path: problem" lines. */
export function validateAuth(config: Config): string[] {
  const problems: string[] = [];
  const auth = config.auth;
  const oidc = auth?.oidc;
  const clientCas = (config.server?.tlsClientCaFiles.length ?? 0) > 0;
  const permsClaim = !!oidc?.permsClaim;
  if (oidc) {
    if (!oidc.providerUrl && !oidc.jwksFile && !oidc.jwksUrl) problems.push("auth.oidc: needs provider_url, jwks_url or jwks_file");
    if (oidc.providerUrl && !URL.canParse(oidc.providerUrl)) problems.push(`auth.oidc.provider_url: "${oidc.providerUrl}" is not a URL`);
    if (oidc.jwksUrl && !URL.canParse(oidc.jwksUrl)) problems.push(`auth.oidc.jwks_url: "${oidc.jwksUrl}" is not a URL`);
    if (!oidc.clientId) problems.push("auth.oidc.client_id: required (the audience tokens must carry)");
    oidc.allowedAlgorithms.forEach((alg, i) => {
      if (!verifiableAlgorithms.has(alg)) {
        problems.push(`auth.oidc.allowed_algorithms[${i}]: "${alg}" is refused; use one of ${[...verifiableAlgorithms].join(", ")} ("none" and HMAC are never accepted)`);
      }
    });
    if (durationMs(oidc.clockSkew, 0) > 300_000) problems.push("auth.oidc.clock_skew: at most 5m");
  }
  if (auth?.bearerToken && auth.bearerTokenFile) problems.push("auth.bearer_token_file: set bearer_token or bearer_token_file, not both");
  if ((auth?.whitelistPermissions.length ?? 0) > 0 && !permsClaim) {
    problems.push("auth.whitelist_permissions: needs auth.oidc with perms_claim (static tokens carry no permissions)");
  }
  // The admin port is plaintext, so client certificates cannot guard it: a token authenticator must.
  const tokenAuthenticator = !!oidc || !!auth?.bearerToken || !!auth?.bearerTokenFile;
  if (auth?.admin?.enabled && !tokenAuthenticator) problems.push("auth.admin.enabled: needs a token authenticator (auth.oidc or auth.bearer_token)");
  if ((auth?.admin?.permissions.length ?? 0) > 0 && !permsClaim) problems.push("auth.admin.permissions: needs auth.oidc with perms_claim");

  const checkRoute = (where: string, rules: RouteAuth | undefined) => {
    if (!rules) return;
    const permissions = rules.anyOfPermissions.length + rules.allOfPermissions.length > 0;
    const certRules = rules.allowedClientSubjects.length + rules.allowedClientSans.length > 0;
    if (rules.public && (permissions || certRules)) problems.push(`${where}.public: a public route has no other rules`);
    if (permissions && !permsClaim) problems.push(`${where}: permission rules need auth.oidc with perms_claim`);
    if (certRules && !clientCas) problems.push(`${where}: client certificate rules need server.tls_client_ca_files`);
  };
  config.http?.routes.forEach((r, i) => checkRoute(`http.routes[${i}].auth`, r.auth));
  config.grpc?.routes.forEach((r, i) => checkRoute(`grpc.routes[${i}].auth`, r.auth));
  return problems;
}
