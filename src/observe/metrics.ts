import { AuditLog } from "./audit-log.js";
import { RequestObserver } from "./observer.js";
import { ProcessMetrics } from "./process.js";
import { Counter, Gauge, Histogram, Registry, type Sample } from "./prometheus.js";

const latencyBuckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/**
 * The Kubernetes resolver's metrics, kedge Go's names. Process-wide: resolvers outlive a single
 * runtime and every kedge instance in the process registers the same series.
 */
export const k8sMetrics = {
  // Each process that resolves a target serves the same addresses: a sum would multiply them.
  upAddresses: new Gauge("kedge_k8sresolver_up_addresses", "Addresses the Kubernetes resolver currently serves, by target.", ["target"]), // the watches run once (in the supervisor under workers), so a sum is that one value
  watchErrors: new Counter("kedge_k8sresolver_watcher_errors_total", "List or watch failures against the API server, by target.", ["target"]),
  changes: new Counter("kedge_k8sresolver_watcher_changes_total", "Endpoint changes received from the API server, by target.", ["target"]),
};

/** Outlier detection's ejections. Process-wide, as k8sMetrics: the backends that count them know no registry. */
export const backendHealthMetrics = {
  ejections: new Counter("kedge_backend_ejections_total", "Endpoints ejected by outlier detection, by backend.", ["backend_name"]),
};

const routeLabels: string[] = [];
/** Distinct grpc_method label values kept; a wildcard route lets clients name any method. */
const maxMethodLabels = 500;

/**
 * The route label of the route at `index` in its table ("0", "1", …): bounded by the config, and
 * cached so the hot path does not format a number per request. "adhoc" and "none" name the rest.
 */
export function routeLabel(index: number): string {
  return (routeLabels[index] ??= String(index));
}

/**
 * The request metrics both proxies keep: kedge_… on kedge (kedge Go's names), winch_… on winch.
 * kedge's carry a route label; winch's mapper routes have none. Callers always pass the values
 * in the order [backend_name, code, route] (HTTP), [backend_name, grpc_method, grpc_code, route]
 * (gRPC calls) and [backend_name, grpc_code, grpc_method, route] (gRPC latency): a metric
 * without the trailing labels ignores the trailing values.
 */
export function proxyMetrics(registry: Registry, prefix: "kedge" | "winch") {
  const kedge = prefix === "kedge";
  const route = kedge ? ["route"] : [];
  /** Requests and calls in flight, read by the active-streams gauge at scrape time. */
  const inflight = { http: 0, grpc: 0 };
  const methods = new Set<string>();
  const metrics = {
    httpRequests: registry.add(new Counter(`${prefix}_http_requests_total`, "HTTP requests handled, by backend, status code and route.", ["backend_name", "code", ...route])),
    httpLatency: registry.add(new Histogram(`${prefix}_http_request_duration_seconds`, "Time from request head to response end, by backend, status code and route.", ["backend_name", "code", ...route], latencyBuckets)),
    proxyErrors: registry.add(new Counter(`${prefix}_proxy_errors_total`, "Requests answered with an error, by backend and error type.", ["backend_name", "type"])),
    retries: registry.add(
      new Counter(`${prefix}_retries_total`, "Attempts sent to a backend again, by backend and reason: connect-failure, refused-stream, reset, 502, 503, 504 or timeout.", ["backend_name", "reason"]),
    ),
    retryBudgetExceeded: registry.add(new Counter(`${prefix}_retry_budget_exceeded_total`, "Retries a route's policy allowed and the backend's retry budget refused, by backend.", ["backend_name"])),
    grpcRequests: registry.add(new Counter(`${prefix}_grpc_requests_total`, "gRPC calls handled, by backend, method, the grpc-status the client got and route.", ["backend_name", "grpc_method", "grpc_code", ...route])),
    grpcLatency: registry.add(
      new Histogram(`${prefix}_grpc_request_duration_seconds`, "Time from call start to its status, by backend and grpc-status (kedge: and method and route).", ["backend_name", "grpc_code", ...(kedge ? ["grpc_method", "route"] : [])], latencyBuckets),
    ),
    inflight,
    /** The grpc_method label for a routed call's path: "other" once maxMethodLabels distinct ones were seen. */
    methodLabel(path: string): string {
      if (methods.has(path)) return path;
      if (methods.size >= maxMethodLabels) return "other";
      methods.add(path);
      return path;
    },
    activeStreams: registry.add(
      new Gauge(`${prefix}_active_streams`, "HTTP requests (HTTP/1.1 and HTTP/2) and gRPC calls in flight.", ["protocol"], () => [
        [["http"], inflight.http],
        [["grpc"], inflight.grpc],
      ]),
    ),
  };
  const exportCounters = {
    spansExported: registry.add(new Counter(`${prefix}_trace_spans_exported_total`, "Spans accepted by the OTLP collector.", [])),
    spansDropped: registry.add(new Counter(`${prefix}_trace_spans_dropped_total`, "Spans not exported, by reason: queue_full (the export queue was full) or export_failed.", ["reason"])),
  };
  /** Access logs and tracing per request; off until configured. */
  return { ...metrics, ...exportCounters, observer: new RequestObserver(exportCounters, !kedge) };
}

