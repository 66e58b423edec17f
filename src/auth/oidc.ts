import { readFileSync } from "node:fs";
import { createLocalJWKSet, createRemoteJWKSet, customFetch, errors as joseErrors, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from "jose";
import type { OidcAuth } from "../gen/kedge/config/v1/auth_pb.js";
import { durationMs } from "../config/duration.js";
import { authUnavailable, unauthorized } from "../errors.js";
import { log } from "../observe/log.js";
import type { TokenIdentity } from "./identity.js";

export const defaultAlgorithms = ["RS256", "ES256"];
const defaultSkewMs = 30_000;
const defaultRefreshMs = 30_000;
const defaultMaxTokenBytes = 8192;
const discoveryRetryMs = 5_000;

/** The issuer, not the token, failed: its keys could not be fetched. */
class KeysUnavailable extends Error {}

/** jose's fetch of the JWKS, failing with KeysUnavailable so that an outage is told from a bad token. */
async function fetchKeys(url: string, init: RequestInit): Promise<Response> {
  let res: Response;
  try {
    res = await fetch(url, init);
  } catch (e) {
    throw new KeysUnavailable((e as Error).name === "TimeoutError" ? "JWKS endpoint did not answer in time" : `JWKS endpoint cannot be reached: ${(e as Error).message}`);
  }
  if (res.status !== 200) throw new KeysUnavailable(`JWKS endpoint answered ${res.status}`);
  return res;
}

/**
 * Verifies JWTs from one OIDC issuer with jose: keys from the issuer's discovery document (or a
 * pinned JWKS URL, or a local JWKS file for offline clusters), cached, and refetched when a token
 * names an unknown key id, at most once per refresh interval (jose's cooldown), so a flood of
 * forged kids cannot turn kedge into a JWKS fetch amplifier.
 */
export class OidcVerifier {
  private keys: JWTVerifyGetKey | undefined;
  private discovery: Promise<JWTVerifyGetKey> | undefined;
  private discoveryFailedAt = 0;
  private keysWarnedAt = 0;
  private readonly algorithms: string[];
  private readonly skewSeconds: number;
  private readonly maxTokenBytes: number;
  private readonly refreshMs: number;

  constructor(readonly config: OidcAuth) {
    this.algorithms = config.allowedAlgorithms.length > 0 ? [...config.allowedAlgorithms] : defaultAlgorithms;
    this.skewSeconds = durationMs(config.clockSkew, defaultSkewMs) / 1000;
    this.maxTokenBytes = config.maxTokenBytes || defaultMaxTokenBytes;
    this.refreshMs = durationMs(config.jwksRefreshInterval, defaultRefreshMs);
    if (config.jwksFile) this.keys = createLocalJWKSet(JSON.parse(readFileSync(config.jwksFile, "utf8")));
    else if (config.jwksUrl) this.keys = this.remote(config.jwksUrl);
    else void this.discover().catch(() => {}); // warm, as backends are: the first caller should not wait
  }

  private remote(url: string): JWTVerifyGetKey {
    return createRemoteJWKSet(new URL(url), { cooldownDuration: this.refreshMs, cacheMaxAge: 10 * 60_000, timeoutDuration: 5_000, [customFetch]: fetchKeys });
  }

  /** Fetches /.well-known/openid-configuration once; after a failure, again no sooner than discoveryRetryMs. */
  private discover(): Promise<JWTVerifyGetKey> {
    if (this.keys) return Promise.resolve(this.keys);
    if (this.discovery) return this.discovery;
    if (performance.now() - this.discoveryFailedAt < discoveryRetryMs && this.discoveryFailedAt > 0) {
      return Promise.reject(new Error("issuer discovery failed recently"));
    }
    const issuer = this.config.providerUrl.replace(/\/+$/, "");
    this.discovery = (async () => {
      const res = await fetch(`${issuer}/.well-known/openid-configuration`, { signal: AbortSignal.timeout(5_000) });
      if (!res.ok) throw new Error(`issuer discovery answered ${res.status}`);
      const doc = (await res.json()) as { issuer?: string; jwks_uri?: string };
      // OIDC Discovery §4.3: the document must name the issuer it was fetched from.
      if (doc.issuer?.replace(/\/+$/, "") !== issuer) throw new Error(`issuer discovery names issuer "${doc.issuer}", expected "${issuer}"`);
      if (!doc.jwks_uri) throw new Error("issuer discovery has no jwks_uri");
      this.keys = this.remote(doc.jwks_uri);
      return this.keys;
    })();
    this.discovery.catch((e: Error) => {
      this.discovery = undefined;
      this.discoveryFailedAt = performance.now();
      log.warn("OIDC issuer discovery failed", { issuer, error: e.message });
    });
    return this.discovery;
  }

  /**
   * Verifies a token; throws KedgeError(unauthorized) saying why, never echoing the token, or
   * KedgeError(auth-unavailable) when the issuer's keys cannot be had.
   */
  async verify(token: string): Promise<TokenIdentity> {
    if (token.length > this.maxTokenBytes) throw unauthorized(`Verification failed. Token is longer than ${this.maxTokenBytes} bytes.`);
    let keys: JWTVerifyGetKey;
    try {
      keys = await this.discover();
    } catch (e) {
      throw authUnavailable(`Cannot verify the token now: the issuer's discovery failed (${(e as Error).message}).`);
    }
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, keys, {
        issuer: this.config.providerUrl.replace(/\/+$/, "") || undefined,
        audience: this.config.clientId || undefined,
        algorithms: this.algorithms,
        clockTolerance: this.skewSeconds,
        requiredClaims: ["exp"],
      }));
    } catch (e) {
      if (e instanceof KeysUnavailable || e instanceof joseErrors.JWKSTimeout) {
        // One line per retry interval: in an outage every request with a token fails the same way.
        if (performance.now() - this.keysWarnedAt >= discoveryRetryMs) {
          this.keysWarnedAt = performance.now();
          log.warn("OIDC issuer keys unavailable", { issuer: this.config.providerUrl, error: e.message });
        }
        throw authUnavailable(`Cannot verify the token now: the issuer's keys are unavailable (${e.message}).`);
      }
      throw unauthorized(`Verification failed. ${describe(e)}`);
    }
    // jose checks iat only with maxTokenAge; a token issued in the future is as wrong as one not yet valid.
    if (typeof payload.iat === "number" && payload.iat > Date.now() / 1000 + this.skewSeconds) {
      throw unauthorized('Verification failed. "iat" claim is in the future.');
    }
    return { kind: "jwt", subject: String(payload.sub ?? ""), permissions: permissionsOf(payload, this.config.permsClaim) };
  }
}

function describe(e: unknown): string {
  if (e instanceof joseErrors.JWKSNoMatchingKey) return "No key of the issuer matches the token (unknown kid).";
  if (e instanceof joseErrors.JOSEAlgNotAllowed) return "Token algorithm is not allowed.";
  if (e instanceof joseErrors.JWSSignatureVerificationFailed) return "Signature is invalid.";
  if (e instanceof joseErrors.JOSEError) return `${e.message.replace(/\.$/, "")}.`;
  return "Token is malformed.";
}

/** Permissions from a claim holding a list, or a space-separated string as OAuth scopes are. */
function permissionsOf(payload: JWTPayload, claim: string): ReadonlySet<string> {
  if (!claim) return new Set();
  const value = payload[claim];
  if (Array.isArray(value)) return new Set(value.filter((v): v is string => typeof v === "string"));
  if (typeof value === "string") return new Set(value.split(" ").filter(Boolean));
  return new Set();
}
