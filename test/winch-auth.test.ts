import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "bun:test";
import { fromJson } from "@bufbuild/protobuf";
import { decodeJwt } from "jose";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stringify } from "yaml";
import { WinchConfigSchema } from "../src/gen/kedge/winch/v1/winch_pb.ts";
import { buildAuthSources, type AuthSource, type AuthSourceOptions } from "../src/winch/auth/index.ts";
import { issueClientCert, makeTestPki } from "./helpers/certs.ts";
import { startTestIssuer, type TestIssuer } from "./helpers/oidc-issuer.ts";
import { until } from "./helpers/wait.ts";

// winch's auth sources: fixed tokens, kubeconfig users (token, rotating tokenFile, client
// certificates, exec credential plugins) and OIDC (cache file, refresh grant, background refresh,
// interactive PKCE login) against a real issuer and real files, scripts and listeners.

const open: AuthSource[] = [];
afterEach(() => {
  for (const source of open.splice(0)) source.close();
});

/** Builds sources from config as users write it (snake_case JSON); closed after each test. */
function build(authSources: unknown[], options: AuthSourceOptions = {}): Map<string, AuthSource> {
  const config = fromJson(WinchConfigSchema, { auth_sources: authSources } as never);
  const sources = buildAuthSources(config.authSources, { home: tempDir(), env: {}, log: () => {}, ...options });
  open.push(...sources.values());
  return sources;
}

function only(authSource: unknown, options: AuthSourceOptions = {}): AuthSource {
  return [...build([authSource], options).values()][0];
}

function buildError(authSources: unknown[], options: AuthSourceOptions = {}): string {
  try {
    build(authSources, options);
  } catch (e) {
    return (e as Error).message;
  }
  throw new Error("expected buildAuthSources to throw");
}

async function rejection(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    return (e as Error).message;
  }
  throw new Error("expected a rejection");
}

/** A port nothing listens on now. */
async function freePort(): Promise<number> {
  const server = createServer();
  const port = await new Promise<number>((resolve) => server.listen(0, "127.0.0.1", () => resolve((server.address() as AddressInfo).port)));
  await new Promise((resolve) => server.close(resolve));
  return port;
}

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), "winch-auth-"));
}

describe("token and dummy auth sources", () => {
  it("gives a token as a Bearer header and a dummy value verbatim", async () => {
    const sources = build([
      { name: "t", token: { token: "secret-token" } },
      { name: "d", dummy: { value: "Basic Zm9vOmJhcg==" } },
    ]);
    expect(await sources.get("t")!.credential()).toEqual({ header: "Bearer secret-token" });
    expect(await sources.get("d")!.credential()).toEqual({ header: "Basic Zm9vOmJhcg==" });
  });

  it("names the field path of what is wrong at start", () => {
    expect(buildError([{ name: "t", token: { token: "" } }])).toBe("auth_sources[0].token.token: required");
    expect(buildError([{ name: "t", token: { token: "a" } }, { name: "t", dummy: { value: "b" } }])).toBe('auth_sources[1].name: duplicate auth source "t"');
    expect(buildError([{ name: "x" }])).toBe("auth_sources[0]: set one of token, dummy, kube, oidc");
    expect(buildError([{ name: "o", oidc: { provider: "not a url", client_id: "c" } }])).toBe('auth_sources[0].oidc.provider: "not a url" is not an http(s) URL');
    expect(buildError([{ name: "o", oidc: { provider: "https://issuer.example", client_id: "" } }])).toBe("auth_sources[0].oidc.client_id: required");
  });
});

