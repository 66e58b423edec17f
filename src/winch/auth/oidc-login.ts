import { createHash, randomBytes } from "node:crypto";
import { createServer, type Server, type ServerResponse } from "node:http";
import { listen } from "../../server/listen.js";
import { messageOf } from "./errors.js";
import type { OidcClient, TokenSet } from "./oidc-client.js";

export interface LoginOptions {
  readonly client: OidcClient;
  /** Path of the local callback, e.g. "/callback": the redirect_uri is http://127.0.0.1:<port><path>. */
  readonly callbackPath: string;
  /** The callback's port; 0: a free one. */
  readonly callbackPort: number;
  /** The configured scopes (loginScopes adds to them). */
  readonly scopes: readonly string[];
  /** Shows the authorization URL to the user. */
  readonly show: (url: string) => void;
  readonly timeoutMs: number;
  /** Aborts the login (the source is closed). */
  readonly signal: AbortSignal;
}

/**
 * The scopes a login asks for: "openid", the configured ones, and "offline_access" when the issuer
 * lists it. Such issuers (OIDC Core §11) return a refresh token only when it is asked for, and
 * without one every expiry of the id_token means another login in the browser.
 */
export function loginScopes(configured: readonly string[], supported: readonly string[]): string[] {
  const scopes = ["openid", ...configured.filter((s) => s !== "openid")];
  if (supported.includes("offline_access") && !scopes.includes("offline_access")) scopes.push("offline_access");
  return scopes;
}

/** Binds the callback listener, saying which setting to change when its port is taken. */
async function listenForCallback(server: Server, port: number): Promise<number> {
  try {
    return await listen(server, port, "127.0.0.1");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "EADDRINUSE") throw new Error(`the login callback port 127.0.0.1:${port} (login_callback_port) is in use by another program; stop it or configure another port (and register that redirect URI with the issuer)`);
    throw new Error(`the login callback cannot listen on 127.0.0.1:${port}: ${messageOf(e)}`);
  }
}

/**
 * An authorization-code login with PKCE (RFC 7636, S256) and state (RFC 6749 §10.12), answered on
 * a one-shot listener on 127.0.0.1 (RFC 8252 §7.3: loopback redirect, an ephemeral port unless
 * login_callback_port fixes one for an issuer that wants it registered). The first callback decides: a wrong state or an issuer error ends the login.
 */
export async function interactiveLogin(options: LoginOptions): Promise<TokenSet> {
  const { client, callbackPath } = options;
  const endpoints = await client.discover();
  if (!endpoints.authorization) throw new Error("issuer discovery has no authorization_endpoint, so winch cannot run a login");
  const verifier = randomBytes(32).toString("base64url");
  const state = randomBytes(16).toString("base64url");

  const server = createServer();
  const redirectUri = `http://127.0.0.1:${await listenForCallback(server, options.callbackPort)}${callbackPath}`;
  const url = new URL(endpoints.authorization);
  url.searchParams.set("response_type", "code");
  url.searchParams.set("client_id", client.clientId);
  url.searchParams.set("redirect_uri", redirectUri);
  const scopes = loginScopes(options.scopes, endpoints.scopesSupported);
  url.searchParams.set("scope", scopes.join(" "));
  // OIDC Core §11: offline access is asked with prompt=consent, and strict issuers (node
  // oidc-provider among them) drop offline_access without it. Logins are rare: one per lost refresh token.
  if (scopes.includes("offline_access")) url.searchParams.set("prompt", "consent");
  url.searchParams.set("state", state);
  url.searchParams.set("code_challenge", createHash("sha256").update(verifier).digest("base64url"));
  url.searchParams.set("code_challenge_method", "S256");

  return new Promise<TokenSet>((resolve, reject) => {
    let answered = false;
    let settled = false;
    const finish = (outcome: { tokens: TokenSet } | { error: Error }) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      options.signal.removeEventListener("abort", onAbort);
      server.close();
      server.closeAllConnections();
      if ("tokens" in outcome) resolve(outcome.tokens);
      else reject(outcome.error);
    };
    const onAbort = () => finish({ error: new Error("the login was abandoned: winch is shutting down") });
    const timer = setTimeout(() => finish({ error: new Error(`the login was not completed within ${Math.round(options.timeoutMs / 1000)} s; retry to start another`) }), options.timeoutMs);
    timer.unref();
    options.signal.addEventListener("abort", onAbort);
    if (options.signal.aborted) return onAbort();

    server.on("request", (req, res) => {
      const callback = new URL(req.url ?? "/", "http://127.0.0.1");
      if (req.method !== "GET" || callback.pathname !== callbackPath) return void page(res, 404, "Not found.");
      if (answered) return void page(res, 410, "This login is already over.");
      answered = true;
      void answer(callback.searchParams).then(
        (tokens) => page(res, 200, "Logged in. You can close this tab.", () => finish({ tokens })),
        (e: Error) => page(res, 400, `Login failed: ${e.message}`, () => finish({ error: e })),
      );
    });
    options.show(url.href);
  });

  async function answer(params: URLSearchParams): Promise<TokenSet> {
    const error = params.get("error");
    if (error) throw new Error(`the issuer refused the login: ${error}${params.get("error_description") ? `: ${params.get("error_description")!.slice(0, 200)}` : ""}`);
    if (params.get("state") !== state) throw new Error("the login callback's state does not match the login winch started (a stale or forged callback); retry");
    const code = params.get("code");
    if (!code) throw new Error("the login callback has no code");
    try {
      return await client.exchangeCode(code, redirectUri, verifier);
    } catch (e) {
      throw new Error(`exchanging the login's code failed: ${messageOf(e)}`);
    }
  }
}

function page(res: ServerResponse, status: number, text: string, done?: () => void): void {
  res.writeHead(status, { "content-type": "text/plain; charset=utf-8", connection: "close" });
  res.end(`${text}\n`, done);
}
