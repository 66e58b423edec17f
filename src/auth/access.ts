import { readFileSync } from "node:fs";
import type { AdminAuth, AuthConfig, RouteAuth } from "../gen/kedge/config/v1/auth_pb.js";
import { messageKey } from "../config/message-key.js";
import { unauthorized, type KedgeError } from "../errors.js";
import { peerCertOf } from "../net/peer-cert.js";
import { CallerRefused, type Identity, type TokenIdentity } from "./identity.js";
import { OidcVerifier } from "./oidc.js";
import { authorizeRoute, compileRoutePolicy, requirePermissions, type RoutePolicy } from "./policy.js";
import { StaticToken } from "./static-token.js";

const bearerPrefix = /^bearer /i;

/** The admin port's permissions as a route's rules (a typed literal: a worker loads no message schemas). */
function adminRouteAuth(permissions: string[]): RouteAuth {
  return { $typeName: "kedge.config.v1.RouteAuth", public: false, anyOfPermissions: permissions, allOfPermissions: [], allowedClientSubjects: [], allowedClientSans: [] };
}

/**
 * Authentication and authorization for one config: the authenticators it names (static token,
 * OIDC) and the global policy that routes without rules of their own inherit. Built with the
 * runtime on every reload; the OIDC verifier (and its key cache) is kept while its config is unchanged.
 */
export class AccessControl {
  private readonly staticToken: StaticToken | undefined;
  readonly oidc: OidcVerifier | undefined;
  private readonly whitelist: readonly string[];
  /** Any token authenticator is configured: routes without rules need a valid token. */
  readonly requiresToken: boolean;
  /** The admin port's settings; undefined when it is open. */
  readonly admin: AdminAuth | undefined;
  /** The admin port's own permissions; undefined: the global policy. */
  readonly adminPolicy: RoutePolicy | undefined;

  /** Client CAs are configured, so TLS clients may present certificates. */
  private readonly clientCerts: boolean;
  /** Nothing to check for routes without rules: no authenticator, no client certificates. */
  private readonly open: boolean;

  constructor(config: AuthConfig | undefined, clientCerts: boolean, previous?: AccessControl) {
    this.clientCerts = clientCerts;
    const token = config?.bearerTokenFile ? readFileSync(config.bearerTokenFile, "utf8").trim() : config?.bearerToken;
    this.staticToken = token ? new StaticToken(token) : undefined;
    const oidc = config?.oidc;
    if (oidc && (oidc.providerUrl || oidc.jwksFile || oidc.jwksUrl)) {
      const same = previous?.oidc && !oidc.jwksFile && messageKey(previous.oidc.config) === messageKey(oidc);
      this.oidc = same ? previous.oidc : new OidcVerifier(oidc);
    }
    this.whitelist = config?.whitelistPermissions ?? [];
    this.requiresToken = !!this.staticToken || !!this.oidc;
    this.open = !this.requiresToken && !clientCerts;
    this.admin = config?.admin?.enabled ? config.admin : undefined;
    this.adminPolicy = compileRoutePolicy(adminRouteAuth(this.admin?.permissions ?? []));
  }

  /**
   * Decides one request. Returns undefined when it is allowed without async work (the common
   * no-auth and public-route cases stay off the promise path), a promise of the identity when a
   * token must be verified; throws (or rejects with) KedgeError 401/403.
   */
  /**
   * `proxyAuthorization`: the Proxy-Authorization header (HTTP) or metadata (gRPC); `socket`: the
   * client connection, whose certificate is read only when client CAs are configured. Plain
   * arguments, not an object: this runs on every request.
   */
  check(policy: RoutePolicy | undefined, proxyAuthorization: string | undefined, socket: object | undefined | null): Promise<Identity> | undefined {
    if (policy?.public || (this.open && !policy)) return undefined;
    const peerCert = this.clientCerts ? peerCertOf(socket) : undefined;
    if (peerCert && !peerCert.verified) throw unauthorized(`Verification failed. Client certificate: ${peerCert.reason}.`);
    const cert = peerCert?.identity;
    const needsToken = policy ? policy.needsToken : this.requiresToken;
    if (proxyAuthorization === undefined) {
      if (needsToken) throw unauthorized("Unauthenticated. No Proxy-Authorization header.");
      if (policy) authorizeRoute({ cert }, policy);
      return undefined;
    }
    if (!bearerPrefix.test(proxyAuthorization)) {
      throw unauthorized("Unauthenticated. Proxy-Authorization header does not have Bearer format.");
    }
    if (!this.requiresToken) {
      // A token nobody can verify is not an identity; refusing it says so instead of ignoring it.
      if (needsToken || policy?.needsToken) throw unauthorized("Verification failed. No token authenticator is configured.");
      if (policy) authorizeRoute({ cert }, policy);
      return undefined;
    }
    return this.verifyToken(proxyAuthorization.slice(7).trim()).then((token) => {
      const identity: Identity = { cert, token };
      try {
        if (policy) authorizeRoute(identity, policy);
        else if (token.kind === "jwt") requirePermissions(token.permissions, this.whitelist, []);
      } catch (e) {
        throw new CallerRefused(e as KedgeError, identity);
      }
      return identity;
    });
  }

  private async verifyToken(token: string): Promise<TokenIdentity> {
    if (token === "") throw unauthorized("Unauthenticated. Proxy-Authorization header does not have Bearer format.");
    if (this.staticToken?.matches(token)) return { kind: "static", subject: "static-token", permissions: new Set() };
    if (this.oidc) return this.oidc.verify(token);
    throw unauthorized("Verification failed. Token does not match.");
  }
}
