import type { ResolvedAddress, Resolver } from "../backend/endpoint.js";
import { parseK8sTarget } from "../config/k8s-target.js";
import type { KubeClient } from "./client.js";
import { K8sResolver } from "./endpoints-resolver.js";
import type { ReflectorOptions } from "./reflector.js";
import { kubeClient } from "./shared-client.js";

/** The last word on one k8s target: its addresses (kept while the API is unreachable) and the error, when the latest answer was one. */
export interface EndpointSetState {
  addresses?: ResolvedAddress[];
  error?: string;
}

export const endpointSetsMessageType = "k8s-endpoints";

/**
 * What the supervisor pushes to its workers: the targets whose set changed (null: nothing follows
 * it any more). A snapshot carries every followed target and replaces what the worker knew.
 */
export interface EndpointSetsMessage {
  readonly type: typeof endpointSetsMessageType;
  readonly snapshot: boolean;
  readonly sets: Record<string, EndpointSetState | null>;
  readonly [field: string]: unknown;
}

interface Subscriber {
  onUpdate(addresses: ResolvedAddress[]): void;
  onError(message: string): void;
}

interface Target {
  state: EndpointSetState | undefined;
  readonly subscribers: Set<Subscriber>;
  watch: K8sResolver | undefined;
  /** The client the watch runs on: a reload that changes the kubernetes section makes another. */
  client: KubeClient | undefined;
}

/**
 * The endpoint sets of the `k8s` resolver, one per target (`dns_port_name`) however many backends
 * name it, so the API server sees one watch per target per kedge. Where the sets come from is
 * this class's business alone: from the API server (one process, or a supervisor, which also
 * publishes every change for its workers), or from the supervisor's messages (a worker, which
 * opens no watch). Backends get a `Resolver` either way and cannot tell.
 */
export class K8sEndpointSets {
  private readonly targets = new Map<string, Target>();
  private fromSupervisor = false;
  private readonly publishers: Array<(message: EndpointSetsMessage) => void> = [];

  constructor(
    private readonly client: () => KubeClient,
    private readonly options: ReflectorOptions = {},
  ) {}

  /** In a worker: the sets come from `receive`, this process never calls the API server. */
  receiveFromSupervisor(): void {
    this.fromSupervisor = true;
  }

  /** In a supervisor: every change, for the workers. */
  publishTo(publish: (message: EndpointSetsMessage) => void): void {
    this.publishers.push(publish);
  }

  /** Throws when the target is malformed, or (watching here) when no API server is configured: a config error. */
  resolver(name: string): Resolver {
    parseK8sTarget(name);
    if (!this.fromSupervisor) this.client();
    return new SharedK8sResolver(this, name);
  }

  /** Every followed target's set, for a worker that (re)starts. */
  snapshot(): EndpointSetsMessage {
    const sets: Record<string, EndpointSetState> = {};
    for (const [name, target] of this.targets) if (target.state) sets[name] = target.state;
    return { type: endpointSetsMessageType, snapshot: true, sets };
  }

  /** A worker's side of `publishTo`. Backends keep their last set when a target is dropped: a reload retires them. */
  receive(message: EndpointSetsMessage): void {
    if (message.snapshot) {
      for (const [name, target] of this.targets) if (!(name in message.sets)) target.state = undefined;
    }
    for (const [name, state] of Object.entries(message.sets)) {
      const target = this.target(name);
      target.state = state ?? undefined;
      if (state) for (const s of target.subscribers) replay(state, s);
      this.forgetIfUnused(name, target);
    }
  }

  subscribe(name: string, subscriber: Subscriber): void {
    const target = this.target(name);
    target.subscribers.add(subscriber);
    if (target.state) replay(target.state, subscriber);
    if (this.fromSupervisor) return;
    const client = this.client();
    if (target.watch && target.client === client) return;
    target.watch?.stop();
    const watch = new K8sResolver(name, () => client, this.options);
    target.watch = watch;
    target.client = client;
    watch.start(
      (addresses) => this.changed(name, watch, { addresses }),
      (error) => this.changed(name, watch, { addresses: this.targets.get(name)?.state?.addresses, error }),
    );
  }

  unsubscribe(name: string, subscriber: Subscriber): void {
    const target = this.targets.get(name);
    if (!target?.subscribers.delete(subscriber) || target.subscribers.size > 0) return;
    if (target.watch) {
      target.watch.stop();
      this.targets.delete(name);
      this.publish({ type: endpointSetsMessageType, snapshot: false, sets: { [name]: null } });
    }
    this.forgetIfUnused(name, target);
  }

  private changed(name: string, watch: K8sResolver, state: EndpointSetState): void {
    const target = this.targets.get(name);
    if (target?.watch !== watch) return; // a stopped watch's last word
    target.state = state;
    for (const s of target.subscribers) replay(state, s);
    this.publish({ type: endpointSetsMessageType, snapshot: false, sets: { [name]: state } });
  }

  private publish(message: EndpointSetsMessage): void {
    for (const p of this.publishers) p(message);
  }

  private target(name: string): Target {
    let target = this.targets.get(name);
    if (!target) this.targets.set(name, (target = { state: undefined, subscribers: new Set(), watch: undefined, client: undefined }));
    return target;
  }

  /** A worker keeps a set nobody follows yet (a reload's backends subscribe after the supervisor sent it), until the supervisor drops it. */
  private forgetIfUnused(name: string, target: Target): void {
    if (target.subscribers.size === 0 && !target.state && !target.watch) this.targets.delete(name);
  }
}

function replay(state: EndpointSetState, subscriber: Subscriber): void {
  if (state.addresses) subscriber.onUpdate(state.addresses);
  if (state.error !== undefined) subscriber.onError(state.error);
}

/** One backend's view of a shared target. */
class SharedK8sResolver implements Resolver {
  private subscriber: Subscriber | undefined;

  constructor(
    private readonly sets: K8sEndpointSets,
    private readonly name: string,
  ) {}

  get description(): string {
    return `k8s ${this.name}`;
  }

  start(onUpdate: (addresses: ResolvedAddress[]) => void, onError: (message: string) => void): void {
    this.subscriber = { onUpdate, onError };
    this.sets.subscribe(this.name, this.subscriber);
  }

  stop(): void {
    if (this.subscriber) this.sets.unsubscribe(this.name, this.subscriber);
    this.subscriber = undefined;
  }
}

/** This process's sets: every `k8s` backend resolves through them. */
export const k8sEndpoints = new K8sEndpointSets(kubeClient);
