import type { Balancer as BalancerKind } from "../gen/kedge/config/v1/backend_pb.js";
import { Balancer as BalancerKinds } from "../config/enums.js";
import type { Endpoint } from "./endpoint.js";

/** Picks one endpoint; `skip` holds endpoints this request already failed on. */
export interface Balancer {
  pick(endpoints: readonly Endpoint[], skip: ReadonlySet<Endpoint> | undefined): Endpoint | undefined;
}

/** Healthy endpoints first (pass 0); when every endpoint is backing off, try them anyway rather than fail outright. */
function eligible(e: Endpoint, skip: ReadonlySet<Endpoint> | undefined, pass: number): boolean {
  return (!skip || !skip.has(e)) && (pass === 1 || e.healthy);
}

export class RoundRobin implements Balancer {
  private next = 0;
  pick(endpoints: readonly Endpoint[], skip: ReadonlySet<Endpoint> | undefined): Endpoint | undefined {
    const n = endpoints.length;
    for (let pass = 0; pass < 2; pass++) {
      for (let i = 0; i < n; i++) {
        const e = endpoints[(this.next + i) % n];
        if (eligible(e, skip, pass)) {
          this.next = (this.next + i + 1) % n;
          return e;
        }
      }
    }
    return undefined;
  }
}

export class LeastOutstanding implements Balancer {
  private offset = 0;
  pick(endpoints: readonly Endpoint[], skip: ReadonlySet<Endpoint> | undefined): Endpoint | undefined {
    const n = endpoints.length;
    // Rotating the scan start spreads ties instead of always favouring the first endpoint.
    this.offset = (this.offset + 1) % Math.max(n, 1);
    for (let pass = 0; pass < 2; pass++) {
      let best: Endpoint | undefined;
      for (let i = 0; i < n; i++) {
        const e = endpoints[(this.offset + i) % n];
        if (eligible(e, skip, pass) && (!best || e.outstanding < best.outstanding)) best = e;
      }
      if (best) return best;
    }
    return undefined;
  }
}

export function balancerFor(kind: BalancerKind): Balancer {
  return kind === BalancerKinds.LEAST_OUTSTANDING_REQUESTS ? new LeastOutstanding() : new RoundRobin();
}
