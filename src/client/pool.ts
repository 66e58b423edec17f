import http from "node:http";
import https from "node:https";
import type { KedgeTarget } from "./routing.js";

/**
 * Keep-alive connections to kedges, one agent per `poolKey` (a kedge and the identity presented to
 * it): calls to the same cluster reuse warm TLS connections, and a route with its own client
 * certificate never shares a connection made with another.
 */
export class KedgeAgents {
  private readonly agents = new Map<string, http.Agent>();
  private closed = false;

  agentFor(target: KedgeTarget): http.Agent {
    if (this.closed) throw new TypeError("kedge client is closed");
    let agent = this.agents.get(target.poolKey);
    if (!agent) {
      const { ca, cert, key } = target.tls;
      // LIFO reuses the most recently used socket, so idle ones past the need time out and close.
      agent =
        target.kedge.protocol === "https:"
          ? new https.Agent({ keepAlive: true, scheduling: "lifo", ca: [...ca], cert, key })
          : new http.Agent({ keepAlive: true, scheduling: "lifo" });
      this.agents.set(target.poolKey, agent);
    }
    return agent;
  }

  close(): void {
    this.closed = true;
    for (const agent of this.agents.values()) agent.destroy();
    this.agents.clear();
  }
}
