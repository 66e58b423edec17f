/**
 * A small Prometheus registry: counters and histograms keyed by label values, rendered in the
 * text exposition format. Label sets are few (backend × code), so a Map per metric is enough.
 */
type Labels = Record<string, string>;

const escape = (v: string) => v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
const keyCache = new Map<string, string>();

/** The rendered label set; cached because the hot path sees the same few label values again and again. */
function labelKey(names: readonly string[], values: readonly string[]): string {
  const lookup = `${names.join("\u0000")}\u0001${values.join("\u0000")}`;
  let key = keyCache.get(lookup);
  if (key === undefined) {
    key = names.map((n, i) => `${n}="${escape(values[i])}"`).join(",");
    if (keyCache.size < 10_000) keyCache.set(lookup, key);
  }
  return key;
}

interface Metric {
  render(): string;
}

export class Counter implements Metric {
  private readonly values = new Map<string, number>();
  constructor(readonly name: string, readonly help: string, readonly labelNames: readonly string[]) {}
  inc(labelValues: readonly string[], by = 1): void {
    const key = labelKey(this.labelNames, labelValues);
    this.values.set(key, (this.values.get(key) ?? 0) + by);
  }
  get(labels: Labels): number {
    return this.values.get(labelKey(this.labelNames, this.labelNames.map((n) => labels[n]))) ?? 0;
  }
  render(): string {
    let out = `# HELP ${this.name} ${this.help}\n# TYPE ${this.name} counter\n`;
    for (const [key, v] of this.values) out += `${this.name}${key ? `{${key}}` : ""} ${v}\n`;
    return out;
  }
}

export class Gauge implements Metric {
  private readonly values = new Map<string, number>();
  constructor(readonly name: string, readonly help: string, readonly labelNames: readonly string[], private readonly collect?: () => Array<[string[], number]>) {}
  set(labelValues: readonly string[], v: number): void {
    this.values.set(labelKey(this.labelNames, labelValues), v);
  }
  render(): string {
    if (this.collect) {
      this.values.clear();
      for (const [labels, v] of this.collect()) this.set(labels, v);
    }
    let out = `# HELP ${this.name} ${this.help}\n# TYPE ${this.name} gauge\n`;
    for (const [key, v] of this.values) out += `${this.name}${key ? `{${key}}` : ""} ${v}\n`;
    return out;
  }
}

export class Histogram implements Metric {
  private readonly series = new Map<string, { counts: number[]; sum: number; count: number }>();
  constructor(readonly name: string, readonly help: string, readonly labelNames: readonly string[], readonly buckets: readonly number[]) {}
  observe(labelValues: readonly string[], value: number): void {
    const key = labelKey(this.labelNames, labelValues);
    let s = this.series.get(key);
    if (!s) {
      s = { counts: new Array(this.buckets.length).fill(0), sum: 0, count: 0 };
      this.series.set(key, s);
    }
    for (let i = 0; i < this.buckets.length; i++) if (value <= this.buckets[i]) s.counts[i]++;
    s.sum += value;
    s.count++;
  }
  render(): string {
    let out = `# HELP ${this.name} ${this.help}\n# TYPE ${this.name} histogram\n`;
    for (const [key, s] of this.series) {
      const sep = key ? "," : "";
      this.buckets.forEach((b, i) => {
        out += `${this.name}_bucket{${key}${sep}le="${b}"} ${s.counts[i]}\n`;
      });
      out += `${this.name}_bucket{${key}${sep}le="+Inf"} ${s.count}\n`;
      out += `${this.name}_sum${key ? `{${key}}` : ""} ${s.sum}\n${this.name}_count${key ? `{${key}}` : ""} ${s.count}\n`;
    }
    return out;
  }
}

export class Registry {
  private readonly metrics: Metric[] = [];
  add<M extends Metric>(m: M): M {
    this.metrics.push(m);
    return m;
  }
  render(): string {
    return this.metrics.map((m) => m.render()).join("");
  }
}

const latencyBuckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** kedge's metrics; names follow kedge Go where it had one. */
/**
 * The Kubernetes resolver's metrics, kedge Go's names. Process-wide: resolvers outlive a single
 * runtime and every kedge instance in the process registers the same series.
 */
export const k8sMetrics = {
  upAddresses: new Gauge("kedge_k8sresolver_up_addresses", "Addresses the Kubernetes resolver currently serves, by target.", ["target"]),
  watchErrors: new Counter("kedge_k8sresolver_watcher_errors_total", "List or watch failures against the API server, by target.", ["target"]),
  changes: new Counter("kedge_k8sresolver_watcher_changes_total", "Endpoint changes received from the API server, by target.", ["target"]),
};

/** The request metrics both proxies keep: kedge_… on kedge (kedge Go's names), winch_… on winch. */
export function proxyMetrics(registry: Registry, prefix: "kedge" | "winch") {
  return {
    httpRequests: registry.add(new Counter(`${prefix}_http_requests_total`, "HTTP requests handled, by backend and status code.", ["backend_name", "code"])),
    httpLatency: registry.add(new Histogram(`${prefix}_http_request_duration_seconds`, "Time from request head to response end, by backend and status code.", ["backend_name", "code"], latencyBuckets)),
    proxyErrors: registry.add(new Counter(`${prefix}_proxy_errors_total`, "Requests answered with an error, by backend and error type.", ["backend_name", "type"])),
    grpcRequests: registry.add(new Counter(`${prefix}_grpc_requests_total`, "gRPC calls handled, by backend, method and the grpc-status the client got.", ["backend_name", "grpc_method", "grpc_code"])),
    grpcLatency: registry.add(new Histogram(`${prefix}_grpc_request_duration_seconds`, "Time from call start to its status, by backend and grpc-status.", ["backend_name", "grpc_code"], latencyBuckets)),
  };
}

export type ProxyMetrics = ReturnType<typeof proxyMetrics>;

export function createMetrics() {
  const registry = new Registry();
  return {
    registry,
    ...proxyMetrics(registry, "kedge"),
    reloads: registry.add(new Counter("kedge_config_reloads_total", "Config reloads, by result.", ["result"])),
    configVersion: registry.add(new Gauge("kedge_config_version", "The version number of the live config.", [])),
    backendChanges: registry.add(new Counter("kedge_http_backend_configuration_changes_total", "HTTP backends created or replaced by config changes.", ["backend_name"])),
    k8sUpAddresses: registry.add(k8sMetrics.upAddresses),
    k8sWatchErrors: registry.add(k8sMetrics.watchErrors),
    k8sChanges: registry.add(k8sMetrics.changes),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
