import { readFileSync, statSync } from "node:fs";

export interface KubeClientOptions {
  /** https://host:port of the API server. */
  server: string;
  /** PEM of the CA that signed the API server's certificate. */
  ca?: string;
  insecure?: boolean;
  token?: string;
  /** A token file, re-read when it changes (projected service-account tokens rotate hourly). */
  tokenFile?: string;
  cert?: string;
  key?: string;
}

/** Where the kubelet mounts the service-account token and CA; KEDGE_SERVICEACCOUNT_DIR moves it (custom mounts, tests). */
const serviceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount";

/** Thrown for a non-2xx answer; `status` lets callers tell 404 (not served) and 410 (expired) apart. */
export class KubeApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * The Kubernetes API over fetch (design card: no client library): bearer token or client
 * certificate, the cluster's CA, JSON in and out. Watches are plain streaming GETs read by the caller.
 */
export class KubeClient {
  private token: { value: string; mtimeMs: number } | undefined;

  constructor(readonly options: KubeClientOptions) {}

  /** In a pod: KUBERNETES_SERVICE_HOST/PORT, the service-account token and CA. */
  static inCluster(env: NodeJS.ProcessEnv = process.env): KubeClientOptions {
    const host = env.KUBERNETES_SERVICE_HOST;
    const port = env.KUBERNETES_SERVICE_PORT || "443";
    if (!host) throw new Error("not in a cluster: KUBERNETES_SERVICE_HOST is not set (set kubernetes.kubeconfig_path or kubernetes.api_url)");
    const dir = env.KEDGE_SERVICEACCOUNT_DIR || serviceAccountDir;
    return {
      server: `https://${host.includes(":") ? `[${host}]` : host}:${port}`,
      ca: readFileSync(`${dir}/ca.crt`, "utf8"),
      tokenFile: `${dir}/token`,
    };
  }

  private bearer(): string | undefined {
    const { token, tokenFile } = this.options;
    if (!tokenFile) return token;
    // A stat per request is cheap (watches are long-lived) and catches the kubelet's rotation at once.
    const mtimeMs = statSync(tokenFile).mtimeMs;
    if (!this.token || this.token.mtimeMs !== mtimeMs) this.token = { value: readFileSync(tokenFile, "utf8").trim(), mtimeMs };
    return this.token.value;
  }

  /** A GET on the API; resolves with the response whatever its status (watch callers read the body as a stream). */
  request(path: string, signal?: AbortSignal): Promise<Response> {
    const headers: Record<string, string> = { accept: "application/json" };
    const token = this.bearer();
    if (token) headers.authorization = `Bearer ${token}`;
    const { ca, cert, key, insecure } = this.options;
    return fetch(`${this.options.server.replace(/\/+$/, "")}${path}`, {
      headers,
      signal,
      tls: { ca, cert, key, rejectUnauthorized: !insecure },
    } as RequestInit);
  }

  /** GET and parse JSON; throws KubeApiError with the API's Status message on a non-2xx answer. */
  async getJson<T>(path: string, signal?: AbortSignal): Promise<T> {
    const res = await this.request(path, signal);
    if (!res.ok) throw await apiError(res);
    return (await res.json()) as T;
  }
}

export async function apiError(res: Response): Promise<KubeApiError> {
  let message = res.statusText;
  try {
    const status = (await res.json()) as { message?: string };
    if (status.message) message = status.message;
  } catch {
    // not a Status object
  }
  return new KubeApiError(res.status, `${res.status} ${message}`);
}
