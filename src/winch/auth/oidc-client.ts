import { decodeJwt } from "jose";
import { messageOf } from "./errors.js";

const requestTimeoutMs = 10_000;

/** Tokens from an issuer's token endpoint; expiresAt (epoch ms) is when the id_token stops being usable. */
export interface TokenSet {
  readonly idToken: string;
  readonly refreshToken?: string;
  readonly expiresAt: number;
}

interface Endpoints {
  readonly token: string;
  readonly authorization?: string;
  /** The discovery document's scopes_supported; empty when it lists none. */
  readonly scopesSupported: readonly string[];
  /** client_secret_post unless discovery offers only client_secret_basic. */
  readonly basicAuth: boolean;
}

/** The token endpoint answered with an OAuth error (RFC 6749 §5.2); `code` is e.g. "invalid_grant". */
export class TokenEndpointError extends Error {
  constructor(
    readonly code: string | undefined,
    message: string,
  ) {
    super(message);
    this.name = "TokenEndpointError";
  }
}

/** An OIDC relying party: the issuer's endpoints (discovered once) and its token endpoint grants. */
export class OidcClient {
  private endpoints: Promise<Endpoints> | undefined;

  constructor(
    readonly issuer: string,
    readonly clientId: string,
    private readonly secret: string,
  ) {}

  /** The discovery document's endpoints; fetched once, again after a failure. */
  discover(): Promise<Endpoints> {
    if (!this.endpoints) {
      this.endpoints = this.fetchEndpoints();
      this.endpoints.catch(() => {
        this.endpoints = undefined;
      });
    }
    return this.endpoints;
  }

  refresh(refreshToken: string): Promise<TokenSet> {
    return this.tokenRequest({ grant_type: "refresh_token", refresh_token: refreshToken });
  }

  exchangeCode(code: string, redirectUri: string, codeVerifier: string): Promise<TokenSet> {
    return this.tokenRequest({ grant_type: "authorization_code", code, redirect_uri: redirectUri, code_verifier: codeVerifier });
  }

  private async fetchEndpoints(): Promise<Endpoints> {
    const issuer = this.issuer.replace(/\/+$/, "");
    const url = `${issuer}/.well-known/openid-configuration`;
    const doc = (await getJson(url, { signal: AbortSignal.timeout(requestTimeoutMs) }, "issuer discovery")) as Record<string, unknown>;
    // OIDC Discovery §4.3: the document must name the issuer it was fetched from.
    if (typeof doc.issuer !== "string" || doc.issuer.replace(/\/+$/, "") !== issuer) throw new Error(`issuer discovery at ${url} names issuer "${String(doc.issuer)}"`);
    if (typeof doc.token_endpoint !== "string") throw new Error(`issuer discovery at ${url} has no token_endpoint`);
    const methods = doc.token_endpoint_auth_methods_supported;
    const basicOnly = Array.isArray(methods) && methods.includes("client_secret_basic") && !methods.includes("client_secret_post");
    return {
      token: doc.token_endpoint,
      authorization: typeof doc.authorization_endpoint === "string" ? doc.authorization_endpoint : undefined,
      scopesSupported: Array.isArray(doc.scopes_supported) ? doc.scopes_supported.filter((s): s is string => typeof s === "string") : [],
      basicAuth: basicOnly,
    };
  }

  private async tokenRequest(params: Record<string, string>): Promise<TokenSet> {
    const endpoints = await this.discover();
    const body = new URLSearchParams(params);
    const headers: Record<string, string> = { "content-type": "application/x-www-form-urlencoded", accept: "application/json" };
    if (this.secret && endpoints.basicAuth) {
      // RFC 6749 §2.3.1: id and secret are form-encoded before they are joined and base64-encoded.
      const pair = `${encodeURIComponent(this.clientId)}:${encodeURIComponent(this.secret)}`;
      headers.authorization = `Basic ${Buffer.from(pair).toString("base64")}`;
    } else {
      body.set("client_id", this.clientId);
      if (this.secret) body.set("client_secret", this.secret);
    }
    let res: Response;
    try {
      res = await fetch(endpoints.token, { method: "POST", headers, body, signal: AbortSignal.timeout(requestTimeoutMs) });
    } catch (e) {
      throw new Error(`token endpoint ${endpoints.token} unreachable: ${messageOf(e)}`);
    }
    const doc = (await res.json().catch(() => ({}))) as Record<string, unknown>;
    if (!res.ok) {
      const code = typeof doc.error === "string" ? doc.error : undefined;
      // The issuer's own words help, but must not echo what we sent it (a refresh token, a code).
      const secrets = [...Object.values(params), this.secret].filter((s) => s.length >= 8);
      const description = typeof doc.error_description === "string" ? scrub(doc.error_description.slice(0, 200), secrets) : "";
      throw new TokenEndpointError(code, `token endpoint answered ${res.status}${code ? ` ${scrub(code, secrets)}` : ""}${description ? `: ${description}` : ""}`);
    }
    if (typeof doc.id_token !== "string") throw new Error("token endpoint answered without an id_token (is the openid scope granted?)");
    return {
      idToken: doc.id_token,
      refreshToken: typeof doc.refresh_token === "string" && doc.refresh_token !== "" ? doc.refresh_token : undefined,
      expiresAt: expiryOf(doc.id_token, typeof doc.expires_in === "number" ? doc.expires_in : undefined),
    };
  }
}

/** When an id_token stops being usable: the sooner of its exp claim and the response's expires_in. */
export function expiryOf(idToken: string, expiresInSeconds?: number): number {
  let exp: number | undefined;
  try {
    const claim = decodeJwt(idToken).exp;
    if (typeof claim === "number") exp = claim * 1000;
  } catch {
    throw new Error("the id_token is not a JWT");
  }
  const fromResponse = expiresInSeconds !== undefined && expiresInSeconds > 0 ? Date.now() + expiresInSeconds * 1000 : undefined;
  if (exp === undefined && fromResponse === undefined) throw new Error("the id_token has no exp claim and the response no expires_in");
  return Math.min(exp ?? Infinity, fromResponse ?? Infinity);
}

async function getJson(url: string, init: RequestInit, what: string): Promise<unknown> {
  let res: Response;
  try {
    res = await fetch(url, init);
  } catch (e) {
    throw new Error(`${what} at ${url} unreachable: ${messageOf(e)}`);
  }
  if (!res.ok) throw new Error(`${what} at ${url} answered ${res.status}`);
  try {
    return await res.json();
  } catch {
    throw new Error(`${what} at ${url} did not answer JSON`);
  }
}

function scrub(text: string, secrets: readonly string[]): string {
  return secrets.reduce((t, s) => t.split(s).join("…"), text);
}
