import { readFileSync } from "node:fs";
import type { KubernetesConfig } from "../gen/kedge/config/v1/config_pb.js";
import { messageKey } from "../config/message-key.js";
import { KubeClient, type KubeClientOptions } from "./client.js";
import { fromKubeconfig } from "./kubeconfig.js";

let configured: KubernetesConfig | undefined;
let current: { key: string; client: KubeClient } | undefined;

/**
 * Records the live config's API server settings (buildRuntime calls this before building
 * backends). One API server per process: every k8s resolver and the discovery watch share it.
 */
export function useKubernetesConfig(config: KubernetesConfig | undefined): void {
  configured = config;
}

export function clientOptions(config: KubernetesConfig | undefined, env: NodeJS.ProcessEnv = process.env): KubeClientOptions {
  if (config?.kubeconfigPath) {
    return fromKubeconfig(config.kubeconfigPath, { user: config.kubeconfigUser, context: config.kubeconfigContext });
  }
  const base: KubeClientOptions = config?.apiUrl ? { server: config.apiUrl } : KubeClient.inCluster(env);
  return {
    ...base,
    ca: config?.caFile ? readFileSync(config.caFile, "utf8") : base.ca,
    insecure: config?.tlsInsecure || undefined,
    tokenFile: config?.tokenFile || base.tokenFile,
  };
}

/** The client for the recorded settings, rebuilt only when they change. Throws when none can be made. */
export function kubeClient(): KubeClient {
  const env = process.env;
  // In-cluster settings come from the environment, so they are part of what the client was built from.
  const key = `${configured ? messageKey(configured) : ""}|${env.KUBERNETES_SERVICE_HOST}|${env.KUBERNETES_SERVICE_PORT}|${env.KEDGE_SERVICEACCOUNT_DIR}`;
  if (current?.key !== key) current = { key, client: new KubeClient(clientOptions(configured)) };
  return current.client;
}
