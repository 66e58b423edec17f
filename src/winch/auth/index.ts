import { homedir } from "node:os";
import type { AuthSource as AuthSourceConfig } from "../../gen/kedge/winch/v1/winch_pb.js";
import { messageOf } from "./errors.js";
import { KubeUserSource } from "./kube.js";
import { OidcSource } from "./oidc.js";
import type { AuthSource } from "./source.js";
import { bearerSource, staticSource } from "./static.js";

export type { AuthSource, Credential } from "./source.js";
export { AuthSourceError } from "./errors.js";

export interface AuthSourceOptions {
  /** Home directory for ~/.kube/config and the OIDC token caches; default the user's. */
  readonly home?: string;
  /** Environment for $KUBECONFIG and exec plugins; default process.env. */
  readonly env?: Record<string, string | undefined>;
  /** Where messages for the user go (an OIDC login's URL, a failed background refresh); default stderr. */
  readonly log?: (msg: string) => void;
  /** Opens a URL in the user's browser, for an OIDC login. */
  readonly openBrowser?: (url: string) => void;
  /** A source already running for exactly this config (a reload keeps its tokens and logins); it is used as it is. */
  readonly keep?: (source: AuthSourceConfig) => AuthSource | undefined;
}

/**
 * winch's auth sources by name, built at start and on each reload. Throws an Error naming the field path of the
 * first problem that can be seen now (a missing kubeconfig user, an unusable provider URL); problems
 * that only show later (an expired refresh token) make credential() reject instead.
 */
export function buildAuthSources(sources: readonly AuthSourceConfig[], options: AuthSourceOptions = {}): Map<string, AuthSource> {
  const home = options.home ?? homedir();
  const env = options.env ?? process.env;
  const log = options.log ?? ((msg: string) => void process.stderr.write(`${msg}\n`));
  const built = new Map<string, AuthSource>();
  const kept = new Set<AuthSource>();
  try {
    sources.forEach((source, i) => {
      const at = `auth_sources[${i}]`;
      if (!source.name) throw new Error(`${at}.name: required`);
      if (built.has(source.name)) throw new Error(`${at}.name: duplicate auth source "${source.name}"`);
      const t = source.type;
      if (t.case === undefined) throw new Error(`${at}: set one of token, dummy, kube, oidc`);
      const running = options.keep?.(source);
      if (running) {
        kept.add(running);
        return void built.set(source.name, running);
      }
      const field = (name: string) => `${at}.${t.case}.${name}`;
      let made: AuthSource;
      switch (t.case) {
        case "token":
          if (!t.value.token) throw new Error(`${field("token")}: required`);
          made = bearerSource(source.name, t.value.token);
          break;
        case "dummy":
          made = staticSource(source.name, { header: t.value.value });
          break;
        case "kube":
          try {
            made = new KubeUserSource(source.name, t.value, env, home);
          } catch (e) {
            throw new Error(`${at}.kube: ${messageOf(e)}`);
          }
          break;
        case "oidc": {
          const { provider, clientId, loginCallbackPath } = t.value;
          if (!URL.canParse(provider) || !/^https?:$/.test(new URL(provider).protocol)) throw new Error(`${field("provider")}: "${provider}" is not an http(s) URL`);
          if (!clientId) throw new Error(`${field("client_id")}: required`);
          if (loginCallbackPath && !loginCallbackPath.startsWith("/")) throw new Error(`${field("login_callback_path")}: "${loginCallbackPath}" must start with "/"`);
          const port = t.value.loginCallbackPort;
          if (port !== undefined && (port < 1 || port > 65535)) throw new Error(`${field("login_callback_port")}: ${port} is not a port (1–65535)`);
          if (port !== undefined && !loginCallbackPath) throw new Error(`${field("login_callback_port")}: needs login_callback_path, the login it is for`);
          made = new OidcSource(source.name, t.value, { home, log, openBrowser: options.openBrowser });
          break;
        }
      }
      built.set(source.name, made);
    });
  } catch (e) {
    for (const source of built.values()) if (!kept.has(source)) source.close();
    throw e;
  }
  return built;
}
