import { decodeJwt } from "jose";
import type { KubernetesAccess } from "../../gen/kedge/winch/v1/winch_pb.js";
import { AuthSourceError, messageOf } from "./errors.js";
import { ExecCredentialPlugin } from "./exec-plugin.js";
import { kubeconfigPath, readKubeconfigUser, type KubeconfigUser } from "./kubeconfig-user.js";
import type { AuthSource, Credential } from "./source.js";
import { WatchedFile } from "../../config/watched-file.js";

type Text = () => string;

/**
 * A kubeconfig user's credentials, as kubectl would present them: token, tokenFile (re-read when
 * rotated), client certificate (files re-read when rotated), basic auth, an exec credential plugin,
 * or the id-token of an oidc auth-provider. The kubeconfig itself is read once, at start.
 */
export class KubeUserSource implements AuthSource {
  private readonly header: Text | undefined;
  private readonly cert: { cert: Text; key: Text } | undefined;
  private readonly plugin: ExecCredentialPlugin | undefined;
  private readonly idTokenExpiresAt: number | undefined;
  private readonly where: string;
  private last: { header: string | undefined; cert: string | undefined; key: string | undefined; ready: Promise<Credential> } | undefined;

  /** Throws (without the source's name: the caller adds the field path) when the user cannot give a credential. */
  constructor(
    readonly name: string,
    access: KubernetesAccess,
    env: Record<string, string | undefined>,
    home: string,
  ) {
    const user = readKubeconfigUser(kubeconfigPath(access.path, env, home), access.user);
    this.where = `kubeconfig ${user.kubeconfig}, user "${user.name}"`;
    const fail = (why: string) => new Error(`${this.where}: ${why}`);
    this.header = headerOf(user, fail);
    const cert = textOf(user.certData, user.certFile, "client-certificate", fail);
    const key = textOf(user.keyData, user.keyFile, "client-key", fail);
    if (!cert !== !key) throw fail(cert ? "client-certificate without client-key" : "client-key without client-certificate");
    this.cert = cert && key ? { cert, key } : undefined;
    this.plugin = user.exec && new ExecCredentialPlugin(user.exec, env);
    const idToken = user.authProvider?.config["id-token"];
    if (idToken && this.header?.() === `Bearer ${idToken}`) this.idTokenExpiresAt = expiryOf(idToken);
    if (!this.header && !this.cert && !this.plugin) {
      throw fail("no credentials winch can use (token, tokenFile, client-certificate, username/password, exec, or an oidc auth-provider's id-token)");
    }
  }

  async credential(): Promise<Credential> {
    try {
      const fixed = this.fixed();
      if (!this.plugin) return await fixed;
      const [own, fromPlugin] = await Promise.all([fixed, this.plugin.credential()]);
      return { header: fromPlugin.header ?? own.header, clientCert: fromPlugin.clientCert ?? own.clientCert };
    } catch (e) {
      throw new AuthSourceError(this.name, `${this.where}: ${messageOf(e)}`);
    }
  }

  /** The kubeconfig's own credential; the same object while the files behind it are unchanged. */
  private fixed(): Promise<Credential> {
    if (this.idTokenExpiresAt !== undefined && Date.now() >= this.idTokenExpiresAt) {
      throw new Error("the auth-provider's id-token has expired; refresh it with kubectl (winch does not write kubeconfigs)");
    }
    const header = this.header?.();
    const cert = this.cert?.cert();
    const key = this.cert?.key();
    const last = this.last;
    if (last && last.header === header && last.cert === cert && last.key === key) return last.ready;
    const ready = Promise.resolve({ header, clientCert: cert && key ? { cert, key } : undefined });
    this.last = { header, cert, key, ready };
    return ready;
  }

  close(): void {}
}

function headerOf(user: KubeconfigUser, fail: (why: string) => Error): Text | undefined {
  if (user.token) return constant(`Bearer ${user.token}`);
  const tokenFile = textOf(undefined, user.tokenFile, "tokenFile", fail);
  if (tokenFile) return () => `Bearer ${tokenFile().trim()}`;
  if (user.username && user.password) return constant(`Basic ${Buffer.from(`${user.username}:${user.password}`).toString("base64")}`);
  const provider = user.authProvider;
  if (!provider) return undefined;
  if (provider.name !== "oidc") throw fail(`auth-provider "${provider.name}" is not supported (only oidc's id-token)`);
  if (!provider.config["id-token"]) throw fail("auth-provider oidc has no id-token; log in with kubectl first");
  return constant(`Bearer ${provider.config["id-token"]}`);
}

/** Inline data, or a file re-read when it changes; the file must be readable at start. */
function textOf(data: string | undefined, path: string | undefined, field: string, fail: (why: string) => Error): Text | undefined {
  if (data) return constant(data);
  if (!path) return undefined;
  const file = new WatchedFile(path);
  try {
    file.read();
  } catch (e) {
    throw fail(`${field} ${path} cannot be read: ${(e as NodeJS.ErrnoException).code ?? messageOf(e)}`);
  }
  return () => {
    try {
      return file.read();
    } catch (e) {
      throw new Error(`${field} ${path} cannot be read: ${(e as NodeJS.ErrnoException).code ?? messageOf(e)}`);
    }
  };
}

function constant(text: string): Text {
  return () => text;
}

function expiryOf(idToken: string): number | undefined {
  try {
    const { exp } = decodeJwt(idToken);
    return typeof exp === "number" ? exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}
