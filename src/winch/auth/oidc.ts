import { join } from "node:path";
import type { OIDCAccess } from "../../gen/kedge/winch/v1/winch_pb.js";
import { AuthSourceError, messageOf } from "./errors.js";
import { OidcClient, TokenEndpointError, type TokenSet } from "./oidc-client.js";
import { interactiveLogin } from "./oidc-login.js";
import { TokenCacheFile } from "./oidc-token-cache.js";
import type { AuthSource, Credential } from "./source.js";

/** Callers get a token valid for at least this long; sooner than that, it is refreshed first. */
const minValidityMs = 60_000;
/** The background refresh runs this long before expiry, ahead of callers, so they rarely wait. */
const backgroundLeadMs = 90_000;
const loginTimeoutMs = 5 * 60_000;
const maxTimerMs = 2 ** 31 - 1;

export interface OidcSourceOptions {
  readonly home: string;
  readonly log: (msg: string) => void;
  readonly openBrowser?: (url: string) => void;
}

/** No usable refresh token: only a login helps. */
class LoginRequired extends Error {}

/**
 * An OIDC id_token kept fresh with the refresh-token grant, stored in a 0600 cache file between
 * runs, refreshed in the background before it expires; when there is no usable refresh token, an
 * interactive login (with login_callback_path) gets new ones. One refresh or login at a time,
 * shared by every caller.
 */
export class OidcSource implements AuthSource {
  readonly cacheFile: TokenCacheFile;
  private readonly client: OidcClient;
  private current: { tokens: TokenSet; ready: Promise<Credential> } | undefined;
  private obtaining: Promise<Credential> | undefined;
  private refreshing: Promise<TokenSet> | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private readonly closed = new AbortController();

  constructor(
    readonly name: string,
    private readonly access: OIDCAccess,
    private readonly options: OidcSourceOptions,
  ) {
    this.cacheFile = new TokenCacheFile(access.path ? expandHome(access.path, options.home) : defaultCachePath(options.home, name));
    this.client = new OidcClient(access.provider, access.clientId, access.secret);
    const stored = this.cacheFile.load();
    if (stored) this.use(stored);
  }

  credential(): Promise<Credential> {
    const current = this.current;
    if (current && current.tokens.expiresAt - Date.now() > minValidityMs) return current.ready;
    this.obtaining ??= this.obtain().finally(() => {
      this.obtaining = undefined;
    });
    return this.obtaining;
  }

  close(): void {
    clearTimeout(this.timer);
    this.closed.abort();
  }

  private async obtain(): Promise<Credential> {
    try {
      return this.use(await this.refresh()).ready;
    } catch (e) {
      if (!(e instanceof LoginRequired)) throw new AuthSourceError(this.name, `refreshing the OIDC token failed: ${messageOf(e)}`);
      if (!this.access.loginCallbackPath) {
        throw new AuthSourceError(this.name, `${e.message}; run the login: set oidc.login_callback_path so winch can open it in a browser, then retry`);
      }
    }
    try {
      return this.use(this.store(await this.login())).ready;
    } catch (e) {
      throw new AuthSourceError(this.name, `OIDC login failed: ${messageOf(e)}`);
    }
  }

  /** Refreshes with the stored refresh token; the background timer and callers share one request. */
  private refresh(): Promise<TokenSet> {
    this.refreshing ??= (async () => {
      // The file is the truth: another winch, or a login, may have stored newer tokens.
      const stored = this.cacheFile.load() ?? this.current?.tokens;
      if (stored && stored.idToken !== this.current?.tokens.idToken && stored.expiresAt - Date.now() > minValidityMs) return stored;
      if (!stored?.refreshToken) throw new LoginRequired(`no OIDC refresh token in ${this.cacheFile.path}`);
      let fresh: TokenSet;
      try {
        fresh = await this.client.refresh(stored.refreshToken);
      } catch (e) {
        if (e instanceof TokenEndpointError && e.code === "invalid_grant") throw new LoginRequired(`the issuer refused the OIDC refresh token (${e.message})`);
        throw e;
      }
      // Issuers that do not rotate refresh tokens omit them: the old one stays good.
      return this.store({ ...fresh, refreshToken: fresh.refreshToken ?? stored.refreshToken });
    })().finally(() => {
      this.refreshing = undefined;
    });
    return this.refreshing;
  }

  private login(): Promise<TokenSet> {
    return interactiveLogin({
      client: this.client,
      callbackPath: this.access.loginCallbackPath,
      callbackPort: this.access.loginCallbackPort ?? 0,
      scopes: this.access.scopes,
      timeoutMs: loginTimeoutMs,
      signal: this.closed.signal,
      show: (url) => {
        this.options.log(`auth source "${this.name}": log in to ${this.access.provider} by opening ${url}`);
        this.options.openBrowser?.(url);
      },
    });
  }

  private store(tokens: TokenSet): TokenSet {
    try {
      this.cacheFile.save(tokens);
    } catch (e) {
      // The tokens still work for this run; only the next start will need a login.
      this.options.log(`auth source "${this.name}": cannot write the OIDC token cache ${this.cacheFile.path}: ${messageOf(e)}`);
    }
    return tokens;
  }

  private use(tokens: TokenSet): { tokens: TokenSet; ready: Promise<Credential> } {
    if (this.current?.tokens.idToken !== tokens.idToken) this.current = { tokens, ready: Promise.resolve({ header: `Bearer ${tokens.idToken}` }) };
    else this.current = { tokens, ready: this.current.ready };
    this.schedule(tokens);
    return this.current;
  }

  private schedule(tokens: TokenSet): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const delay = tokens.expiresAt - backgroundLeadMs - Date.now();
    // Tokens that live shorter than the lead are refreshed on demand; a timer would spin.
    if (this.closed.signal.aborted || !tokens.refreshToken || !(delay > 0) || !Number.isFinite(delay)) return;
    this.timer = setTimeout(() => {
      this.refresh().then(
        (fresh) => this.use(fresh),
        (e) => this.options.log(`auth source "${this.name}": background OIDC refresh failed (the next request retries): ${messageOf(e)}`),
      );
    }, Math.min(delay, maxTimerMs));
    this.timer.unref();
  }
}

function defaultCachePath(home: string, name: string): string {
  return join(home, ".config", "kedge", `winch-oidc-${name.replace(/[^A-Za-z0-9._-]/g, "_")}.json`);
}

function expandHome(path: string, home: string): string {
  return path.startsWith("~/") ? join(home, path.slice(2)) : path;
}
