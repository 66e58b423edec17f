import { KedgeError } from "../errors.js";
import { AuthSourceError } from "./auth/errors.js";
import type { AuthSource, Credential } from "./auth/source.js";
import { ClientTlsCache } from "./client-tls.js";
import type { Mapping } from "./mapper.js";

/** What winch adds to a request for its route: headers in place of the client's, and the client cert for kedge. */
export interface Injection {
  /** Lower-case names: authorization (backend_auth) and proxy-authorization (proxy_auth); the same for gRPC metadata. */
  headers: Record<string, string> | undefined;
  clientCert: Credential["clientCert"];
}

const none: Injection = { headers: undefined, clientCert: undefined };

function authError(source: string, message: string): KedgeError {
  return new KedgeError("auth-source", 502, `auth source "${source}": ${message}`);
}

/** A header value winch is about to send must not be able to split the request. */
function headerValue(source: string, value: string): string {
  if (/[\r\n\0]/.test(value)) throw authError(source, "credential contains a line break");
  return value;
}

/**
 * Resolves a route's backend_auth and proxy_auth sources, and its client_tls, into what to inject.
 * The client certificate presented to kedge is proxy_auth's when its source gives one (the user's
 * own identity), else the route's client_tls, else (clientCert undefined) winch's server.client_cert_file.
 */
export class CredentialInjector {
  private readonly clientTls = new ClientTlsCache();

  constructor(private readonly sources: ReadonlyMap<string, AuthSource>) {}

  private async credential(name: string): Promise<Credential> {
    const source = this.sources.get(name);
    if (!source) throw authError(name, "not configured");
    try {
      return await source.credential();
    } catch (e) {
      if (e instanceof AuthSourceError) throw new KedgeError("auth-source", 502, e.message);
      throw authError(name, (e as Error).message);
    }
  }

  /** Resolves at once (no promise) when the route names no auth source; never throws, rejects instead. */
  inject(mapping: Mapping, withBackendAuth = true): Injection | Promise<Injection> {
    const backend = withBackendAuth ? mapping.backendAuth : "";
    const proxy = mapping.proxyAuth;
    if (backend || proxy) return this.resolve(backend, proxy, mapping);
    if (!mapping.clientTls) return none;
    try {
      return { headers: undefined, clientCert: this.routeCert(mapping) };
    } catch (e) {
      // Failures reject in every case, so a caller handles them in one place.
      return Promise.reject(e);
    }
  }

  private routeCert(mapping: Mapping): Credential["clientCert"] {
    return mapping.clientTls && this.clientTls.identity(mapping.clientTls, mapping.routeIndex);
  }

  private async resolve(backendName: string, proxyName: string, mapping: Mapping): Promise<Injection> {
    const [backend, proxy] = await Promise.all([backendName ? this.credential(backendName) : undefined, proxyName ? this.credential(proxyName) : undefined]);
    const headers: Record<string, string> = {};
    if (backend) {
      if (!backend.header) throw authError(backendName, "gives only a client certificate, which kedge cannot pass to the backend: use it as proxy_auth");
      headers.authorization = headerValue(backendName, backend.header);
    }
    if (proxy?.header) headers["proxy-authorization"] = headerValue(proxyName, proxy.header);
    return { headers: Object.keys(headers).length > 0 ? headers : undefined, clientCert: proxy?.clientCert ?? this.routeCert(mapping) };
  }
}
