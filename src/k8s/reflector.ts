import { apiError, KubeApiError, type KubeClient } from "./client.js";

export interface KubeMeta {
  metadata: { name: string; namespace?: string; resourceVersion?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
}

interface KubeList<T> {
  metadata: { resourceVersion: string };
  items: T[];
}

interface WatchEvent {
  type: "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR";
  object: KubeMeta & { code?: number; message?: string };
}

export interface ReflectorOptions {
  /** Asked of the server per watch; it ends the stream after this and kedge resumes. Default 300. */
  watchTimeoutSeconds?: number;
  /** No byte for this long on an open watch: the stream is dead (a silent LB, a half-open TCP). Default timeout + 30 s. */
  staleMs?: number;
  /** Reconnect backoff: first delay, doubling per consecutive failure, jittered, capped. */
  backoffBaseMs?: number;
  backoffMaxMs?: number;
}

export interface ReflectorHooks<T> {
  /** The complete current set, after a (re)list and after every change. */
  onChange(items: T[]): void;
  /** The API server could not be listed or watched; the last known set stays as it is. */
  onError(error: Error): void;
}

/**
 * Mirrors one collection (with its selectors) from the API server, as client-go's reflector does:
 * list, then watch from the list's resourceVersion with bookmarks, resume from the last version
 * seen when a stream ends, re-list on 410 Gone, reconnect with jittered backoff, and treat a
 * silent stream as dead. While the API server is unreachable the last known set keeps serving.
 */
export class Reflector<T extends KubeMeta> {
  private readonly store = new Map<string, T>();
  private resourceVersion: string | undefined;
  private stopped = false;
  private abort: AbortController | undefined;
  private wake: (() => void) | undefined;

  constructor(
    private readonly client: KubeClient,
    /** A collection path, possibly with a query (labelSelector, fieldSelector). */
    private readonly path: string,
    private readonly hooks: ReflectorHooks<T>,
    private readonly options: ReflectorOptions = {},
  ) {}

  start(): void {
    void this.run();
  }

  stop(): void {
    this.stopped = true;
    this.abort?.abort();
    this.wake?.();
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (!this.stopped) {
      try {
        if (this.resourceVersion === undefined) await this.list();
        const started = performance.now();
        await this.watch();
        failures = 0;
        // A server that ends every watch at once would otherwise be polled in a tight loop.
        if (performance.now() - started < 1000) await this.sleep(this.options.backoffBaseMs ?? 500);
      } catch (e) {
        if (this.stopped) return;
        if (e instanceof KubeApiError && e.status === 410) {
          this.resourceVersion = undefined; // history compacted past our version: start over from a list
          continue;
        }
        failures++;
        this.hooks.onError(e as Error);
        await this.sleep(this.backoff(failures));
      }
    }
  }

  private backoff(failures: number): number {
    const base = this.options.backoffBaseMs ?? 500;
    const max = this.options.backoffMaxMs ?? 30_000;
    return Math.min(max, base * 2 ** Math.min(failures - 1, 16)) * (0.5 + Math.random() / 2);
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  private key(o: KubeMeta): string {
    return `${o.metadata.namespace ?? ""}/${o.metadata.name}`;
  }

  private emit(): void {
    this.hooks.onChange([...this.store.values()]);
  }

  private withQuery(extra: Record<string, string>): string {
    const [path, query = ""] = this.path.split("?");
    const params = new URLSearchParams(query);
    for (const [k, v] of Object.entries(extra)) params.set(k, v);
    return `${path}?${params}`;
  }

  private async list(): Promise<void> {
    this.abort = new AbortController();
    const list = await this.client.getJson<KubeList<T>>(this.path, this.abort.signal);
    this.store.clear();
    for (const item of list.items) this.store.set(this.key(item), item);
    this.resourceVersion = list.metadata.resourceVersion;
    this.emit();
  }

  /** One watch stream, until the server ends it; throws on errors (410 included). */
  private async watch(): Promise<void> {
    const timeoutSeconds = this.options.watchTimeoutSeconds ?? 300;
    const staleMs = this.options.staleMs ?? timeoutSeconds * 1000 + 30_000;
    const abort = new AbortController();
    this.abort = abort;
    let stale = false;
    let timer = setTimeout(() => ((stale = true), abort.abort()), staleMs);
    const alive = () => {
      clearTimeout(timer);
      timer = setTimeout(() => ((stale = true), abort.abort()), staleMs);
    };
    try {
      const res = await this.client.request(
        this.withQuery({ watch: "true", resourceVersion: this.resourceVersion ?? "", allowWatchBookmarks: "true", timeoutSeconds: String(timeoutSeconds) }),
        abort.signal,
      );
      if (!res.ok) throw await apiError(res);
      const reader = res.body!.getReader();
      const decoder = new TextDecoder();
      let buffered = "";
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return;
        alive();
        buffered += decoder.decode(value, { stream: true });
        let nl: number;
        while ((nl = buffered.indexOf("\n")) >= 0) {
          const line = buffered.slice(0, nl).trim();
          buffered = buffered.slice(nl + 1);
          if (line) this.apply(JSON.parse(line) as WatchEvent);
        }
      }
    } catch (e) {
      if (stale) return; // resume from the last version seen, like a normal end of stream
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  private apply(event: WatchEvent): void {
    const o = event.object;
    if (event.type === "ERROR") throw new KubeApiError(o.code ?? 500, `watch error: ${o.message ?? "unknown"}`);
    if (o.metadata?.resourceVersion) this.resourceVersion = o.metadata.resourceVersion;
    if (event.type === "BOOKMARK") return;
    if (event.type === "DELETED") this.store.delete(this.key(o));
    else this.store.set(this.key(o), o as T);
    this.emit();
  }
}
