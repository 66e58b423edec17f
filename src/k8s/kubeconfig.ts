import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import type { KubeClientOptions } from "./client.js";

interface KubeconfigFile {
  "current-context"?: string;
  clusters?: Array<{ name: string; cluster?: Record<string, unknown> }>;
  users?: Array<{ name: string; user?: Record<string, unknown> }>;
  contexts?: Array<{ name: string; context?: { cluster?: string; user?: string } }>;
}

/**
 * The API server and credentials from a kubeconfig: the current (or named) context's cluster and
 * user, or another user by name (kedge Go --k8sclient_kubeconfig_user). File paths in it are
 * relative to the kubeconfig's directory, as kubectl reads them.
 */
export function fromKubeconfig(path: string, options: { context?: string; user?: string } = {}): KubeClientOptions {
  // Bun's YAML parser: the yaml package would load in every process for a file only some read.
  const doc = Bun.YAML.parse(readFileSync(path, "utf8")) as KubeconfigFile;
  const base = dirname(path);
  const contextName = options.context || doc["current-context"];
  const context = doc.contexts?.find((c) => c.name === contextName)?.context;
  if (!context) throw new Error(`kubeconfig ${path}: no context "${contextName ?? ""}"`);
  const cluster = doc.clusters?.find((c) => c.name === context.cluster)?.cluster;
  if (!cluster) throw new Error(`kubeconfig ${path}: no cluster "${context.cluster ?? ""}"`);
  const userName = options.user || context.user;
  const user = userName ? doc.users?.find((u) => u.name === userName)?.user : undefined;
  if (userName && !user) throw new Error(`kubeconfig ${path}: no user "${userName}"`);
  const file = (v: unknown) => (typeof v === "string" && v !== "" ? readFileSync(resolve(base, v), "utf8") : undefined);
  const data = (v: unknown) => (typeof v === "string" && v !== "" ? Buffer.from(v, "base64").toString("utf8") : undefined);
  const str = (v: unknown) => (typeof v === "string" && v !== "" ? v : undefined);
  if (typeof cluster.server !== "string") throw new Error(`kubeconfig ${path}: cluster "${context.cluster}" has no server`);
  return {
    server: cluster.server,
    ca: data(cluster["certificate-authority-data"]) ?? file(cluster["certificate-authority"]),
    insecure: cluster["insecure-skip-tls-verify"] === true,
    token: str(user?.token),
    tokenFile: typeof user?.tokenFile === "string" ? resolve(base, user.tokenFile) : undefined,
    cert: data(user?.["client-certificate-data"]) ?? file(user?.["client-certificate"]),
    key: data(user?.["client-key-data"]) ?? file(user?.["client-key"]),
  };
}
