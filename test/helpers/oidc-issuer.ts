import { createHash, createHmac, randomBytes, randomUUID } from "node:crypto";
import { mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SignJWT, exportJWK, exportSPKI, generateKeyPair, type CryptoKey, type JWK } from "jose";

type SigningAlg = "RS256" | "ES256";

export interface TestIssuer {
  /** Issuer URL, e.g. http://127.0.0.1:PORT (no trailing slash); the `iss` of tokens it signs. */
  url: string;
  /** Path of a file holding the current public JWKS (for kedge's offline `jwks_file` option); rewritten on rotate(). */
  jwksFile: string;
  /** How many times the JWKS endpoint was fetched (tests check caching and rate-limited refresh). */
  readonly jwksFetches: number;
  /** How many times /.well-known/openid-configuration was fetched. */
  readonly discoveryFetches: number;
  /** Signs a token with the current key of the given algorithm ("RS256" default, or "ES256").
   *  Defaults: iss = url, aud = "kedge", sub = "alice", iat = now, exp = now + 300 s, kid = current key id.
   *  `claims` are merged over the defaults (pass exp/nbf/iat/aud/iss explicitly to override, or `undefined` to drop one);
   *  `header` is merged into the protected header (e.g. a different kid). */
  sign(claims?: Record<string, unknown>, options?: { alg?: SigningAlg; header?: Record<string, unknown> }): Promise<string>;
  /** Generates new RS256 and ES256 keys with new kids; the JWKS then publishes the new keys AND keeps the
   *  previous ones unless `dropOld` is true. Subsequent sign() uses the new keys. */
  rotate(options?: { dropOld?: boolean }): Promise<void>;
  /** Signs with a key that is NOT published in the JWKS (kid unknown to the issuer). */
  signWithUnpublishedKey(claims?: Record<string, unknown>): Promise<string>;
  /** The current RSA public key as PEM (SPKI), for the "HS256 signed with the RSA public key" attack test. */
  rsaPublicKeyPem(): Promise<string>;
  /** The client its token and authorization endpoints accept (options.client; default winch / winch-secret). */
  readonly client: { readonly id: string; readonly secret: string };
  /** How many times the token endpoint was called, whatever the grant or outcome. */
  readonly tokenRequests: number;
  /** Each token request's grant and how the client authenticated, in order. */
  readonly tokenRequestLog: ReadonlyArray<{ grantType: string; clientAuth: "basic" | "post" | "none" }>;
  /** How the token endpoint behaves; tests change it between steps. */
  readonly tokenSettings: TokenSettings;
  /** A refresh token the token endpoint honours (to seed a token cache file); its tokens carry `sub`. */
  issueRefreshToken(sub?: string): string;
  /** Forgets every refresh token issued so far: refreshing with one then answers invalid_grant. */
  revokeRefreshTokens(): void;
  close(): Promise<void>;
}

export interface TokenSettings {
  /** Lifetime of issued id_tokens (exp) and expires_in. Default 300. */
  idTokenTtlSeconds: number;
  /** A refresh grant returns a new refresh token and forgets the old one. Default true. */
  rotateRefreshTokens: boolean;
  /** token_endpoint_auth_methods_supported, enforced. Default ["client_secret_post", "client_secret_basic"]. */
  authMethods: string[];
  /** When set, every token request fails with this status and OAuth error. */
  failWith?: { status: number; error: string; description?: string };
  /**
   * Discovery lists offline_access in scopes_supported and, as Dex does, a login gets a refresh
   * token only when it asked for that scope. Default false: not listed, and a login always gets one.
   */
  offlineAccess: boolean;
}

interface IssuerKey {
  alg: SigningAlg;
  kid: string;
  privateKey: CryptoKey;
  publicKey: CryptoKey;
  publicJwk: JWK;
}