export type ProxyMetrics = ReturnType<typeof proxyMetrics>;

/** kedge's metrics; names follow kedge Go where it had one. */
export function createMetrics() {
  const registry = new Registry();
  const metrics = {
    registry,
    ...proxyMetrics(registry, "kedge"),
    reloads: registry.add(new Counter("kedge_config_reloads_total", "Config reloads, by result (success, failure).", ["result"])),
    configVersion: registry.add(new Gauge("kedge_config_version", "The version number of the live config.", [], undefined, "worker")),
    httpBackendChanges: registry.add(new Counter("kedge_http_backend_configuration_changes_total", "HTTP backends created, updated or deleted by config changes (file, flags or discovery).", ["backend_name", "action"])),
    grpcBackendChanges: registry.add(new Counter("kedge_grpc_backend_configuration_changes_total", "gRPC backends created, updated or deleted by config changes (file, flags or discovery).", ["backend_name", "action"])),
    activeConnections: registry.add(new Gauge("kedge_active_connections", "Client connections open on the data listeners.", [])),
    tlsHandshakeFailures: registry.add(new Counter("kedge_tls_handshake_failures_total", "Failed TLS handshakes on the data listeners, by listener and reason: no_client_certificate, unknown_ca, certificate_expired, certificate_not_yet_valid, no_shared_alpn, protocol_version, not_tls or other.", ["listener", "reason"])),
    refusedConnections: registry.add(new Counter("kedge_connections_refused_total", "Client connections refused, by reason: max_connections (503) or header_timeout (408, no request head in time).", ["reason"])),
    h1Open: registry.add(new Gauge("kedge_http_upstream_connections_open", "Open HTTP/1.1 connections to a backend's endpoints (busy and idle).", ["backend_name"])),
    h1Idle: registry.add(new Gauge("kedge_http_upstream_connections_idle", "Idle keep-alive HTTP/1.1 connections to a backend's endpoints.", ["backend_name"])),
    h1Waiting: registry.add(new Gauge("kedge_http_upstream_requests_waiting", "Requests queued for a free connection to a backend.", ["backend_name"])),
    h2Sessions: registry.add(new Gauge("kedge_grpc_upstream_sessions_connected", "Connected HTTP/2 sessions to a gRPC backend's endpoints.", ["backend_name"])),
    h2Streams: registry.add(new Gauge("kedge_grpc_upstream_active_streams", "Calls in flight on a gRPC backend's sessions.", ["backend_name"])),
    rateLimited: registry.add(new Counter("kedge_rate_limited_total", "Requests and gRPC calls refused by a rate limit (429, RESOURCE_EXHAUSTED), by backend, route and the limit that refused them: server or route.", ["backend_name", "route", "limit"])),
    /** Access decisions, one JSON line each; off until configured. */
    audit: new AuditLog(),
    // Each worker judges its endpoints for itself: a sum would count an endpoint once per worker.
    backendEndpoints: registry.add(new Gauge("kedge_backend_endpoints", "A backend's endpoints by state: healthy, ejected (outlier detection), failing_checks (active health checks) or backing_off (after a failed dial).", ["backend_name", "state"], undefined, "worker")),
    backendEjections: registry.add(backendHealthMetrics.ejections),
    // Workers keep their own health: the furthest tier any of them sends to is the one to see.
    activeTier: registry.add(new Gauge("kedge_backend_active_tier", "The tier a backend with failover tiers sends requests to: 0 its own resolver, 1… its failover tiers in order.", ["backend_name"], undefined, "max")),
    k8sUpAddresses: registry.add(k8sMetrics.upAddresses),
    k8sWatchErrors: registry.add(k8sMetrics.watchErrors),
    k8sChanges: registry.add(k8sMetrics.changes),
  };
  registry.add(new ProcessMetrics());
  return metrics;
}

export type Metrics = ReturnType<typeof createMetrics>;

/** What the backend gauges read of a runtime: each backend's per-endpoint pool stats and health, and its tiers. */
type PoolView<P> = { view(): ReadonlyArray<{ pool: P } & EndpointHealth>; readonly tiers: { readonly length: number }; readonly activeTier: number };
type EndpointHealth = { healthy: boolean; ejected: boolean; healthCheck: "passing" | "failing" | undefined };

const endpointStates = ["healthy", "ejected", "failing_checks", "backing_off"] as const;