describe("kube auth source", () => {
  let dir: string;
  let kubeconfig: string;

  beforeEach(() => {
    dir = tempDir();
    kubeconfig = join(dir, "config");
  });

  function writeKubeconfig(users: Record<string, unknown>, extra: Record<string, unknown> = {}): void {
    const doc = { apiVersion: "v1", kind: "Config", users: Object.entries(users).map(([name, user]) => ({ name, user })), ...extra };
    writeFileSync(kubeconfig, stringify(doc));
  }

  it("uses a user's token", async () => {
    writeKubeconfig({ alice: { token: "alice-token" }, bob: { token: "bob-token" } });
    expect(await only({ name: "k", kube: { user: "bob", path: kubeconfig } }).credential()).toMatchObject({ header: "Bearer bob-token" });
  });

  it("re-reads a tokenFile (relative to the kubeconfig) when it is rotated", async () => {
    writeKubeconfig({ bob: { tokenFile: "bob.token" } });
    writeFileSync(join(dir, "bob.token"), "first-token\n");
    const source = only({ name: "k", kube: { user: "bob", path: kubeconfig } });
    expect((await source.credential()).header).toBe("Bearer first-token");
    writeFileSync(join(dir, "bob.token"), "second-longer-token\n");
    expect((await source.credential()).header).toBe("Bearer second-longer-token");
    rmSync(join(dir, "bob.token"));
    expect(await rejection(source.credential())).toContain(`auth source "k": kubeconfig ${kubeconfig}, user "bob": tokenFile ${join(dir, "bob.token")} cannot be read: ENOENT`);
  });

  it("gives a client certificate from files (relative paths) or inline data", async () => {
    const pki = makeTestPki();
    const cert = issueClientCert(pki, "bob", "/CN=bob");
    writeFileSync(join(dir, "bob.pem"), cert.cert);
    writeFileSync(join(dir, "bob.key"), cert.key);
    const b64 = (text: string) => Buffer.from(text).toString("base64");
    writeKubeconfig({
      files: { "client-certificate": "bob.pem", "client-key": "bob.key" },
      inline: { "client-certificate-data": b64(cert.cert), "client-key-data": b64(cert.key) },
    });
    for (const user of ["files", "inline"]) {
      const credential = await only({ name: "k", kube: { user, path: kubeconfig } }).credential();
      expect(credential.header).toBeUndefined();
      expect(credential.clientCert).toEqual({ cert: cert.cert, key: cert.key });
    }
  });

  it("finds the kubeconfig through $KUBECONFIG's first entry, else ~/.kube/config", async () => {
    writeKubeconfig({ bob: { token: "from-env" } });
    const env = { KUBECONFIG: `${kubeconfig}:/nonexistent/other` };
    expect((await only({ name: "k", kube: { user: "bob" } }, { env }).credential()).header).toBe("Bearer from-env");
    const home = tempDir();
    mkdirSync(join(home, ".kube"));
    writeFileSync(join(home, ".kube", "config"), stringify({ users: [{ name: "bob", user: { token: "from-home" } }] }));
    expect((await only({ name: "k", kube: { user: "bob" } }, { home }).credential()).header).toBe("Bearer from-home");
  });

  it("uses the current context's user when none is named", async () => {
    writeKubeconfig({ carol: { token: "carol-token" } }, { "current-context": "c", contexts: [{ name: "c", context: { cluster: "x", user: "carol" } }] });
    expect((await only({ name: "k", kube: { path: kubeconfig } }).credential()).header).toBe("Bearer carol-token");
  });

  it("uses an oidc auth-provider's id-token", async () => {
    writeKubeconfig({ dave: { "auth-provider": { name: "oidc", config: { "id-token": "dave-id-token", "idp-issuer-url": "https://issuer.example" } } } });
    expect((await only({ name: "k", kube: { user: "dave", path: kubeconfig } }).credential()).header).toBe("Bearer dave-id-token");
  });

  it("names the field path and the kubeconfig when the user cannot be used", () => {
    writeKubeconfig({ alice: { token: "a" }, empty: {}, gcp: { "auth-provider": { name: "gcp" } }, half: { "client-certificate-data": "eA==" } });
    const err = (user: string) => buildError([{ name: "ok", token: { token: "t" } }, { name: "k", kube: { user, path: kubeconfig } }]);
    expect(err("bob")).toBe(`auth_sources[1].kube: kubeconfig ${kubeconfig} has no user "bob"`);
    expect(err("empty")).toStartWith(`auth_sources[1].kube: kubeconfig ${kubeconfig}, user "empty": no credentials winch can use`);
    expect(err("gcp")).toBe(`auth_sources[1].kube: kubeconfig ${kubeconfig}, user "gcp": auth-provider "gcp" is not supported (only oidc's id-token)`);
    expect(err("half")).toBe(`auth_sources[1].kube: kubeconfig ${kubeconfig}, user "half": client-certificate without client-key`);
    expect(buildError([{ name: "k", kube: { user: "bob", path: join(dir, "missing") } }])).toBe(`auth_sources[0].kube: kubeconfig ${join(dir, "missing")} cannot be read: ENOENT`);
  });

  describe("exec credential plugin", () => {
    const apiVersion = "client.authentication.k8s.io/v1";
    const script = `#!/bin/sh
n=$(cat "$PLUGIN_DIR/count" 2>/dev/null || echo 0)
echo $((n + 1)) > "$PLUGIN_DIR/count"
printf '%s' "$KUBERNETES_EXEC_INFO" > "$PLUGIN_DIR/exec-info"
if [ -f "$PLUGIN_DIR/fail" ]; then
  echo "plugin-token-on-stdout"
  echo "error: the SSO session has expired, run sso login" >&2
  echo "second line of detail" >&2
  exit 3
fi
cat "$PLUGIN_DIR/response"
`;
    const runs = () => Number(readFileSync(join(dir, "count"), "utf8"));
    const respond = (status: Record<string, unknown>) => writeFileSync(join(dir, "response"), JSON.stringify({ apiVersion, kind: "ExecCredential", status }));
    const inOneHour = () => new Date(Date.now() + 3600_000).toISOString();

    function pluginSource(exec: Record<string, unknown> = {}): AuthSource {
      writeFileSync(join(dir, "plugin.sh"), script);
      chmodSync(join(dir, "plugin.sh"), 0o755);
      writeKubeconfig({ eve: { exec: { apiVersion, command: "./plugin.sh", args: ["get-token"], env: [{ name: "PLUGIN_DIR", value: dir }], ...exec } } });
      return only({ name: "k", kube: { user: "eve", path: kubeconfig } }, { env: { PATH: process.env.PATH } });
    }

    it("runs once for concurrent callers and caches the token until shortly before it expires", async () => {
      const source = pluginSource();
      respond({ token: "exec-token-1", expirationTimestamp: inOneHour() });
      const credentials = await Promise.all(Array.from({ length: 5 }, () => source.credential()));
      expect(credentials.map((c) => c.header)).toEqual(Array(5).fill("Bearer exec-token-1"));
      expect(await source.credential()).toMatchObject({ header: "Bearer exec-token-1" });
      expect(runs()).toBe(1);
      expect(JSON.parse(readFileSync(join(dir, "exec-info"), "utf8"))).toEqual({ apiVersion, kind: "ExecCredential", spec: { interactive: false } });
    });

    it("runs again when the credential expires within seconds, and caches one without expiry for good", async () => {
      const source = pluginSource();
      respond({ token: "short-lived", expirationTimestamp: new Date(Date.now() + 5_000).toISOString() });
      await source.credential();
      respond({ token: "forever" });
      expect((await source.credential()).header).toBe("Bearer forever");
      expect(runs()).toBe(2);
      respond({ token: "never-seen" });
      expect((await source.credential()).header).toBe("Bearer forever");
      expect(runs()).toBe(2);
    });

    it("gives the client certificate a plugin prints", async () => {
      const source = pluginSource();
      respond({ clientCertificateData: "-----CERT-----", clientKeyData: "-----KEY-----", expirationTimestamp: inOneHour() });
      expect(await source.credential()).toMatchObject({ header: undefined, clientCert: { cert: "-----CERT-----", key: "-----KEY-----" } });
    });

    it("rejects with the plugin's first stderr line when it fails, never its output", async () => {
      const source = pluginSource();
      writeFileSync(join(dir, "fail"), "");
      const message = await rejection(source.credential());
      expect(message).toBe(
        `auth source "k": kubeconfig ${kubeconfig}, user "eve": exec plugin "${join(dir, "plugin.sh")}" failed (exit code 3): error: the SSO session has expired, run sso login`,
      );
      expect(message).not.toContain("plugin-token-on-stdout");
      rmSync(join(dir, "fail"));
      respond({ token: "recovered" });
      expect((await source.credential()).header).toBe("Bearer recovered");
    });

    it("says when the plugin is missing, with its install hint, or prints something else", async () => {
      const missing = pluginSource({ command: "kedge-no-such-plugin", installHint: "install it with brew" });
      expect(await rejection(missing.credential())).toEndWith('exec plugin "kedge-no-such-plugin" not found (install it with brew)');
      const source = pluginSource();
      writeFileSync(join(dir, "response"), JSON.stringify({ apiVersion: "client.authentication.k8s.io/v1beta1", kind: "ExecCredential", status: { token: "t" } }));
      expect(await rejection(source.credential())).toEndWith(`printed apiVersion "client.authentication.k8s.io/v1beta1", expected "${apiVersion}" as in the kubeconfig`);
    });
  });
});