async function newKey(alg: SigningAlg): Promise<IssuerKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const kid = randomUUID();
  // alg and use are published because strict verifiers (kedge included) may refuse a JWK whose
  // declared algorithm does not match the token header, and tests rely on that being possible.
  const publicJwk: JWK = { ...(await exportJWK(publicKey)), kid, alg, use: "sig" };
  return { alg, kid, privateKey, publicKey, publicJwk };
}

function b64url(data: string | Uint8Array): string {
  return Buffer.from(data).toString("base64url");
}

/** Drops keys whose value is `undefined`, so callers can remove a default claim by passing `undefined`. */
function defined(obj: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(obj).filter(([, v]) => v !== undefined));
}

async function signWith(key: IssuerKey, payload: Record<string, unknown>, header: Record<string, unknown> = {}): Promise<string> {
  // alg is forced to the key's algorithm because jose refuses to sign with a mismatched one; tests
  // that need a lying alg header build the token by hand (unsignedToken, hmacToken).
  const protectedHeader = defined({ typ: "JWT", kid: key.kid, ...header, alg: key.alg });
  // jose rejects unknown `crit` extensions at signing time; declaring them lets tests emit tokens with
  // critical extensions that the verifier under test must refuse.
  const crit = Array.isArray(protectedHeader.crit)
    ? Object.fromEntries(protectedHeader.crit.filter((c): c is string => typeof c === "string").map((c) => [c, true]))
    : undefined;
  return new SignJWT(defined(payload)).setProtectedHeader(protectedHeader as { alg: string }).sign(key.privateKey, crit ? { crit } : undefined);
}

/**
 * A real OIDC issuer (discovery document + JWKS over HTTP on 127.0.0.1) so the authenticator is
 * exercised against genuine network fetches, key rotation and signatures rather than mocks. The
 * JWKS is also mirrored to a file for the offline `jwks_file` mode.
 */
