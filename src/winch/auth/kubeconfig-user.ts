import { readFileSync } from "node:fs";
import { delimiter, dirname, join, resolve } from "node:path";
import { parse } from "yaml";

/** A kubeconfig user's `exec` stanza: a client-go credential plugin. */
export interface ExecConfig {
  readonly apiVersion: string;
  readonly command: string;
  readonly args: readonly string[];
  readonly env: ReadonlyArray<{ readonly name: string; readonly value: string }>;
  readonly installHint?: string;
  readonly interactiveMode?: string;
}

/** What a kubeconfig says about one user; file paths are absolute (kubectl resolves them against the kubeconfig's directory). */
export interface KubeconfigUser {
  readonly kubeconfig: string;
  readonly name: string;
  readonly token?: string;
  readonly tokenFile?: string;
  readonly username?: string;
  readonly password?: string;
  readonly certData?: string;
  readonly certFile?: string;
  readonly keyData?: string;
  readonly keyFile?: string;
  readonly exec?: ExecConfig;
  readonly authProvider?: { readonly name: string; readonly config: Readonly<Record<string, string>> };
}

interface KubeconfigDoc {
  "current-context"?: string;
  users?: Array<{ name?: string; user?: Record<string, unknown> }>;
  contexts?: Array<{ name?: string; context?: { user?: string } }>;
}

/** The kubeconfig to read: the configured path, else $KUBECONFIG's first entry, else ~/.kube/config (kubectl's order). */
export function kubeconfigPath(configured: string, env: Record<string, string | undefined>, home: string): string {
  const fromEnv = env.KUBECONFIG?.split(delimiter).find((p) => p !== "");
  const path = configured || fromEnv || join(home, ".kube", "config");
  return path.startsWith("~/") ? join(home, path.slice(2)) : resolve(path);
}

/** Reads a user from a kubeconfig (the current context's user when `userName` is empty); throws saying what is missing. */
export function readKubeconfigUser(path: string, userName: string): KubeconfigUser {
  let doc: KubeconfigDoc;
  try {
    doc = (parse(readFileSync(path, "utf8")) ?? {}) as KubeconfigDoc;
  } catch (e) {
    throw new Error(`kubeconfig ${path} cannot be read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const name = userName || doc.contexts?.find((c) => c.name === doc["current-context"])?.context?.user;
  if (!name) throw new Error(`kubeconfig ${path}: no user given and the current context names none`);
  const user = doc.users?.find((u) => u.name === name)?.user;
  if (!user) throw new Error(`kubeconfig ${path} has no user "${name}"`);

  const base = dirname(path);
  const at = `kubeconfig ${path}, user "${name}"`;
  const str = (key: string) => (typeof user[key] === "string" && user[key] !== "" ? (user[key] as string) : undefined);
  const file = (key: string) => (str(key) ? resolve(base, str(key)!) : undefined);
  const data = (key: string) => (str(key) ? Buffer.from(str(key)!, "base64").toString("utf8") : undefined);
  return {
    kubeconfig: path,
    name,
    token: str("token"),
    tokenFile: file("tokenFile"),
    username: str("username"),
    password: str("password"),
    certData: data("client-certificate-data"),
    certFile: file("client-certificate"),
    keyData: data("client-key-data"),
    keyFile: file("client-key"),
    exec: user.exec === undefined ? undefined : execConfig(user.exec, base, at),
    authProvider: user["auth-provider"] === undefined ? undefined : authProvider(user["auth-provider"], at),
  };
}

function execConfig(raw: unknown, base: string, at: string): ExecConfig {
  const exec = (raw ?? {}) as Record<string, unknown>;
  if (typeof exec.command !== "string" || exec.command === "") throw new Error(`${at}: exec.command is required`);
  if (typeof exec.apiVersion !== "string" || exec.apiVersion === "") throw new Error(`${at}: exec.apiVersion is required`);
  const args = exec.args ?? [];
  if (!Array.isArray(args) || !args.every((a) => typeof a === "string")) throw new Error(`${at}: exec.args must be a list of strings`);
  const env = exec.env ?? [];
  if (!Array.isArray(env) || !env.every((e) => typeof e?.name === "string" && typeof e?.value === "string")) {
    throw new Error(`${at}: exec.env must be a list of {name, value}`);
  }
  if (exec.interactiveMode === "Always") throw new Error(`${at}: exec plugin needs an interactive terminal (interactiveMode: Always), which winch does not have`);
  // client-go resolves a command with a path separator against the kubeconfig's directory; a bare name is looked up on PATH.
  const command = exec.command.includes("/") ? resolve(base, exec.command) : exec.command;
  return {
    apiVersion: exec.apiVersion,
    command,
    args: args as string[],
    env: env as ExecConfig["env"],
    installHint: typeof exec.installHint === "string" ? exec.installHint : undefined,
    interactiveMode: typeof exec.interactiveMode === "string" ? exec.interactiveMode : undefined,
  };
}

function authProvider(raw: unknown, at: string): KubeconfigUser["authProvider"] {
  const provider = (raw ?? {}) as { name?: unknown; config?: unknown };
  if (typeof provider.name !== "string") throw new Error(`${at}: auth-provider.name is required`);
  const config = Object.fromEntries(Object.entries((provider.config ?? {}) as Record<string, unknown>).filter((e): e is [string, string] => typeof e[1] === "string"));
  return { name: provider.name, config };
}