/** Where an endpoint counts in kedge_backend_endpoints: the first reason it is out, or healthy. */
function stateIndex(e: EndpointHealth): number {
  if (e.ejected) return 1;
  if (e.healthCheck === "failing") return 2;
  return e.healthy ? 0 : 3;
}

type HttpPool = { open: number; idle: number; waiting: number };
type GrpcPool = { connected: boolean; activeStreams: number };

export interface LiveBackends {
  readonly httpBackends: ReadonlyMap<string, PoolView<HttpPool>>;
  readonly grpcBackends: ReadonlyMap<string, PoolView<GrpcPool>>;
  /** Backends made on demand for adhoc targets: one series, backend_name="adhoc", as in the request metrics. */
  readonly adhoc?: { readonly http: { backends(): Iterable<PoolView<HttpPool>> }; readonly grpc: { backends(): Iterable<PoolView<GrpcPool>> } };
}

/** Points the upstream pool gauges at the live runtime's backends (read at scrape time, nothing on the hot path). */
export function watchBackends(metrics: Metrics, live: () => LiveBackends): void {
  const perBackend = <P>(backends: (l: LiveBackends) => ReadonlyMap<string, PoolView<P>>, adhoc: (l: LiveBackends) => Iterable<PoolView<P>> | undefined, value: (pool: P) => number) => (): Sample[] => {
    const out: Sample[] = [];
    const l = live();
    for (const [name, backend] of backends(l)) {
      let sum = 0;
      for (const e of backend.view()) sum += value(e.pool);
      out.push([[name], sum]);
    }
    let adhocSum = 0;
    let any = false;
    for (const backend of adhoc(l) ?? []) {
      any = true;
      for (const e of backend.view()) adhocSum += value(e.pool);
    }
    if (any) out.push([["adhoc"], adhocSum]);
    return out;
  };
  const http = (l: LiveBackends) => l.httpBackends;
  const grpc = (l: LiveBackends) => l.grpcBackends;
  const adhocHttp = (l: LiveBackends) => l.adhoc?.http.backends();
  const adhocGrpc = (l: LiveBackends) => l.adhoc?.grpc.backends();
  metrics.h1Open.collect = perBackend(http, adhocHttp, (p) => p.open);
  metrics.h1Idle.collect = perBackend(http, adhocHttp, (p) => p.idle);
  metrics.h1Waiting.collect = perBackend(http, adhocHttp, (p) => p.waiting);
  metrics.h2Sessions.collect = perBackend(grpc, adhocGrpc, (p) => (p.connected ? 1 : 0));
  metrics.h2Streams.collect = perBackend(grpc, adhocGrpc, (p) => p.activeStreams);
  metrics.activeTier.collect = () => {
    // An HTTP and a gRPC backend may share a name: one series, the further tier.
    const byName = new Map<string, number>();
    const l = live();
    for (const backends of [l.httpBackends, l.grpcBackends]) {
      for (const [name, backend] of backends) if (backend.tiers.length > 1) byName.set(name, Math.max(byName.get(name) ?? 0, backend.activeTier));
    }
    return [...byName].map(([name, tier]): Sample => [[name], tier]);
  };
  metrics.backendEndpoints.collect = () => {
    const l = live();
    // An HTTP and a gRPC backend may share a name (kedge Go's configs do): one series set for both.
    const byName = new Map<string, number[]>();
    for (const backends of [l.httpBackends, l.grpcBackends] as ReadonlyArray<ReadonlyMap<string, PoolView<unknown>>>) {
      for (const [name, backend] of backends) {
        let counts = byName.get(name);
        if (counts === undefined) byName.set(name, (counts = [0, 0, 0, 0]));
        for (const e of backend.view()) counts[stateIndex(e)]++;
      }
    }
    const out: Sample[] = [];
    for (const [name, counts] of byName) endpointStates.forEach((state, i) => out.push([[name, state], counts[i]]));
    return out;
  };
}

/**
 * Counts backends a config change created, replaced (its config changed) or deleted, as kedge Go's
 * kedge_*_backend_configuration_changes_total did. The first config counts as creating every backend.
 */
export function countBackendChanges(metrics: Metrics, before: LiveBackends | undefined, after: LiveBackends): void {
  const diff = (counter: Counter, old: ReadonlyMap<string, unknown> | undefined, next: ReadonlyMap<string, unknown>) => {
    for (const [name, backend] of next) {
      const previous = old?.get(name);
      if (previous === undefined) counter.inc([name, "create"]);
      else if (previous !== backend) counter.inc([name, "update"]);
    }
    if (old) for (const name of old.keys()) if (!next.has(name)) counter.inc([name, "delete"]);
  };
  diff(metrics.httpBackendChanges, before?.httpBackends, after.httpBackends);
  diff(metrics.grpcBackendChanges, before?.grpcBackends, after.grpcBackends);
}
