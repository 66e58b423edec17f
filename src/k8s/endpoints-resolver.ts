import { dedupeAddresses, type ResolvedAddress, type Resolver } from "../backend/endpoint.js";
import { KubeApiError, type KubeClient } from "./client.js";
import { k8sMetrics } from "../observe/metrics.js";
import { Reflector, type KubeMeta, type ReflectorOptions } from "./reflector.js";
import { parseK8sTarget, type K8sTarget, type TargetPort } from "../config/k8s-target.js";

interface EndpointSlice extends KubeMeta {
  ports?: Array<{ name?: string; port?: number }> | null;
  endpoints?: Array<{ addresses: string[]; conditions?: { ready?: boolean | null; serving?: boolean | null; terminating?: boolean | null } }> | null;
}

interface CoreEndpoints extends KubeMeta {
  subsets?: Array<{ addresses?: Array<{ ip: string }>; notReadyAddresses?: Array<{ ip: string }>; ports?: Array<{ name?: string; port: number }> }> | null;
}

function portFor(target: TargetPort, ports: ReadonlyArray<{ name?: string; port?: number }>): number | undefined {
  if (target.kind === "number") return target.port;
  if (target.kind === "first") return ports[0]?.port;
  return ports.find((p) => p.name === target.name)?.port;
}

/**
 * Addresses from every EndpointSlice of the service, merged: ready endpoints; when none is ready,
 * serving ones that are not terminating (EndpointSlice API: a nil condition means true, except
 * terminating). Each slice carries its own ports, so the port is looked up per slice.
 */
export function addressesFromSlices(target: K8sTarget, slices: readonly EndpointSlice[]): ResolvedAddress[] {
  const ready: ResolvedAddress[] = [];
  const serving: ResolvedAddress[] = [];
  for (const slice of slices) {
    const port = portFor(target.port, slice.ports ?? []);
    if (!port) continue;
    for (const e of slice.endpoints ?? []) {
      const c = e.conditions ?? {};
      const into = c.ready !== false ? ready : c.serving !== false && c.terminating !== true ? serving : undefined;
      for (const ip of e.addresses) into?.push({ host: ip, port });
    }
  }
  return dedupeAddresses(ready.length > 0 ? ready : serving);
}

/** The same from the core Endpoints API (clusters without EndpointSlices). */
export function addressesFromEndpoints(target: K8sTarget, objects: readonly CoreEndpoints[]): ResolvedAddress[] {
  const out: ResolvedAddress[] = [];
  for (const o of objects) {
    for (const subset of o.subsets ?? []) {
      const port = portFor(target.port, subset.ports ?? []);
      if (!port) continue;
      for (const a of subset.addresses ?? []) out.push({ host: a.ip, port });
    }
  }
  return dedupeAddresses(out);
}

/**
 * kedge Go's k8s resolver (`k8s.dns_port_name`), on EndpointSlices (discovery.k8s.io/v1; core
 * Endpoints is deprecated since Kubernetes 1.33), falling back to Endpoints when the cluster does
 * not serve slices. Changes reach the backend as full address sets; the backend keeps the pools
 * of addresses that stay, so in-flight requests and streams are not dropped.
 */
export class K8sResolver implements Resolver {
  private readonly target: K8sTarget;
  private reflector: Reflector<KubeMeta> | undefined;
  private stopped = false;

  private readonly client: KubeClient;

  /** Throws when the target is malformed or no API server is configured (a config error, not a runtime one). */
  constructor(
    private readonly name: string,
    client: () => KubeClient,
    private readonly options: ReflectorOptions = {},
  ) {
    this.target = parseK8sTarget(name);
    this.client = client();
  }

  get description(): string {
    return `k8s ${this.name}`;
  }

  start(onUpdate: (addresses: ResolvedAddress[]) => void, onError: (message: string) => void): void {
    const { service, namespace } = this.target;
    const ns = encodeURIComponent(namespace);
    const slicesPath = `/apis/discovery.k8s.io/v1/namespaces/${ns}/endpointslices?labelSelector=${encodeURIComponent(`kubernetes.io/service-name=${service}`)}`;
    const endpointsPath = `/api/v1/namespaces/${ns}/endpoints?fieldSelector=${encodeURIComponent(`metadata.name=${service}`)}`;
    const follow = (path: string, toAddresses: (items: KubeMeta[]) => ResolvedAddress[], onNotServed?: () => void) => {
      this.reflector = new Reflector<KubeMeta>(this.client, path, {
        onChange: (items) => {
          const addresses = toAddresses(items);
          k8sMetrics.changes.inc([this.name]);
          k8sMetrics.upAddresses.set([this.name], addresses.length);
          onUpdate(addresses);
        },
        onError: (error) => {
          k8sMetrics.watchErrors.inc([this.name]);
          if (onNotServed && error instanceof KubeApiError && error.status === 404) {
            this.reflector?.stop();
            if (!this.stopped) onNotServed();
            return;
          }
          onError(`kubernetes API: ${error.message}`);
        },
      }, this.options);
      this.reflector.start();
    };
    follow(slicesPath, (items) => addressesFromSlices(this.target, items as EndpointSlice[]), () =>
      follow(endpointsPath, (items) => addressesFromEndpoints(this.target, items as CoreEndpoints[])),
    );
  }

  stop(): void {
    this.stopped = true;
    this.reflector?.stop();
  }
}
