import { createHmac, randomUUID } from "node:crypto";
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
  close(): Promise<void>;
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
export async function startTestIssuer(options: { audience?: string } = {}): Promise<TestIssuer> {
  const audience = options.audience ?? "kedge";
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
        });
      }
      if (req.method === "GET" && path === "/jwks") {
        jwksFetches++;
        return new Response(jwksJson(), { headers: { "content-type": "application/json" } });
      }
      return new Response("not found\n", { status: 404 });
    },
  });
  url = `http://127.0.0.1:${server.port}`;

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
