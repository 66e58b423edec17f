import { promises as dns } from "node:dns";
import { isIP } from "../net/ip.js";
import type { HttpBackend, GrpcBackend } from "../gen/kedge/config/v1/backend_pb.js";
import { parseHostPort } from "../net/host-port.js";
import { k8sEndpoints } from "../k8s/endpoint-sets.js";
import { dedupeAddresses, type ResolvedAddress, type Resolver } from "./endpoint.js";

const defaultRefreshMs = 30_000;
const minRefreshMs = 1_000;
const maxRefreshMs = 300_000;
const retryMs = 2_000;

/**
 * The DNS client for SRV and TTL queries. KEDGE_DNS_SERVERS ("ip[:port],…") points it at specific
 * servers, e.g. a cluster DNS from outside the cluster; unset, the system's resolv.conf is used.
 */
function dnsClient(): dns.Resolver {
  const resolver = new dns.Resolver({ timeout: 2_000, tries: 2 });
  const servers = process.env.KEDGE_DNS_SERVERS;
  if (servers) resolver.setServers(servers.split(",").map((s) => s.trim()).filter(Boolean));
  return resolver;
}

/** A fixed address list. */
export class StaticResolver implements Resolver {
  constructor(private readonly addresses: ResolvedAddress[]) {}
  get description() {
    return `static ${this.addresses.map((a) => `${a.host}:${a.port}`).join(",")}`;
  }
  start(onUpdate: (a: ResolvedAddress[]) => void): void {
    onUpdate(this.addresses);
  }
  stop(): void {}
}

/** Base for resolvers that poll DNS: re-resolves at the record TTL, keeps the last good answer on failure. */
abstract class PollingResolver implements Resolver {
  private timer: Timer | undefined;
  private stopped = false;
  private last = "";
  abstract readonly description: string;
  protected abstract lookup(): Promise<{ addresses: ResolvedAddress[]; ttlMs: number }>;

  start(onUpdate: (a: ResolvedAddress[]) => void, onError: (m: string) => void): void {
    const run = async () => {
      let next = retryMs;
      try {
        const { addresses, ttlMs } = await this.lookup();
        next = Math.min(maxRefreshMs, Math.max(minRefreshMs, ttlMs));
        const key = addresses.map((a) => `${a.host}:${a.port}`).sort().join(",");
        if (key !== this.last && !this.stopped) {
          this.last = key;
          onUpdate(addresses);
        }
      } catch (e) {
        if (!this.stopped) onError(`${this.description}: ${(e as Error).message}`);
      }
      if (!this.stopped) this.timer = setTimeout(run, next);
    };
    void run();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }
}

/** A/AAAA through the system resolver (so /etc/hosts and "localhost" work), refreshed at the record TTL. */
export class HostResolver extends PollingResolver {
  constructor(
    private readonly dnsName: string,
    private readonly port: number,
  ) {
    super();
  }
  get description() {
    return `host ${this.dnsName}:${this.port}`;
  }
  protected async lookup() {
    const found = await dns.lookup(this.dnsName, { all: true });
    const addresses = dedupeAddresses(found.map((f) => ({ host: f.address, port: this.port })));
    return { addresses, ttlMs: await ttlOf(this.dnsName) };
  }
}

/** SRV records, each target resolved to its addresses; port_override replaces the record's port. */
export class SrvResolver extends PollingResolver {
  private readonly dns = dnsClient();

  constructor(
    private readonly dnsName: string,
    private readonly portOverride: number,
  ) {
    super();
  }
  get description() {
    return `srv ${this.dnsName}`;
  }
  protected async lookup() {
    const records = await this.dns.resolveSrv(this.dnsName);
    const addresses: ResolvedAddress[] = [];
    for (const r of records) {
      const ips = isIP(r.name) ? [{ address: r.name }] : await dns.lookup(r.name, { all: true });
      for (const ip of ips) addresses.push({ host: ip.address, port: this.portOverride || r.port });
    }
    return { addresses: dedupeAddresses(addresses), ttlMs: defaultRefreshMs };
  }
}

async function ttlOf(name: string): Promise<number> {
  if (isIP(name) || name === "localhost") return maxRefreshMs;
  try {
    const records = await dnsClient().resolve4(name, { ttl: true });
    const ttl = Math.min(...records.map((r) => r.ttl));
    return Number.isFinite(ttl) ? ttl * 1000 : defaultRefreshMs;
  } catch {
    return defaultRefreshMs; // names only /etc/hosts knows have no TTL
  }
}

/**
 * The resolver a backend's config names. Host, SRV and static resolve in every process, workers
 * included: a DNS answer is local and cheap (the node's cache). A `k8s` watch costs the API
 * server a stream and memory per watcher, so a process (or a supervisor for all its workers) holds one per target.
 */
export function resolverFor(backend: { resolver: HttpBackend["resolver"] | GrpcBackend["resolver"] }): Resolver {
  const r = backend.resolver;
  switch (r.case) {
    case "host":
      if (isIP(r.value.dnsName)) return new StaticResolver([{ host: r.value.dnsName, port: r.value.port }]);
      return new HostResolver(r.value.dnsName, r.value.port);
    case "srv":
      return new SrvResolver(r.value.dnsName, r.value.portOverride);
    case "static":
      return new StaticResolver(r.value.addresses.map((a) => parseHostPort(a, 0)!));
    case "k8s":
      // Shared by every backend naming the target; in a worker, fed by the supervisor's one watch.
      return k8sEndpoints.resolver(r.value.dnsPortName);
    default:
      throw new Error("missing resolver");
  }
}
