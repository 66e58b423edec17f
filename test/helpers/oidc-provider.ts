import { createHash, randomBytes } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import Provider from "oidc-provider";
import { exportJWK, generateKeyPair } from "jose";

export interface OidcProviderIssuer {
  /** The issuer URL (http://127.0.0.1:PORT): tokens' `iss`, and where discovery is served. */
  url: string;
  /** The confidential client kedge verifies tokens for (`aud`) and winch's oidc source refreshes as. */
  client: { id: string; secret: string };
  /** Token endpoint grants served so far, by grant type ("authorization_code", "refresh_token"). */
  readonly grants: readonly string[];
  /** Logs `login` in through the provider's own login and consent pages and returns its tokens. */
  login(login?: string): Promise<{ idToken: string; refreshToken: string; expiresIn: number }>;
  close(): Promise<void>;
}

const redirectUri = "http://127.0.0.1/callback";
const form = { "content-type": "application/x-www-form-urlencoded" };

/**
 * The real `oidc-provider` package on 127.0.0.1 with its development login pages: any login name
 * signs in. Tokens come from a genuine authorization code flow (PKCE, login, consent with
 * offline_access) driven over HTTP with a cookie jar, so refresh tokens are the provider's own.
 */
export async function startOidcProvider(options: { idTokenTtlSeconds?: number } = {}): Promise<OidcProviderIssuer> {
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const client = { id: "kedge-client", secret: `secret-${randomBytes(8).toString("hex")}` };
  const { privateKey } = await generateKeyPair("RS256", { extractable: true });
  const ttl = (seconds: number) => () => seconds;
  const provider = new Provider(url, {
    clients: [
      {
        client_id: client.id,
        client_secret: client.secret,
        grant_types: ["authorization_code", "refresh_token"],
        redirect_uris: [redirectUri],
        // winch's OIDC client posts its secret unless discovery offers only Basic.
        token_endpoint_auth_method: "client_secret_post",
      },
    ],
    jwks: { keys: [{ ...(await exportJWK(privateKey)), kid: "test-rs256", alg: "RS256", use: "sig" }] },
    features: { devInteractions: { enabled: true } },
    scopes: ["openid", "offline_access"],
    findAccount: (_ctx: unknown, sub: string) => ({ accountId: sub, claims: () => ({ sub }) }),
    ttl: {
      IdToken: options.idTokenTtlSeconds ?? 300,
      AccessToken: ttl(300),
      AuthorizationCode: ttl(60),
      RefreshToken: ttl(3600),
      Grant: ttl(3600),
      Interaction: ttl(300),
      Session: ttl(3600),
    },
  });
  const grants: string[] = [];
  provider.on("grant.success", (ctx: { oidc: { params: { grant_type: string } } }) => grants.push(ctx.oidc.params.grant_type));
  server.on("request", provider.callback());

  async function login(name = "alice") {
    const jar = new Map<string, string>();
    const go = async (target: string, init: RequestInit = {}) => {
      const cookie = [...jar].map(([k, v]) => `${k}=${v}`).join("; ");
      const res = await fetch(new URL(target, url), { ...init, redirect: "manual", headers: { ...(init.headers as Record<string, string>), cookie } });
      for (const set of res.headers.getSetCookie()) {
        const pair = set.split(";")[0]!;
        const at = pair.indexOf("=");
        const [key, value] = [pair.slice(0, at), pair.slice(at + 1)];
        if (value === "" || /expires=Thu, 01 Jan 1970/i.test(set)) jar.delete(key);
        else jar.set(key, value);
      }
      return res;
    };
    const verifier = randomBytes(32).toString("base64url");
    const authorize = new URL("/auth", url);
    for (const [k, v] of Object.entries({
      client_id: client.id,
      response_type: "code",
      scope: "openid offline_access",
      prompt: "consent",
      redirect_uri: redirectUri,
      code_challenge: createHash("sha256").update(verifier).digest("base64url"),
      code_challenge_method: "S256",
      state: randomBytes(8).toString("hex"),
    })) {
      authorize.searchParams.set(k, v);
    }
    let res = await go(authorize.href);
    // /auth → login page → /auth/:uid → consent page → /auth/:uid → redirect_uri?code=…
    for (let step = 0; step < 8; step++) {
      const location = res.headers.get("location");
      if (!location) throw new Error(`oidc-provider login: ${res.status} without a redirect: ${await res.text()}`);
      if (location.startsWith(redirectUri)) {
        const code = new URL(location).searchParams.get("code");
        if (!code) throw new Error(`oidc-provider login: ${location}`);
        const token = await fetch(new URL("/token", url), {
          method: "POST",
          headers: form,
          body: new URLSearchParams({ grant_type: "authorization_code", code, redirect_uri: redirectUri, code_verifier: verifier, client_id: client.id, client_secret: client.secret }),
        });
        const body = (await token.json()) as { id_token?: string; refresh_token?: string; expires_in?: number; error?: string };
        if (!body.id_token || !body.refresh_token) throw new Error(`oidc-provider token endpoint: ${token.status} ${JSON.stringify(body)}`);
        return { idToken: body.id_token, refreshToken: body.refresh_token, expiresIn: body.expires_in ?? 0 };
      }
      if (new URL(location, url).pathname.startsWith("/interaction/")) {
        const page = await (await go(location)).text();
        const prompt = /name="prompt" value="(\w+)"/.exec(page)?.[1];
        if (!prompt) throw new Error(`oidc-provider interaction page without a prompt: ${page.slice(0, 200)}`);
        const fields: Record<string, string> = prompt === "login" ? { prompt, login: name, password: "any" } : { prompt };
        res = await go(location, { method: "POST", headers: form, body: new URLSearchParams(fields) });
      } else {
        res = await go(location);
      }
    }
    throw new Error("oidc-provider login: too many redirects");
  }

  return {
    url,
    client,
    grants,
    login,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