export async function startTestIssuer(options: { audience?: string; client?: { id: string; secret: string } } = {}): Promise<TestIssuer> {
  const audience = options.audience ?? "kedge";
  const client = options.client ?? { id: "winch", secret: "winch-secret" };
  const tokenSettings: TokenSettings = { idTokenTtlSeconds: 300, rotateRefreshTokens: true, authMethods: ["client_secret_post", "client_secret_basic"], offlineAccess: false };
  const refreshTokens = new Map<string, string>(); // refresh token → sub
  const codes = new Map<string, { redirectUri: string; challenge: string; sub: string; scopes: string[] }>();
  const tokenRequestLog: Array<{ grantType: string; clientAuth: "basic" | "post" | "none" }> = [];
  const dir = mkdtempSync(join(tmpdir(), "kedge-oidc-"));
  const jwksFile = join(dir, "jwks.json");

  const current: Record<SigningAlg, IssuerKey> = { RS256: await newKey("RS256"), ES256: await newKey("ES256") };
  let published: IssuerKey[] = [current.RS256, current.ES256];
  let unpublished: IssuerKey | undefined;
  let jwksFetches = 0;
  let discoveryFetches = 0;

  const jwksJson = () => JSON.stringify({ keys: published.map((k) => k.publicJwk) });
  const writeJwksFile = () => {
    // Write-then-rename so a watcher reloading jwks_file never sees a half-written document.
    const tmp = `${jwksFile}.${process.pid}.tmp`;
    writeFileSync(tmp, jwksJson());
    renameSync(tmp, jwksFile);
  };
  writeJwksFile();

  let url = "";
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(req) {
      const path = new URL(req.url).pathname;
      if (req.method === "GET" && path === "/.well-known/openid-configuration") {
        discoveryFetches++;
        return Response.json({
          issuer: url,
          jwks_uri: `${url}/jwks`,
          token_endpoint: `${url}/token`,
          authorization_endpoint: `${url}/authorize`,
          id_token_signing_alg_values_supported: ["RS256", "ES256"],
          response_types_supported: ["code"],
          subject_types_supported: ["public"],
          token_endpoint_auth_methods_supported: tokenSettings.authMethods,
          code_challenge_methods_supported: ["S256"],
          scopes_supported: ["openid", "email", "profile", ...(tokenSettings.offlineAccess ? ["offline_access"] : [])],
        });
      }
      if (req.method === "GET" && path === "/authorize") return authorize(new URL(req.url).searchParams);
      if (req.method === "POST" && path === "/token") return token(req);
      if (req.method === "GET" && path === "/jwks") {
        jwksFetches++;
        return new Response(jwksJson(), { headers: { "content-type": "application/json" } });
      }
      return new Response("not found\n", { status: 404 });
    },
  });
  url = `http://127.0.0.1:${server.port}`;

  const oauthError = (status: number, error: string, description?: string) => Response.json({ error, error_description: description }, { status });
  const newRefreshToken = (sub: string) => {
    const rt = `rt-${randomBytes(12).toString("base64url")}`;
    refreshTokens.set(rt, sub);
    return rt;
  };

  // Auto-approves, as a browser with a logged-in session would: straight back to redirect_uri.
  function authorize(q: URLSearchParams): Response {
    const redirectUri = q.get("redirect_uri") ?? "";
    if (q.get("response_type") !== "code" || q.get("client_id") !== client.id || !URL.canParse(redirectUri)) return oauthError(400, "invalid_request");
    if (q.get("code_challenge_method") !== "S256" || !q.get("code_challenge")) return oauthError(400, "invalid_request", "PKCE S256 required");
    const code = `code-${randomBytes(12).toString("base64url")}`;
    codes.set(code, { redirectUri, challenge: q.get("code_challenge")!, sub: "alice", scopes: (q.get("scope") ?? "").split(" ") });
    const back = new URL(redirectUri);
    back.searchParams.set("code", code);
    if (q.get("state") !== null) back.searchParams.set("state", q.get("state")!);
    return Response.redirect(back.href, 302);
  }

  async function token(req: Request): Promise<Response> {
    const form = new URLSearchParams(await req.text());
    const basic = req.headers.get("authorization")?.match(/^Basic (.+)$/)?.[1];
    let id = form.get("client_id");
    let secret = form.get("client_secret");
    let clientAuth: "basic" | "post" | "none" = secret !== null ? "post" : "none";
    if (basic) {
      const [u, p] = Buffer.from(basic, "base64").toString("utf8").split(":");
      [id, secret, clientAuth] = [decodeURIComponent(u ?? ""), decodeURIComponent(p ?? ""), "basic"];
    }
    const grantType = form.get("grant_type") ?? "";
    tokenRequestLog.push({ grantType, clientAuth });
    const failWith = tokenSettings.failWith;
    if (failWith) return oauthError(failWith.status, failWith.error, failWith.description);
    if (clientAuth !== "none" && !tokenSettings.authMethods.includes(`client_secret_${clientAuth}`)) return oauthError(401, "invalid_client", `${clientAuth} not allowed`);
    if (id !== client.id || secret !== client.secret) return oauthError(401, "invalid_client");
    let sub: string;
    let refreshToken: string | undefined;
    if (grantType === "refresh_token") {
      const rt = form.get("refresh_token") ?? "";
      const owner = refreshTokens.get(rt);
      if (owner === undefined) return oauthError(400, "invalid_grant", "refresh token unknown or revoked");
      sub = owner;
      if (tokenSettings.rotateRefreshTokens) {
        refreshTokens.delete(rt);
        refreshToken = newRefreshToken(sub);
      }
    } else if (grantType === "authorization_code") {
      const grant = codes.get(form.get("code") ?? "");
      codes.delete(form.get("code") ?? "");
      if (!grant || grant.redirectUri !== form.get("redirect_uri")) return oauthError(400, "invalid_grant", "code unknown, used, or for another redirect_uri");
      const verifier = form.get("code_verifier") ?? "";
      if (createHash("sha256").update(verifier).digest("base64url") !== grant.challenge) return oauthError(400, "invalid_grant", "PKCE verification failed");
      sub = grant.sub;
      if (!tokenSettings.offlineAccess || grant.scopes.includes("offline_access")) refreshToken = newRefreshToken(sub);
    } else {
      return oauthError(400, "unsupported_grant_type");
    }
    const now = Math.floor(Date.now() / 1000);
    const ttl = tokenSettings.idTokenTtlSeconds;
    const idToken = await signWith(current.RS256, { iss: url, aud: client.id, sub, iat: now, exp: now + ttl });
    return Response.json({ id_token: idToken, access_token: `at-${randomUUID()}`, token_type: "Bearer", expires_in: ttl, refresh_token: refreshToken });
  }

  const defaults = (): Record<string, unknown> => {
    const now = Math.floor(Date.now() / 1000);
    return { iss: url, aud: audience, sub: "alice", iat: now, exp: now + 300 };
  };

  return {
    url,
    jwksFile,
    get jwksFetches() {
      return jwksFetches;
    },
    get discoveryFetches() {
      return discoveryFetches;
    },
    sign(claims = {}, opts = {}) {
      return signWith(current[opts.alg ?? "RS256"], { ...defaults(), ...claims }, opts.header);
    },
    async rotate(opts = {}) {
      const next: Record<SigningAlg, IssuerKey> = { RS256: await newKey("RS256"), ES256: await newKey("ES256") };
      // New keys go first: some verifiers pick the first key matching alg when a token has no kid.
      published = [next.RS256, next.ES256, ...(opts.dropOld ? [] : published)];
      current.RS256 = next.RS256;
      current.ES256 = next.ES256;
      writeJwksFile();
    },
    async signWithUnpublishedKey(claims = {}) {
      unpublished ??= await newKey("RS256");
      return signWith(unpublished, { ...defaults(), ...claims });
    },
    rsaPublicKeyPem() {
      return exportSPKI(current.RS256.publicKey);
    },
    client,
    get tokenRequests() {
      return tokenRequestLog.length;
    },
    tokenRequestLog,
    tokenSettings,
    issueRefreshToken(sub = "alice") {
      return newRefreshToken(sub);
    },
    revokeRefreshTokens() {
      refreshTokens.clear();
    },
    async close() {
      await server.stop(true);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Builds an unsigned token with header {"alg":"none"} (the alg-none attack). */
export function unsignedToken(claims: Record<string, unknown>): string {
  // Trailing "." with an empty signature is the RFC 7519 §6.1 shape, which naive parsers accept.
  return `${b64url(JSON.stringify({ alg: "none", typ: "JWT" }))}.${b64url(JSON.stringify(claims))}.`;
}

/** Builds an HS256 token whose HMAC key is the given bytes/string (e.g. the RSA public key PEM): the key-confusion attack. */
export async function hmacToken(claims: Record<string, unknown>, key: string | Uint8Array, header: Record<string, unknown> = {}): Promise<string> {
  // Hand-rolled rather than jose's SignJWT so that any key (even empty) and any header (even one
  // naming another alg) can be used: the attack tokens must not be limited by a well-behaved signer.
  const input = `${b64url(JSON.stringify({ alg: "HS256", typ: "JWT", ...header }))}.${b64url(JSON.stringify(claims))}`;
  const sig = createHmac("sha256", typeof key === "string" ? Buffer.from(key, "utf8") : key).update(input).digest("base64url");
  return `${input}.${sig}`;
}

/** Returns the token with one character of its payload segment changed, signature kept (tampered payload). */
export function tamper(token: string): string {
  const [header, payload, signature] = token.split(".");
  if (header === undefined || payload === undefined || signature === undefined) throw new Error("tamper: not a compact JWT");
  // Re-encoding a still-valid JSON payload (rather than corrupting bytes) makes sure the verifier
  // rejects the token for its signature, not merely because it could not parse it.
  const claims = JSON.parse(Buffer.from(payload, "base64url").toString("utf8")) as Record<string, unknown>;
  claims.sub = claims.sub === "mallory" ? "mallory2" : "mallory";
  return `${header}.${b64url(JSON.stringify(claims))}.${signature}`;
}