describe("oidc auth source", () => {
  let issuer: TestIssuer;
  let home: string;
  const now = () => Math.floor(Date.now() / 1000);
  const cacheFile = () => join(home, ".config", "kedge", "winch-oidc-o.json");

  beforeAll(async () => {
    issuer = await startTestIssuer();
  });
  afterAll(() => issuer.close());
  beforeEach(() => {
    home = tempDir();
    Object.assign(issuer.tokenSettings, { idTokenTtlSeconds: 300, rotateRefreshTokens: true, authMethods: ["client_secret_post", "client_secret_basic"], failWith: undefined, offlineAccess: false });
  });

  function oidcSource(extra: Record<string, unknown> = {}, options: AuthSourceOptions = {}): AuthSource {
    return only({ name: "o", oidc: { provider: issuer.url, client_id: issuer.client.id, secret: issuer.client.secret, ...extra } }, { home, ...options });
  }

  /** Writes the token cache as a previous run would have. */
  async function seed(tokens: { exp?: number; refreshToken?: string }): Promise<{ idToken: string; refreshToken?: string }> {
    const idToken = await issuer.sign({ aud: issuer.client.id, exp: tokens.exp ?? now() + 600 });
    mkdirSync(join(home, ".config", "kedge"), { recursive: true });
    const expiry = new Date((tokens.exp ?? now() + 600) * 1000).toISOString();
    writeFileSync(cacheFile(), JSON.stringify({ id_token: idToken, refresh_token: tokens.refreshToken, expiry }));
    return { idToken, refreshToken: tokens.refreshToken };
  }

  const stored = () => JSON.parse(readFileSync(cacheFile(), "utf8")) as { id_token: string; refresh_token?: string; expiry: string };
  const tokenOf = (header: string | undefined) => header!.replace(/^Bearer /, "");

  it("uses a cached id_token valid for more than a minute without asking the issuer", async () => {
    const { idToken } = await seed({ exp: now() + 600, refreshToken: issuer.issueRefreshToken() });
    const before = issuer.tokenRequests;
    expect((await oidcSource().credential()).header).toBe(`Bearer ${idToken}`);
    expect(issuer.tokenRequests).toBe(before);
  });

  it("refreshes an expired token and stores the rotated refresh token in a 0600 file", async () => {
    const old = await seed({ exp: now() - 10, refreshToken: issuer.issueRefreshToken() });
    const before = issuer.tokenRequests;
    const header = (await oidcSource().credential()).header;
    expect(issuer.tokenRequests).toBe(before + 1);
    expect(tokenOf(header)).not.toBe(old.idToken);
    expect(decodeJwt(tokenOf(header))).toMatchObject({ iss: issuer.url, aud: issuer.client.id, sub: "alice" });
    const file = stored();
    expect(file.id_token).toBe(tokenOf(header));
    expect(file.refresh_token).toBeString();
    expect(file.refresh_token).not.toBe(old.refreshToken);
    expect(Date.parse(file.expiry)).toBeGreaterThan(Date.now() + 200_000);
    expect(statSync(cacheFile()).mode & 0o777).toBe(0o600);
  });

  it("refreshes a token that expires within a minute, and keeps the refresh token when none comes back", async () => {
    issuer.tokenSettings.rotateRefreshTokens = false;
    const old = await seed({ exp: now() + 30, refreshToken: issuer.issueRefreshToken() });
    const header = (await oidcSource().credential()).header;
    expect(tokenOf(header)).not.toBe(old.idToken);
    expect(stored()).toMatchObject({ id_token: tokenOf(header), refresh_token: old.refreshToken });
  });

  it("shares one refresh among concurrent callers", async () => {
    await seed({ exp: now() - 10, refreshToken: issuer.issueRefreshToken() });
    const source = oidcSource();
    const before = issuer.tokenRequests;
    const headers = (await Promise.all(Array.from({ length: 10 }, () => source.credential()))).map((c) => c.header);
    expect(new Set(headers).size).toBe(1);
    expect(issuer.tokenRequests).toBe(before + 1);
  });

  it("authenticates with client_secret_basic when discovery offers only that", async () => {
    issuer.tokenSettings.authMethods = ["client_secret_basic"];
    await seed({ exp: now() - 10, refreshToken: issuer.issueRefreshToken() });
    await oidcSource().credential();
    expect(issuer.tokenRequestLog.at(-1)).toEqual({ grantType: "refresh_token", clientAuth: "basic" });
  });

  it("refreshes in the background before the token expires, so callers do not wait", async () => {
    // Valid for 91 s: the background refresh (90 s ahead of expiry) is due in about a second.
    const old = await seed({ exp: now() + 91, refreshToken: issuer.issueRefreshToken() });
    const before = issuer.tokenRequests;
    const source = oidcSource();
    await until("the background refresh", () => issuer.tokenRequests === before + 1);
    await until("the refreshed token in use", async () => tokenOf((await source.credential()).header) !== old.idToken);
    expect(issuer.tokenRequests).toBe(before + 1);
    expect(stored().refresh_token).not.toBe(old.refreshToken);
  });

  it("keeps its tokens at the configured path", async () => {
    const path = join(home, "elsewhere", "tokens.json");
    const source = oidcSource({ path, login_callback_path: "/callback" }, { openBrowser: (url) => void fetch(url) });
    const header = (await source.credential()).header;
    expect(JSON.parse(readFileSync(path, "utf8")).id_token).toBe(tokenOf(header));
    expect(statSync(path).mode & 0o777).toBe(0o600);
  });

  it("rejects, saying how to log in, when there is no refresh token and no login_callback_path", async () => {
    const message = await rejection(oidcSource().credential());
    expect(message).toBe(`auth source "o": no OIDC refresh token in ${cacheFile()}; run the login: set oidc.login_callback_path so winch can open it in a browser, then retry`);
  });

  it("never puts the secret or tokens in its error messages", async () => {
    const revoked = await seed({ exp: now() - 10, refreshToken: issuer.issueRefreshToken() });
    issuer.revokeRefreshTokens();
    const refused = await rejection(oidcSource().credential());
    expect(refused).toContain("invalid_grant");
    expect(refused).toContain("run the login");

    const valid = await seed({ exp: now() - 10, refreshToken: issuer.issueRefreshToken() });
    issuer.tokenSettings.failWith = { status: 500, error: "server_error", description: `cannot refresh ${valid.refreshToken} for ${issuer.client.id}:${issuer.client.secret}` };
    const failed = await rejection(oidcSource().credential());
    expect(failed).toStartWith('auth source "o": refreshing the OIDC token failed: token endpoint answered 500 server_error: cannot refresh … for winch:…');

    issuer.tokenSettings.failWith = undefined;
    const wrongSecret = await rejection(oidcSource({ secret: "wrong-secret-value" }).credential());
    expect(wrongSecret).toContain("401 invalid_client");
    for (const message of [refused, failed, wrongSecret]) {
      for (const secret of [issuer.client.secret, "wrong-secret-value", revoked.refreshToken!, revoked.idToken, valid.refreshToken!, valid.idToken]) {
        expect(message).not.toContain(secret);
      }
    }
  });

  describe("interactive login", () => {
    /** Plays the user's browser: opens the URL winch shows, following the issuer's redirect to winch's callback. */
    function browser() {
      const visits: Promise<Response>[] = [];
      return { visits, openBrowser: (url: string) => void visits.push(fetch(url)) };
    }

    it("logs in with PKCE through a local callback when there is no refresh token, and stores the tokens (0600 file, 0700 directory)", async () => {
      const logged: string[] = [];
      const { visits, openBrowser } = browser();
      const source = oidcSource({ login_callback_path: "/callback", scopes: ["email", "offline_access"] }, { log: (m) => logged.push(m), openBrowser });
      const header = (await source.credential()).header;
      expect(decodeJwt(tokenOf(header))).toMatchObject({ iss: issuer.url, sub: "alice" });
      expect(issuer.tokenRequestLog.at(-1)).toEqual({ grantType: "authorization_code", clientAuth: "post" });
      const page = await visits[0];
      expect(page.status).toBe(200);
      expect(await page.text()).toContain("Logged in");
      const url = new URL(logged[0].split(" ").at(-1)!);
      expect(url.origin + url.pathname).toBe(`${issuer.url}/authorize`);
      expect(url.searchParams.get("code_challenge_method")).toBe("S256");
      expect(url.searchParams.get("scope")).toBe("openid email offline_access");
      expect(url.searchParams.get("redirect_uri")).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/callback$/);
      expect(stored()).toMatchObject({ id_token: tokenOf(header), refresh_token: expect.any(String) });
      expect(statSync(cacheFile()).mode & 0o777).toBe(0o600);
      expect(statSync(join(home, ".config", "kedge")).mode & 0o777).toBe(0o700);
      // The stored refresh token is what the next run uses.
      expect((await oidcSource().credential()).header).toBe(header);
    });

    it("asks for offline_access when the issuer lists it in scopes_supported, with prompt=consent as OIDC Core §11 requires, so a refresh token comes back", async () => {
      issuer.tokenSettings.offlineAccess = true;
      const logged: string[] = [];
      const { openBrowser } = browser();
      await oidcSource({ login_callback_path: "/callback", scopes: ["email"] }, { log: (m) => logged.push(m), openBrowser }).credential();
      const params = new URL(logged[0].split(" ").at(-1)!).searchParams;
      expect(params.get("scope")).toBe("openid email offline_access");
      expect(params.get("prompt")).toBe("consent");
      expect(stored().refresh_token).toBeString();
    });

    it("does not ask for offline_access when the issuer does not list it", async () => {
      const logged: string[] = [];
      const { openBrowser } = browser();
      await oidcSource({ login_callback_path: "/callback" }, { log: (m) => logged.push(m), openBrowser }).credential();
      const params = new URL(logged[0].split(" ").at(-1)!).searchParams;
      expect(params.get("scope")).toBe("openid");
      expect(params.get("prompt")).toBeNull();
    });

    it("listens on login_callback_port, so the redirect URI is the one registered with the issuer", async () => {
      const port = await freePort();
      const logged: string[] = [];
      const { openBrowser } = browser();
      const header = (await oidcSource({ login_callback_path: "/callback", login_callback_port: port }, { log: (m) => logged.push(m), openBrowser }).credential()).header;
      expect(new URL(logged[0].split(" ").at(-1)!).searchParams.get("redirect_uri")).toBe(`http://127.0.0.1:${port}/callback`);
      expect(stored().id_token).toBe(tokenOf(header));
    });

    it("says which setting to change when login_callback_port is in use", async () => {
      const taken = createServer();
      const port = await new Promise<number>((resolve) => taken.listen(0, "127.0.0.1", () => resolve((taken.address() as AddressInfo).port)));
      try {
        const message = await rejection(oidcSource({ login_callback_path: "/callback", login_callback_port: port }, { openBrowser: () => {} }).credential());
        expect(message).toBe(
          `auth source "o": OIDC login failed: the login callback port 127.0.0.1:${port} (login_callback_port) is in use by another program; stop it or configure another port (and register that redirect URI with the issuer)`,
        );
      } finally {
        taken.close();
      }
    });

    it("refuses a login_callback_port that is not a port, or without login_callback_path", () => {
      const oidc = { provider: issuer.url, client_id: "c", login_callback_path: "/callback" };
      expect(buildError([{ name: "o", oidc: { ...oidc, login_callback_port: 0 } }])).toBe("auth_sources[0].oidc.login_callback_port: 0 is not a port (1–65535)");
      expect(buildError([{ name: "o", oidc: { ...oidc, login_callback_port: 65536 } }])).toBe("auth_sources[0].oidc.login_callback_port: 65536 is not a port (1–65535)");
      expect(buildError([{ name: "o", oidc: { provider: issuer.url, client_id: "c", login_callback_port: 8000 } }])).toBe("auth_sources[0].oidc.login_callback_port: needs login_callback_path, the login it is for");
    });

    it("logs in again when the issuer refuses the refresh token", async () => {
      await seed({ exp: now() - 10, refreshToken: issuer.issueRefreshToken() });
      issuer.revokeRefreshTokens();
      const { openBrowser } = browser();
      const header = (await oidcSource({ login_callback_path: "/cb" }, { openBrowser }).credential()).header;
      expect(stored().id_token).toBe(tokenOf(header));
      expect(issuer.tokenRequestLog.slice(-2).map((r) => r.grantType)).toEqual(["refresh_token", "authorization_code"]);
    });

    it("refuses a callback whose state is not the login's", async () => {
      const pages: Promise<Response>[] = [];
      const openBrowser = (url: string) => {
        pages.push(
          (async () => {
            const toWinch = new URL((await fetch(url, { redirect: "manual" })).headers.get("location")!);
            toWinch.searchParams.set("state", "forged-state");
            return fetch(toWinch);
          })(),
        );
      };
      const before = issuer.tokenRequests;
      const message = await rejection(oidcSource({ login_callback_path: "/callback" }, { openBrowser }).credential());
      expect(message).toBe(`auth source "o": OIDC login failed: the login callback's state does not match the login winch started (a stale or forged callback); retry`);
      expect((await pages[0]).status).toBe(400);
      expect(issuer.tokenRequests).toBe(before);
    });

    it("abandons the login when the source is closed", async () => {
      let shown = false;
      const source = oidcSource({ login_callback_path: "/callback" }, { openBrowser: () => void (shown = true) });
      const pending = rejection(source.credential());
      await until("the login URL shown", () => shown);
      source.close();
      expect(await pending).toBe('auth source "o": OIDC login failed: the login was abandoned: winch is shutting down');
    });
  });
});
